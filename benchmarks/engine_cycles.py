"""The core engine's time against its model, layer by layer, with the instruction fetch in the timeline.

The engine is the GEMM core (docs/engine_core.md): fetch, load, GEMM and store IPs meeting through
instruction queues and dependence tokens, 128-bit instructions from codax.codegen.core_compile. Every
layer of a network is compiled and run in C-simulation (codax.codegen.core_sim: the IPs' own code, each
instruction timed from the iterations the hooks count at the II the reader finds, the modules
overlapping as the tokens allow), its output checked bit for bit against the golden layer. Per layer:

- `csim_cycles`: core_sim's cycles of the layer's program, which has every instruction in its queue at
  cycle 0; `core_model_cycles`: codax.codegen.core_model.layer_cycles, the same program timed from its
  dimensions and tiling alone.
- `fetch_cycles`: the exposed instruction fetch -- how much later the layer ends when its instructions
  come through the fetch IP. The host launches each layer's program (program.idx: first instruction
  and count), so the fetch requests the program's burst at cycle 0; beat b is back at AXI latency + b
  beats (BEATS_IN's II), an instruction enters its module's queue one an INSNS iteration once its beat
  is there, and blocks while that queue is full (the STREAM depths of core_system.cpp). The run is
  replayed from the hooks' counts of each instruction (the counts core_sim times) with those arrival
  times; replayed with every instruction present at cycle 0 it must give core_sim's cycles and busy
  cycles exactly, which this script asserts. `model_fetch_cycles`: what a model charges, the first
  instruction's round trip (AXI latency): the queues hold every later instruction ahead of its module
  unless the replay says otherwise.
- `code_cycles` = csim_cycles + fetch_cycles, `model_cycles` = core_model_cycles + model_fetch_cycles,
  `ratio` = code / model. The core model walks the program the compiler emits with each instruction's
  loop iterations from a formula, where the C-simulation counts the iterations as the IPs run them: a
  ratio other than 1 means the formula or the walk no longer describes the code.
- `ii`: the largest II over the pipelined loops of the IPs the layer's instructions run (the fetch
  always), from port pressure on the generated sources (codax.codegen.core_hw, hls_ii). The timing
  charges these IIs too, so a slower loop shows in both.

Also per layer, as a peer figure: `project_cost_model_cycles`, the project cost model's cycles for the
layer under the mapper's mapping (codax.hw.evaluate, which describes the descriptor engine codax_engine.h).

Per network: utilization (MACs / (code cycles x PEs); also over the dense 3x3 convolutions alone),
`fetch_share` (exposed fetch / code cycles), the layers the core refuses with the reason (not counted in
any figure). Per accelerator: IIs, DSPs and BRAM18 of the whole engine against the device, idiom
violations (codax.codegen.core_hw).

Networks: QDQ ResNet-18 and MobileNetV2 (32x32, per-channel int8, ORT quantize_static) on zc706-int8 and
zcu102-int8; ResNet-18 at 224x224 on zcu102-int8 (--no-imagenet skips it); the co-search
result (net.onnx, accel.yaml, mappings.yaml of `codax search`: --search DIR, else a quick search run
here; an accelerator the core refuses is reported with the reason).

Summary: geomean_ratio and max_abs_dev (code / model over every layer run), layers_within_10pct, max_ii
and max_ii_per_accelerator, fetch_shares and max_fetch_share over the networks of >= 1M MACs,
utilization per network, cosearch_result_fetch (the co-search result's exposed fetch against the
first instruction's round trip, per layer: each layer is a launch of its own). Targets: max_ii 1 on
zc706-int8 and zcu102-int8; geomean within 3%, every layer within 10%; max_fetch_share <= 0.05.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/engine_cycles.py [--search DIR]
        [--no-imagenet] [--accelerators zc706-int8 zcu102-int8]

About 20 minutes on two shared cores (ResNet-18 at 224x224 about 9 of them, each 32x32 network 1.5 to 3);
without --search a quick co-search runs first.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from codax.codegen import core_hw  # noqa: E402
from codax.codegen.core import core_shape  # noqa: E402
from codax.codegen.core_compile import CoreLayer, compile_layer  # noqa: E402
from codax.codegen.core_cycles import AXI_LATENCY, insn_cycles  # noqa: E402
from codax.codegen.core_model import layer_cycles  # noqa: E402
from codax.codegen.core_project import shape_for  # noqa: E402
from codax.codegen.core_sim import MODULE, Engine, output  # noqa: E402
from codax.codegen.golden import golden_layer  # noqa: E402
from codax.codegen.hls_engine import device_dsp_kind  # noqa: E402
from codax.codegen.params import from_onnx  # noqa: E402
from codax.errors import UnsupportedError  # noqa: E402
from codax.frontend import export_torch, extract_graph, import_onnx, load_onnx  # noqa: E402
from codax.frontend.zoo import mobilenet_v2, resnet18  # noqa: E402
from codax.hw import evaluate, load_accelerator  # noqa: E402
from codax.ir import load_mappings  # noqa: E402
from codax.passes import offloaded_layers, pipeline  # noqa: E402

RESULTS = ROOT / "results"
MODULES = ("load", "gemm", "store")


def qdq(model, path: Path, res: int = 32) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    fp = export_torch(model, torch.randn(1, 3, res, res), path.with_suffix(".float.onnx"))
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(
                {"input": rng.standard_normal((1, 3, res, res)).astype(np.float32)} for _ in range(8)
            )

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    return path


# ---- the timeline with the fetch ------------------------------------------------------------------------
@dataclass(frozen=True)
class Insn:
    """One instruction of a program as the timeline needs it: its module (None: FINISH, which the fetch
    reads and no module runs), its cycles, and the tokens it pops and pushes ((from, to) modules)."""

    module: int | None
    cycles: int
    pops: tuple[tuple[int, int], ...] = ()
    pushes: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Fetch:
    """The fetch IP's timing: the program's burst comes back `latency` cycles after its request, a beat
    every `beat_ii` cycles; one instruction a `insn_ii` cycles goes into its module's queue, which holds
    `depth[m]` instructions."""

    latency: int
    beat_ii: int
    insn_ii: int
    insns_per_beat: int
    depth: tuple[int, int, int]


@dataclass
class Timeline:
    cycles: int
    busy: list[int]  # per module
    insn_wait: list[int]  # per module: cycles it was free, its tokens there, its instruction not yet


def timeline(insns: list[Insn], fetch: Fetch | None) -> Timeline:
    """The program's cycles as core_sim's scheduler times it -- each module in order, an instruction
    starting when its module is free and the tokens it pops were pushed (in order per queue) -- and,
    with `fetch`, when the fetch has put it in its module's queue. The fetch puts instructions in program
    order and blocks while the next one's queue is full: a slot frees when its module reads the
    instruction `depth` places earlier (once free and the instruction there: an IP reads its queue first,
    then waits for the tokens). Raises if the program deadlocks."""
    n = len(insns)
    queues: list[list[int]] = [[], [], []]
    place = [0] * n
    for i, ins in enumerate(insns):
        if ins.module is not None:
            place[i] = len(queues[ins.module])
            queues[ins.module].append(i)
    arrive: list[int | None] = [0 if fetch is None else None] * n
    taken: list[int | None] = [None] * n  # when its module read it from the queue
    tokens: dict[tuple[int, int], list[int]] = {(0, 1): [], (1, 0): [], (1, 2): [], (2, 1): []}
    free, busy, wait = [0, 0, 0], [0, 0, 0], [0, 0, 0]
    heads = [0, 0, 0]
    fetched, last = 0, 0  # the next instruction the fetch writes; when it wrote the one before

    def advance_fetch() -> None:
        nonlocal fetched, last
        while fetch is not None and fetched < n:
            ins = insns[fetched]
            room = 0
            m = ins.module
            if m is not None and place[fetched] >= fetch.depth[m]:
                earlier = queues[m][place[fetched] - fetch.depth[m]]
                if taken[earlier] is None and heads[m] == place[earlier] and arrive[earlier] is not None:
                    taken[earlier] = max(free[m], arrive[earlier])  # the head: read, maybe waiting for tokens
                if taken[earlier] is None:
                    return  # the queue is full until its module reads that instruction
                room = taken[earlier]
            beat = fetch.latency + (fetched // fetch.insns_per_beat) * fetch.beat_ii
            t = max(beat, room, last + fetch.insn_ii if fetched else 0)
            arrive[fetched], last = t, t
            fetched += 1

    while any(heads[m] < len(queues[m]) for m in range(3)):
        advance_fetch()
        ran = False
        for m in range(3):
            if heads[m] >= len(queues[m]):
                continue
            i = queues[m][heads[m]]
            ins = insns[i]
            if arrive[i] is None or any(not tokens[p] for p in ins.pops):
                continue
            taken[i] = max(free[m], arrive[i])
            ready = max([free[m]] + [tokens[p].pop(0) for p in ins.pops])  # without the fetch
            start = max(ready, arrive[i])
            wait[m] += start - ready
            free[m] = start + ins.cycles
            busy[m] += ins.cycles
            for p in ins.pushes:
                tokens[p].append(free[m])
            heads[m] += 1
            ran = True
            break
        if not ran:  # the fetch has moved as far as it can: nothing will change
            raise RuntimeError(f"the program deadlocks: heads {heads}, fetched {fetched} of {n}")
    return Timeline(max(free), busy, wait)


def _pops(m: int, f: dict) -> tuple[tuple[int, int], ...]:
    return tuple(p for flag, p in (("pop_prev", (m - 1, m)), ("pop_next", (m + 1, m)))
                 if f.get(flag) and 0 <= p[0] <= 2)  # fmt: skip


def _pushes(m: int, f: dict) -> tuple[tuple[int, int], ...]:
    return tuple(p for flag, p in (("push_prev", (m, m - 1)), ("push_next", (m, m + 1)))
                 if f.get(flag) and 0 <= p[1] <= 2)  # fmt: skip


class CountingEngine(Engine):
    """core_sim's Engine that keeps the hooks' counts of every instruction it runs: Engine.run reads
    them once before the program (a reset) and once after each instruction, in the order it runs them."""

    def __init__(self, shape):
        super().__init__(shape)
        self.counted: list[dict[str, int]] = []

    def trips(self) -> dict[str, int]:
        t = super().trips()
        self.counted.append(t)
        return t

    def run_counted(self, prog):
        self.counted = []
        run = self.run(prog)
        counts = self.counted[-len(run.order) :] if run.order else []
        cycles = {}
        for i, trips in zip(run.order, counts):
            fmt, f = prog.queue[i]
            cycles[i] = insn_cycles(self.shape, fmt.kind, f, trips=trips[fmt.kind])
        insns = []
        for i, (fmt, f) in enumerate(prog.queue):
            m = MODULE.get(fmt.kind)
            insns.append(Insn(None, 0) if m is None else Insn(m, cycles[i], _pops(m, f), _pushes(m, f)))
        return run, insns


def fetch_timing(shape) -> Fetch:
    iis = core_hw.fetch_loop_iis(shape)
    depth = core_hw.queue_depths(shape)
    return Fetch(AXI_LATENCY, iis["BEATS_IN"], iis["INSNS"], shape.beat_bits // 128,
                 tuple(depth[m] for m in MODULES))  # fmt: skip


# ---- networks -------------------------------------------------------------------------------------------
def _range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _inputs(layer, core_layer: CoreLayer, rng):
    """Random input (all groups' channels) and residual tensors over the whole range of the layer's
    widths (a 6- or 4-bit activation of a co-searched precision holds 6 or 4 bits)."""
    lo, hi = _range(core_layer.x_bits, core_layer.x_signed)
    x = rng.integers(lo, hi + 1, (layer.G * layer.C, *layer.in_hw))
    res = None
    if layer.epilogue.residual:
        rlo, rhi = _range(core_layer.r_bits, core_layer.r_signed)
        res = rng.integers(rlo, rhi + 1, (layer.G * layer.K, layer.P, layer.Q))
    return x, res


def run_layer(layer, params, engine: CountingEngine, fetch: Fetch, rng, accel=None, mapping=None) -> dict:
    shape = engine.shape
    cl = CoreLayer.of(layer, params)
    x, res = _inputs(layer, cl, rng)
    prog = compile_layer(shape, cl, x=x, residual=res)
    run, insns = engine.run_counted(prog)
    bare = timeline(insns, None)
    if (bare.cycles, dict(zip(MODULES, bare.busy))) != (run.cycles, run.busy):
        raise AssertionError(f"layer {layer.name}: the replay ({bare.cycles}) is not core_sim's run "
                             f"({run.cycles}): the counts were not read per instruction")  # fmt: skip
    fetched = timeline(insns, fetch)
    xin = x.reshape(1, layer.G * layer.C) if layer.op == "matmul" else x[None]
    want = golden_layer(layer, params, xin, None if res is None else res[None])
    model = layer_cycles(shape, cl.conv, cl.x_bits, cl.w_bits, cl.y_bits, cl.residual, cl.r_bits, prog.tiling)
    kinds = {fmt.kind for fmt, _ in prog.queue if fmt.kind in MODULE}
    code = fetched.cycles
    model_total = model.cycles + fetch.latency
    row = {
        "layer": layer.name,
        "kernel": f"{layer.R}x{layer.S}/{layer.stride[0]}" + ("dw" if layer.G > 1 and layer.C == 1 else ""),
        "macs": layer.macs,
        "instructions": len(prog.insns),
        "tiling": vars(prog.tiling),
        "bit_exact": bool(np.array_equal(output(prog, run).reshape(want.shape), want)),
        "csim_cycles": run.cycles,
        "core_model_cycles": model.cycles,
        "fetch_cycles": code - run.cycles,
        "model_fetch_cycles": fetch.latency,
        "insn_wait": dict(zip(MODULES, fetched.insn_wait)),
        "code_cycles": code,
        "model_cycles": model_total,
        "ratio": code / model_total,
        "busy": run.busy,
        "utilization": layer.macs / (code * shape.rows * shape.cols),
        "ii": core_hw.modules_ii(shape, {"fetch"} | kinds),
    }
    if mapping is not None:  # a peer figure: the project cost model's cycles for codax_engine.h's mapping
        row["project_cost_model_cycles"] = evaluate(layer, accel, mapping).cycles
    return row


def run_network(network: str, accel, onnx_path: Path, engine: CountingEngine, mappings=None) -> dict:
    shape, fetch = engine.shape, fetch_timing(engine.shape)
    mod = pipeline(accel, mappings)(import_onnx(str(onnx_path)))  # without mappings: codax's mapper
    maps = {n: o.mapping for n, o in offloaded_layers(mod).items()}
    graph = extract_graph(mod, accel=accel)
    model = load_onnx(onnx_path).model
    rng = np.random.default_rng(0)
    rows, refused = [], []
    t0 = time.perf_counter()
    for layer in graph.layers:
        try:
            row = run_layer(layer, from_onnx(model, layer), engine, fetch, rng, accel, maps.get(layer.name))
        except UnsupportedError as e:  # reported, not hidden: the layer does not run on the core
            refused.append({"layer": layer.name, "reason": str(e)})
            continue
        rows.append(row)
        print(f"  {layer.name:<40}{row['code_cycles']:>10,}{row['ratio']:>8.3f}{row['fetch_cycles']:>6}"
              f"  exact={row['bit_exact']}")  # fmt: skip
    code = sum(r["code_cycles"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    fetch_cycles = sum(r["fetch_cycles"] for r in rows)
    return {
        "network": network,
        "accelerator": accel.name,
        "array": [shape.rows, shape.cols],
        "layers": rows,
        "refused": refused,
        "macs": macs,
        "code_cycles": code,
        "model_cycles": sum(r["model_cycles"] for r in rows),
        "csim_cycles": sum(r["csim_cycles"] for r in rows),
        "core_model_cycles": sum(r["core_model_cycles"] for r in rows),
        "project_cost_model_cycles": sum(r.get("project_cost_model_cycles", 0) for r in rows),
        "fetch_cycles": fetch_cycles,
        "model_fetch_cycles": sum(r["model_fetch_cycles"] for r in rows),
        "fetch_share": fetch_cycles / code if code else 0.0,
        "first_insn_round_trip_cycles": fetch.latency,
        "max_layer_fetch_cycles": max((r["fetch_cycles"] for r in rows), default=0),
        "utilization": macs / (code * shape.rows * shape.cols) if code else 0.0,
        "conv3x3_utilization": conv3x3_utilization(rows, shape.rows * shape.cols),
        "fps": accel.clock_mhz * 1e6 / code if code else 0.0,
        "all_bit_exact": all(r["bit_exact"] for r in rows),
        "seconds": time.perf_counter() - t0,
    }


def conv3x3_utilization(rows: list[dict], pes: int) -> float | None:
    """The PE array's utilization on the dense 3x3 convolutions alone (None without one)."""
    c33 = [r for r in rows if r["kernel"].startswith("3x3/") and not r["kernel"].endswith("dw")]
    cycles = sum(r["code_cycles"] for r in c33)
    return sum(r["macs"] for r in c33) / (cycles * pes) if c33 else None


def hardware(accel) -> dict:
    """What the readers find in the core engine's generated sources, against the accelerator's device."""
    from codax.hw.library import load_device

    shape = core_shape(accel)
    res = core_hw.resources(shape, device_dsp_kind(accel))
    iis = {m: [{"loop": lp.label, "ii": lp.ii} for lp in ls] for m, ls in core_hw.ip_loops(shape).items()}
    out = {
        "accelerator": accel.name,
        "array": [shape.rows, shape.cols],
        "ip_loop_iis": iis,
        "max_ii": max(lp["ii"] for ls in iis.values() for lp in ls),
        "resources": {
            "dsp": res.dsp,
            "bram18": res.bram18,
            "arrays": [
                {"name": a.name, "bram18": a.bram18, "bits": a.bank_bits, "depth": a.bank_depth}
                for a in res.arrays
            ],  # fmt: skip
        },
        "idiom_violations": [str(v) for v in core_hw.violations(shape)],
    }
    if accel.target == "fpga" and accel.device:
        dev = load_device(accel.device)
        out["device"] = {"name": accel.device, "dsp": dev.dsp, "bram18": dev.bram18}
        out["fits"] = res.dsp <= dev.dsp and res.bram18 <= dev.bram18
    return out


def _geomean(xs) -> float | None:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def summary(nets: list[dict], hw: list[dict], skipped: list[dict]) -> dict:
    ratios = [r["ratio"] for n in nets for r in n["layers"]]
    big = [n for n in nets if n["macs"] >= 1_000_000]
    out = {
        "layers": len(ratios),
        "layers_refused": sum(len(n["refused"]) for n in nets),
        "all_bit_exact": all(n["all_bit_exact"] for n in nets),
        "geomean_ratio": _geomean(ratios),
        "max_abs_dev": max((abs(r - 1) for r in ratios), default=None),
        "layers_within_10pct": sum(abs(r - 1) <= 0.10 for r in ratios),
        "max_ii": max((r["ii"] for n in nets for r in n["layers"]), default=None),
        "max_ii_per_accelerator": {},
        "fetch_shares": {f"{n['network']}@{n['accelerator']}": n["fetch_share"] for n in nets},
        "max_fetch_share": max((n["fetch_share"] for n in big), default=None),
        "utilization": {f"{n['network']}@{n['accelerator']}": n["utilization"] for n in nets},
        "conv3x3_utilization": {f"{n['network']}@{n['accelerator']}": n["conv3x3_utilization"] for n in nets},
        "hardware": {
            h["accelerator"]: {
                "max_ii": h["max_ii"],
                "dsp": h["resources"]["dsp"],
                "bram18": h["resources"]["bram18"],
                "device": h.get("device"),
                "fits": h.get("fits"),
            }
            for h in hw
        },  # fmt: skip
        "skipped": skipped,
        "targets": {
            "geomean_within": 0.03,
            "every_layer_within": 0.10,
            "max_ii": 1,
            "max_fetch_share": 0.05,
            "max_fetch_share_over_networks_of_macs": 1_000_000,
            "cosearch_result_within_first_round_trip": True,
        },  # fmt: skip
    }
    for n in nets:
        m = out["max_ii_per_accelerator"]
        m[n["accelerator"]] = max([m.get(n["accelerator"], 0)] + [r["ii"] for r in n["layers"]])
    demo = next((n for n in nets if n["network"] == "cosearch_result"), None)
    refusal = next((s for s in skipped if s["network"] == "cosearch_result"), None)
    if demo is not None:
        out["cosearch_result_fetch"] = {
            "layers": len(demo["layers"]),
            "exposed_fetch_cycles": demo["fetch_cycles"],
            "model_exposed_fetch_cycles": demo["model_fetch_cycles"],
            "max_layer_exposed_fetch_cycles": demo["max_layer_fetch_cycles"],
            "first_insn_round_trip_cycles": demo["first_insn_round_trip_cycles"],
            "fetch_share": demo["fetch_share"],
            # the target: the network waits no longer for instructions than the first round trip
            "within_first_round_trip": demo["fetch_cycles"] <= demo["first_insn_round_trip_cycles"],
            # each layer is a launch of its own (program.idx): one round trip per layer is its floor
            "every_layer_within_one_round_trip": demo["max_layer_fetch_cycles"]
            <= demo["first_insn_round_trip_cycles"],
        }
    elif refusal is not None:
        out["cosearch_result_fetch"] = {"refused": refusal["reason"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accelerators", nargs="+", default=["zc706-int8", "zcu102-int8"])
    ap.add_argument("--search", help="a codax search output directory (default: run a quick search)")
    ap.add_argument("--no-imagenet", dest="imagenet", action="store_false",
                    help="skip ResNet-18 at 224x224 on zcu102-int8 (the longest C-simulation)")  # fmt: skip
    args = ap.parse_args()
    t0 = time.perf_counter()
    nets, hw, skipped = [], [], []
    engines: dict = {}

    def engine_for(accel):
        shape = shape_for(accel)  # refuses, naming the accelerator, what the core does not serve
        if shape not in engines:
            engines[shape] = CountingEngine(shape)
        return engines[shape]

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        torch.manual_seed(0)
        models = {
            "resnet18_qdq_32": qdq(resnet18(num_classes=10), tmp / "r18.onnx"),
            "mobilenet_v2_qdq_32": qdq(mobilenet_v2(10), tmp / "mbv2.onnx"),
        }
        runs = [(a, n, models[n], None) for a in args.accelerators for n in models]
        if args.imagenet:
            runs.append(("zcu102-int8", "resnet18_qdq_224",
                         qdq(resnet18(num_classes=1000), tmp / "r18_224.onnx", 224), None))  # fmt: skip
        else:
            skipped.append({"network": "resnet18_qdq_224", "accelerator": "zcu102-int8",
                            "reason": "not run (--no-imagenet)"})  # fmt: skip
        s = Path(args.search) if args.search else tmp / "search"
        if not args.search:
            from codax.demo import QUICK
            from codax.search import run_search

            run_search(QUICK, s, progress=False)
        runs.append((s / "accel.yaml", "cosearch_result", s / "net.onnx", load_mappings(s / "mappings.yaml")))
        for accel_src, name, path, maps in runs:
            accel = load_accelerator(accel_src)
            try:
                engine = engine_for(accel)
            except UnsupportedError as e:  # the core does not serve this accelerator
                skipped.append({"network": name, "accelerator": accel.name, "reason": str(e)})
                print(f"{name} on {accel.name}: refused: {e}")
                continue
            if accel.name not in {h["accelerator"] for h in hw}:
                hw.append(hardware(accel))
                h = hw[-1]
                print(f"{accel.name}: IPs' max II {h['max_ii']}; DSP {h['resources']['dsp']}, BRAM18 "
                      f"{h['resources']['bram18']} (device {h.get('device')}, fits {h.get('fits')}); "
                      f"idiom violations {len(h['idiom_violations'])}")  # fmt: skip
            print(f"{name} on {accel.name}")
            n = run_network(name, accel, path, engine, maps)
            nets.append(n)
            print(f"{name} on {accel.name}: {n['code_cycles']:,} cycles, "
                  f"utilization {n['utilization']:.1%}, fetch {n['fetch_share']:.2%}, "
                  f"refused {len(n['refused'])}, {n['seconds']:.0f} s")  # fmt: skip
    res = {"args": vars(args), "summary": summary(nets, hw, skipped), "networks": nets, "hardware": hw}
    res["seconds"] = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine_cycles.json").write_text(json.dumps(res, indent=1))
    s = res["summary"]
    print(f"all {s['layers']} layers ({s['layers_refused']} refused): "
          f"geomean code/model {s['geomean_ratio']:.4f}, "
          f"max |dev| {s['max_abs_dev']:.4f}, {s['layers_within_10pct']} within 10%; max fetch share "
          f"{s['max_fetch_share']:.2%}; max II {s['max_ii']} {s['max_ii_per_accelerator']}; "
          f"bit-exact {s['all_bit_exact']}; {res['seconds']:.0f} s")  # fmt: skip
    if "cosearch_result_fetch" in s:
        print(f"co-search result: {s['cosearch_result_fetch']}")


if __name__ == "__main__":
    main()
