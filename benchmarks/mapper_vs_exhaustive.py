"""The fast mapper against exhaustive search of the same declared space.

Two layer sets, on three library accelerators (eyeriss-like, nvdla-small, shidiannao-like):
- tiny: small conv, depthwise and dense layers on 8x8-12x12 maps, where exhaustive search takes
  20 ms to a few seconds (spaces of a few hundred to a few million points);
- realistic: layers of two CIFAR-10 networks, ResNet-20 (He et al. 2016, section 4.2) and
  MobileNetV2 (the CIFAR variant with a stride-1 stem), chosen by network position: one 3x3 conv of
  each ResNet-20 stage, its stage-2 projection shortcut and classifier; MobileNetV2's first t=6
  bottleneck (expand, depthwise, project at 32x32), the stride-2 depthwise of the next stage and the
  classifier. A (layer, accelerator) point whose exhaustive space exceeds the set's cap (32M points,
  about 2 minutes) is skipped: it is counted before anything is scored.
Per point: the quality gap of the fast mapper (% above the exhaustive optimum of the objective), the
wall time of each method (in one process, after a warm-up) and their ratio; summaries per set and
for both together. Targets: geomean gap <= 2% at >= 100x less time. Prints a table; writes
benchmarks/results/mapper_vs_exhaustive.json.

    .venv/bin/python benchmarks/mapper_vs_exhaustive.py [--objective edp] [--set tiny|realistic|all]
        [--quick] [--max-points N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from codax.bench.stats import geomean
from codax.hw import load_accelerator
from codax.hw.mapper import map_layer
from codax.ir import Layer, conv2d, dense

RESULTS = Path(__file__).parent / "results" / "mapper_vs_exhaustive.json"
ACCELS = ("eyeriss-like", "nvdla-small", "shidiannao-like")
METRIC = {"latency": lambda c: c.cycles, "energy": lambda c: c.energy_pj, "edp": lambda c: c.edp}
PAD1 = (1, 1, 1, 1)


def tiny_layers() -> list[Layer]:
    return [
        conv2d("conv3x3", c_in=8, c_out=8, hw=(8, 8), pads=PAD1),
        conv2d("conv3x3_s2", c_in=8, c_out=16, hw=(12, 12), stride=(2, 2), pads=PAD1),
        conv2d("conv1x1", c_in=32, c_out=32, hw=(8, 8), kernel=(1, 1)),
        conv2d("conv5x5", c_in=4, c_out=4, hw=(8, 8), kernel=(5, 5), pads=(2, 2, 2, 2)),
        conv2d("dw3x3", c_in=32, c_out=32, hw=(12, 12), pads=PAD1, groups=32),
        conv2d("dw3x3_s2", c_in=64, c_out=64, hw=(12, 12), stride=(2, 2), pads=PAD1, groups=64),
        dense("fc256x128", c_in=256, c_out=128),
        dense("fc512x64_n4", n=4, c_in=512, c_out=64),
    ]


def realistic_layers() -> list[Layer]:
    """CIFAR-10 layers (32x32 inputs); `hw` is the layer's input map."""
    return [
        # ResNet-20: 3 stages of 3x3 convs with 16/32/64 channels at 32x32/16x16/8x8
        conv2d("r20.stage1.conv", c_in=16, c_out=16, hw=(32, 32), pads=PAD1),
        conv2d("r20.stage2.conv", c_in=32, c_out=32, hw=(16, 16), pads=PAD1),
        conv2d("r20.stage3.conv", c_in=64, c_out=64, hw=(8, 8), pads=PAD1),
        conv2d("r20.stage2.shortcut", c_in=16, c_out=32, hw=(32, 32), stride=(2, 2), kernel=(1, 1)),
        dense("r20.fc", c_in=64, c_out=10),
        # MobileNetV2: block 2 (t=6, 16 -> 24 channels at 32x32), block 3's stride-2 depthwise
        conv2d("mv2.block2.expand", c_in=16, c_out=96, hw=(32, 32), kernel=(1, 1)),
        conv2d("mv2.block2.dw", c_in=96, c_out=96, hw=(32, 32), pads=PAD1, groups=96),
        conv2d("mv2.block2.project", c_in=96, c_out=24, hw=(32, 32), kernel=(1, 1)),
        conv2d("mv2.block3.dw_s2", c_in=144, c_out=144, hw=(32, 32), stride=(2, 2), pads=PAD1, groups=144),
        dense("mv2.fc", c_in=1280, c_out=10),
    ]


SETS = {"tiny": tiny_layers, "realistic": realistic_layers}
MAX_POINTS = {"tiny": 2_500_000, "realistic": 32_000_000}


def compare(layer: Layer, accel, objective: str, max_points: int) -> dict | None:
    """One (layer, accelerator) point, fast then exhaustive in the same process; None when the
    exhaustive space is over the cap."""
    t = time.perf_counter()
    fast = map_layer(layer, accel, objective)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    try:
        exh = map_layer(layer, accel, objective, method="exhaustive", constraints={"max_points": max_points})
    except MemoryError:
        return None
    t_exh = time.perf_counter() - t
    f, e = METRIC[objective](fast.cost), METRIC[objective](exh.cost)
    return {
        "accelerator": accel.name,
        "layer": layer.name,
        "kind": layer.kind,
        "macs": layer.macs,
        "fast": f,
        "exhaustive": e,
        "gap_pct": (f / e - 1.0) * 100.0,
        "fast_evaluated": fast.evaluated,
        "exhaustive_evaluated": exh.evaluated,
        "fast_s": t_fast,
        "exhaustive_s": t_exh,
        "time_ratio": t_exh / t_fast,
    }


