"""Baselines the co-search is compared with (benchmarks/cosearch_vs_baselines.py).

- two-stage: search the network for accuracy under a FLOPs proxy, then search the accelerator for
  that fixed network (exhaustively, over every feasible point of the same accelerator space);
- fixed accelerator: search the network for a frozen accelerator (e.g. the zc706-int8 design);
- sample-based co-exploration: random (network, bitwidth, accelerator) samples, each briefly
  trained and evaluated exactly.
"""

from __future__ import annotations

import random
import time

import torch

from codax.search.derive import Design, build_graph, derived_module
from codax.search.finalize import accuracy, retrain
from codax.search.hwcost import LayerTable, configs_costs


def best_accelerator_for(cs, d: Design, chunk: int = 64) -> Design:
    """Stage 2 of the two-stage baseline: the fastest feasible accelerator point for the design's
    network, exhaustively (each layer at its best mapping template, in cost_core batches)."""
    graph, _ = build_graph(cs.net, d)
    lt = LayerTable(None, cs.bits, layers=graph.layers)
    feasible = [c for c in cs.space.all_configs() if cs.hw.fits(c)]
    cycles = []
    for i in range(0, len(feasible), chunk):
        for t in configs_costs(lt, cs.space, feasible[i : i + chunk], 3, False):
            cycles.append(float(t[:, 0, :, 0].amin(-1).sum()))  # [n, 1, M, 2]
    best = feasible[min(range(len(feasible)), key=cycles.__getitem__)]
    return Design(d.ops, d.bits, [best] * cs.chunks, d.maps)


def brief_accuracy(cs, d: Design, epochs: int, seed: int) -> float:
    """Train the design's network from scratch for a few epochs on `train`; accuracy on `val`.
    The same recipe scores co-search results and random samples."""
    model = derived_module(cs.net, d)
    data = type("D", (), {"train": cs.data.train, "val": (cs.data.train[0][:0], cs.data.train[1][:0])})()
    retrain(model, data, epochs, 0.05, 64, True, seed)
    model.quantize = True
    return accuracy(model, *cs.data.val)


def random_design(cs, rng: random.Random) -> Design:
    ops = [rng.randrange(len(u.ops)) for u in cs.net.units]
    fixed = cs.cfg["bits"]["first_last"]
    bits = [
        (rng.choice(cs.bits), rng.choice(cs.bits)) if u.searchable else (fixed, fixed) for u in cs.net.units
    ]
    feasible = [c for c in cs.space.all_configs() if cs.hw.fits(c)]
    return Design(ops, bits, [rng.choice(feasible) for _ in range(cs.chunks)])


def random_coexploration(
    cs,
    target_acc: float,
    target_fps: float,
    budget_s: float,
    brief_epochs: int,
    seed: int = 0,
    max_samples: int = 10_000,
) -> dict:
    """Sample until a design reaches the target (val accuracy >= and exact FPS >=) or the time
    budget runs out. Returns the samples and the time to reach (None when not reached)."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    samples, reached = [], None
    while time.perf_counter() - t0 < budget_s and len(samples) < max_samples:
        d = random_design(cs, rng)
        fps = cs.exact(d)["exact_fps"]
        acc = brief_accuracy(cs, d, brief_epochs, seed + len(samples))
        samples.append({"acc": acc, "fps": fps, "t": time.perf_counter() - t0})
        if acc >= target_acc and fps >= target_fps:
            reached = samples[-1]["t"]
            break
    torch.set_num_threads(torch.get_num_threads())
    return {"samples": samples, "seconds_to_reach": reached, "elapsed": time.perf_counter() - t0}
