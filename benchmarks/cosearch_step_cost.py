"""How much of a co-search step the hardware-cost term takes (target: <= 10%).

Runs the bundled default search (digits, small supernet, ZC706 budget) with a target FPS for a few
epochs and times, per step, (1) the whole step as training runs it (weight step + architecture
step, lambda control included) and (2) the hardware part alone: expected cost + resources +
penalty, forward and backward, including any cost-table refresh the step triggers (cache misses
when a drawn accelerator point is new), plus the lambda controller's cost of the derived design. The
one-off table building and the per-epoch exact-mapper evaluation are reported separately.

With the default cost tables (`search.relaxed_cost: mapper`) a new accelerator point's table needs
the exact mapper's mapping of every supernet layer there; a search is run only for a layer whose
mapper view (what the search reads of the point: its spatial offer and the buffers it could fill) is
new, and points that build the same accelerator share a table (codax/search/mappertable.py), so the
refreshes are front-loaded and the mean over steps stays above the median; `--relaxed-cost
templates` measures the fixed mapping templates. The JSON holds one entry per mode run, under its
name; the mapper's entry counts the searches run, the layer-point pairs that reused one, and the
width evaluations.

    .venv/bin/python benchmarks/cosearch_step_cost.py [--epochs 6] [--relaxed-cost mapper templates]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from codax.search.config import load_config  # noqa: E402
from codax.search.cosearch import CoSearch  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--target-fps", type=float, default=120_000.0)
    ap.add_argument("--relaxed-cost", nargs="*", default=["mapper", "templates"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    for mode in args.relaxed_cost:
        print(f"== search.relaxed_cost: {mode}")
        results[mode] = measure(args, mode)
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "cosearch_step_cost.json").write_text(json.dumps(results, indent=2))
    return 0


def measure(args, mode: str) -> dict:
    cfg = {
        "search": {
            "epochs": args.epochs,
            "warmup_epochs": 0,
            "target_fps": args.target_fps,
            "relaxed_cost": mode,
        }
    }
    cs = CoSearch(load_config(cfg))
    table_before = cs.hw.table_seconds
    step_t, hw_t = [], []
    s = cs.cfg.search
    for e in range(args.epochs):
        tau = cs.tau(e)
        gen = torch.Generator().manual_seed(e)
        tb = cs.data.loader("train", s.batch_size, gen)
        vb = cs.data.loader("val", s.batch_size, gen)
        for (x, y), (xv, yv) in zip(tb, vb):
            t0 = time.perf_counter()
            cs.weight_step(x, y, tau)
            cs.arch_step(xv, yv, tau)
            t1 = time.perf_counter()
            a = cs.arch
            h0 = time.perf_counter()
            op_w, bw, ba, _ = cs.arch_gates(tau)  # the architecture step's gates
            hw, _ = cs.hw_term(op_w, bw, ba)
            (cs.lam * hw).backward()
            a.zero_grad(set_to_none=True)
            with torch.no_grad():  # the lambda controller's look at the derived design
                cs.estimate(None, onehot_design=cs.design())
            h1 = time.perf_counter()
            step_t.append(t1 - t0)
            hw_t.append(h1 - h0)
    t_ex = time.perf_counter()
    cs.exact(cs.design())
    exact_s = time.perf_counter() - t_ex
    step, hw = statistics.median(step_t), statistics.median(hw_t)
    mean_step, mean_hw = statistics.mean(step_t), statistics.mean(hw_t)
    res = {
        "steps": len(step_t),
        "median_step_ms": step * 1e3,
        "median_hw_ms": hw * 1e3,
        "median_fraction": hw / step,
        "mean_step_ms": mean_step * 1e3,
        "mean_hw_ms_incl_table_refresh": mean_hw * 1e3,
        "mean_fraction": mean_hw / mean_step,
        "initial_table_seconds": table_before,
        "table_seconds_total": cs.hw.table_seconds,
        "cached_accelerator_points": len(cs.hw.cache),
        "exact_mapper_eval_seconds_per_design": exact_s,
        "mapper": cs.exact(cs.design())["mapper"],
    }
    mt = cs.hw.mapper_tables
    if mt is not None:  # how much of the tables' work was shared (mappertable.py)
        res["distinct_accelerator_tables"] = len({id(t) for t in cs.hw.cache.values()})
        res["mapper_searches"] = mt.searches
        res["layer_points_reusing_a_search"] = mt.reused
        res["width_evaluations"] = mt.evaluations
        res["supernet_layers"] = len(cs.lt.layers)
    print(
        f"search step (weight + architecture): median {step * 1e3:.1f} ms, mean {mean_step * 1e3:.1f} ms "
        f"over {len(step_t)} steps"
    )
    print(
        f"hardware-cost part (fwd + bwd):      median {hw * 1e3:.2f} ms ({hw / step:.1%}), mean incl. "
        f"table refreshes {mean_hw * 1e3:.2f} ms ({mean_hw / mean_step:.1%})"
    )
    print(
        f"one-off cost tables at start {table_before:.2f} s; total table time {cs.hw.table_seconds:.2f} s "
        f"for {len(cs.hw.cache)} accelerator points; exact evaluation of a derived design "
        f"{exact_s:.2f} s (per epoch)"
    )
    print("target <= 10% (mean):", "met" if mean_hw / mean_step <= 0.10 else "NOT met")
    return res


if __name__ == "__main__":
    sys.exit(main())