def summarize(rows: list[dict]) -> dict:
    if not rows:
        return {"points": 0}
    fast_s = sum(r["fast_s"] for r in rows)
    exh_s = sum(r["exhaustive_s"] for r in rows)
    return {
        "points": len(rows),
        "geomean_gap_pct": (geomean([1 + r["gap_pct"] / 100 for r in rows]) - 1) * 100,
        "max_gap_pct": max(r["gap_pct"] for r in rows),
        "exact_optimum": sum(r["gap_pct"] <= 1e-9 for r in rows),
        "fast_s_total": fast_s,
        "exhaustive_s_total": exh_s,
        "time_ratio_total": exh_s / fast_s,
        "time_ratio_geomean": geomean([r["time_ratio"] for r in rows]),
        "evaluated_ratio_total": sum(r["exhaustive_evaluated"] for r in rows)
        / sum(r["fast_evaluated"] for r in rows),
    }


def warm_up(accel, objective: str) -> None:
    """Map a small layer with both methods first, so that the first timed point does not pay for
    one-time work (imports, caches, first torch calls) that every later point skips."""
    layer = dense("warm_up", c_in=16, c_out=16)
    map_layer(layer, accel, objective)
    map_layer(layer, accel, objective, method="exhaustive")


def run(objective: str, accels: tuple[str, ...], sets: list[str], max_points: int | None) -> dict:
    rows, skipped = [], []
    for set_name in sets:
        cap = max_points or MAX_POINTS[set_name]
        for name in accels:
            accel = load_accelerator(name)
            warm_up(accel, objective)
            for layer in SETS[set_name]():
                where = f"{set_name:9s} {name:16s} {layer.name:20s}"
                row = compare(layer, accel, objective, cap)
                if row is None:
                    skipped.append({"set": set_name, "accelerator": name, "layer": layer.name})
                    print(f"{where}  exhaustive space over {cap:,} points: skipped")
                    continue
                row["set"] = set_name
                rows.append(row)
                print(
                    f"{where}  gap {row['gap_pct']:6.2f}%  fast {row['fast_s']:6.3f}s "
                    f"({row['fast_evaluated']:>6,} pts)  exhaustive {row['exhaustive_s']:7.2f}s "
                    f"({row['exhaustive_evaluated']:>11,} pts)  ratio {row['time_ratio']:8.1f}x",
                    flush=True,
                )
    summary = {s: summarize([r for r in rows if r["set"] == s]) for s in sets}
    if len(sets) > 1:
        summary["all"] = summarize(rows)
    caps = {s: max_points or MAX_POINTS[s] for s in sets}
    return {"objective": objective, "max_points": caps, "summary": summary, "rows": rows, "skipped": skipped}


def print_summary(res: dict) -> None:
    print(
        f"\nobjective {res['objective']}\n{'set':10s} {'points':>6s} {'gap gm %':>9s} {'gap max %':>9s} "
        f"{'exact':>5s} {'fast s':>8s} {'exh s':>8s} {'ratio tot':>9s} {'ratio gm':>9s} {'evals':>8s}"
    )
    for name, s in res["summary"].items():
        if not s["points"]:
            print(f"{name:10s} {0:6d}")
            continue
        print(
            f"{name:10s} {s['points']:6d} {s['geomean_gap_pct']:9.3f} {s['max_gap_pct']:9.2f} "
            f"{s['exact_optimum']:5d} {s['fast_s_total']:8.2f} {s['exhaustive_s_total']:8.1f} "
            f"{s['time_ratio_total']:8.0f}x {s['time_ratio_geomean']:8.0f}x "
            f"{s['evaluated_ratio_total']:7.0f}x"
        )
    if res["skipped"]:
        print(f"skipped (exhaustive space over the cap): {len(res['skipped'])} points")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objective", default="edp", choices=sorted(METRIC))
    ap.add_argument("--set", default="all", choices=[*SETS, "all"], help="layer set (default: both)")
    ap.add_argument(
        "--max-points", type=int, default=None, help="cap on the exhaustive space (default: per set)"
    )
    ap.add_argument("--quick", action="store_true", help="one accelerator only")
    ap.add_argument(
        "--out", type=Path, default=None, help=f"JSON output (default: {RESULTS.name}, full runs only)"
    )
    args = ap.parse_args()
    accels = ACCELS[:1] if args.quick else ACCELS
    sets = list(SETS) if args.set == "all" else [args.set]
    res = run(args.objective, accels, sets, args.max_points)
    print_summary(res)
    # a partial run (one set, --quick, another cap) does not overwrite the full results
    partial = args.set != "all" or args.quick or args.max_points is not None
    out = args.out or (None if partial else RESULTS)
    if out is None:
        print("partial run: results not written (pass --out PATH to keep them)")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
