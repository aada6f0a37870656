"""Mappings evaluated per second: codax's batched cost model vs ZigZag's cost model, same layer and hardware.

The layer is ResNet-18's layer1.0.conv1 (64 -> 64 channels, 56x56, 3x3) on ZigZag's tpu_like and on
codax's mirror of it. codax evaluates >= 100,000 random mappings (random tilings of every dim over the
levels, random loop orders, random double buffering) in batches that share the layer and hardware
tensors, three ways: float64 eager (exact), float64 compiled by torch.compile (exact, same counts)
and float32 compiled (search mode); ZigZag evaluates random complete temporal orderings one at a
time with a fixed spatial mapping (its cheapest per-mapping path, setup cached). All on one thread;
each prints evaluations per second; the ratio is the speed-up per mapping.

    .venv/bin/python benchmarks/costmodel_throughput.py [--mappings 200000] [--zigzag 200]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from codax.bench import zigzag_bridge as zb
from codax.bench.zigzag_mirror import from_zigzag
from codax.hw import cost_core, encode
from codax.hw.encode import CostInputs
from codax.hw.mapper.space import divisors
from codax.ir import DIMS

RESULTS = Path(__file__).parent / "results"
SPATIAL = {"D1": [("K", 32)], "D2": [("C", 32)]}


def ordered_factorizations(n: int, parts: int) -> list[tuple[int, ...]]:
    if parts == 1:
        return [(n,)]
    return [(d,) + rest for d in divisors(n) for rest in ordered_factorizations(n // d, parts - 1)]


def random_batch(base: CostInputs, batch: int, gen: torch.Generator) -> CostInputs:
    """`batch` random mappings of base's layer on base's hardware, built directly as tensors; the
    layer and hardware tensors stay at batch size 1, shared by every mapping, and the mapping tensors
    are stored batch-innermost, the layout the cost model runs in."""
    L = base.levels
    bound, spatial = base.bound[0], base.spatial[0]
    factor = torch.ones(batch, L, 8, dtype=base.factor.dtype)
    for i in range(len(DIMS)):
        temporal = math.ceil(bound[i].item() / spatial[i].item())
        table = torch.tensor(ordered_factorizations(temporal, L), dtype=base.factor.dtype)  # [F, L]
        pick = torch.randint(len(table), (batch,), generator=gen)
        factor[:, :, i] = table[pick]
    perm = torch.argsort(torch.rand(batch, L, 8, generator=gen), dim=2)
    rank = torch.argsort(perm, dim=2).to(base.rank.dtype)
    db = (torch.rand(batch, L, generator=gen) < 0.5).to(base.db.dtype)
    db[:, 0] = 0
    spatial = base.spatial.expand(batch, -1)
    return base.with_(factor=factor, rank=rank, db=db, spatial=spatial).batch_innermost()


def zigzag_orderings(layer: zb.ZigZagLayer, count: int, rng: random.Random) -> list[list[tuple[str, int]]]:
    temporal = {
        "K": layer.K // 32,
        "C": layer.C // 32,
        "P": layer.P,
        "Q": layer.Q,
        "R": layer.R,
        "S": layer.S,
    }
    loops = []
    for d, n in temporal.items():
        for p, e in _prime_factors(n):
            loops += [(d, p)] * e
    out = []
    for _ in range(count):
        rng.shuffle(loops)
        out.append(list(loops))
    return out


def _prime_factors(n: int) -> list[tuple[int, int]]:
    out, p = [], 2
    while n > 1:
        e = 0
        while n % p == 0:
            n //= p
            e += 1
        if e:
            out.append((p, e))
        p += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mappings", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--zigzag", type=int, default=200, help="ZigZag evaluations to time")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    layer = [z for z in zb.conv_layers_from_onnx("resnet18") if z.name.endswith("layer1.0/conv1/Conv")][0]
    loma = zb.search_loma(layer, "tpu_like", spatial=SPATIAL)
    mirror = from_zigzag(layer, "tpu_like", loma)
    base = encode(mirror.layer, mirror.accel, mirror.mapping)

    gen = torch.Generator().manual_seed(0)
    batches = [random_batch(base, args.batch, gen) for _ in range(math.ceil(args.mappings / args.batch))]
    n_codax = sum(b.batch for b in batches)

    def timed(fn, data) -> tuple[float, int]:
        fn(data[0])  # warm-up (and compilation)
        t = time.perf_counter()
        legal = sum(int(fn(b).legal.sum()) for b in data)
        return time.perf_counter() - t, legal

    # exact: float64, eager, and compiled into fused C++ loops by torch.compile (inductor)
    codax_s, legal = timed(cost_core, batches)
    compiled64_s, legal64 = timed(torch.compile(cost_core, dynamic=False), batches)
    # search mode: float32, compiled
    f32 = [b.with_(**{k: v.float() for k, v in vars(b).items() if v.is_floating_point()}) for b in batches]
    compiled_s, legal32 = timed(torch.compile(cost_core, dynamic=False), f32)
    codax_rate, compiled_rate = n_codax / codax_s, n_codax / compiled_s
    compiled64_rate = n_codax / compiled64_s

    orderings = zigzag_orderings(layer, args.zigzag, random.Random(0))
    ev = zb.FixedEvaluator(layer, "tpu_like", SPATIAL)
    ev.evaluate(orderings[0])  # warm-up
    t = time.perf_counter()
    done = 0
    for o in orderings:
        try:
            ev.evaluate(o)
            done += 1
        except zb.InfeasibleMappingError:
            done += 1  # ZigZag did the work of rejecting it
    zz_s = time.perf_counter() - t
    zz_rate = done / zz_s

    res = {
        "layer": layer.name,
        "hardware": "tpu_like",
        "codax_mappings": n_codax,
        "codax_legal": legal,
        "codax_float64_eager_seconds": codax_s,
        "codax_float64_eager_evals_per_s": codax_rate,
        "codax_float64_compiled_seconds": compiled64_s,
        "codax_float64_compiled_evals_per_s": compiled64_rate,
        "codax_float64_compiled_legal": legal64,
        "codax_float32_compiled_seconds": compiled_s,
        "codax_float32_compiled_evals_per_s": compiled_rate,
        "codax_float32_compiled_legal": legal32,
        "zigzag_mappings": done,
        "zigzag_seconds": zz_s,
        "zigzag_evals_per_s": zz_rate,
        "zigzag_ms_per_mapping": 1e3 / zz_rate,
        "speedup_float64_eager": codax_rate / zz_rate,
        "speedup_float64_compiled": compiled64_rate / zz_rate,
        "speedup_float32_compiled": compiled_rate / zz_rate,
        "torch_threads": torch.get_num_threads(),
    }
    print(f"layer {layer.name} on tpu_like")
    print(
        f"  codax float64 eager   : {n_codax:>9,} mappings in {codax_s:7.3f} s = {codax_rate:>12,.0f} /s "
        f"({1e6 / codax_rate:.3f} us each, {legal:,} legal)"
    )
    print(
        f"  codax float64 compiled: {n_codax:>9,} mappings in {compiled64_s:7.3f} s = "
        f"{compiled64_rate:>12,.0f} /s ({1e6 / compiled64_rate:.3f} us each, {legal64:,} legal)"
    )
    print(
        f"  codax float32 compiled: {n_codax:>9,} mappings in {compiled_s:7.3f} s = "
        f"{compiled_rate:>12,.0f} /s "
        f"({1e6 / compiled_rate:.3f} us each, {legal32:,} legal)"
    )
    print(
        f"  ZigZag                : {done:>9,} mappings in {zz_s:7.3f} s = {zz_rate:>12,.1f} /s "
        f"({1e3 / zz_rate:.2f} ms each)"
    )
    print(
        f"  speed-up per mapping: {res['speedup_float64_eager']:,.0f}x exact eager, "
        f"{res['speedup_float64_compiled']:,.0f}x exact compiled, "
        f"{res['speedup_float32_compiled']:,.0f}x float32 compiled (target >= 10,000x)"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "costmodel_throughput.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
