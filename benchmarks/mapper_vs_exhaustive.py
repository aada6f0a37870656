"""The fast mapper against exhaustive search of the same declared space.

On small/medium conv, depthwise and dense layers where exhaustive enumeration is feasible, on three
library accelerators: the quality gap of the fast mapper (% above the exhaustive optimum of the
objective), the wall time of each method and their ratio. Targets: geomean gap <= 2% at >= 100x
less time. Prints a table; writes benchmarks/results/mapper_vs_exhaustive.json.

    .venv/bin/python benchmarks/mapper_vs_exhaustive.py [--objective edp] [--quick]
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


def layers() -> list[Layer]:
    pad1 = (1, 1, 1, 1)
    return [
        conv2d("conv3x3", c_in=8, c_out=8, hw=(8, 8), pads=pad1),
        conv2d("conv3x3_s2", c_in=8, c_out=16, hw=(12, 12), stride=(2, 2), pads=pad1),
        conv2d("conv1x1", c_in=32, c_out=32, hw=(8, 8), kernel=(1, 1)),
        conv2d("conv5x5", c_in=4, c_out=4, hw=(8, 8), kernel=(5, 5), pads=(2, 2, 2, 2)),
        conv2d("dw3x3", c_in=32, c_out=32, hw=(12, 12), pads=pad1, groups=32),
        conv2d("dw3x3_s2", c_in=64, c_out=64, hw=(12, 12), stride=(2, 2), pads=pad1, groups=64),
        dense("fc256x128", c_in=256, c_out=128),
        dense("fc512x64_n4", n=4, c_in=512, c_out=64),
    ]


def run(objective: str, accels: tuple[str, ...], max_points: int) -> dict:
    rows = []
    for name in accels:
        accel = load_accelerator(name)
        for layer in layers():
            t = time.perf_counter()
            fast = map_layer(layer, accel, objective)
            t_fast = time.perf_counter() - t
            t = time.perf_counter()
            try:
                exh = map_layer(
                    layer, accel, objective, method="exhaustive", constraints={"max_points": max_points}
                )
            except MemoryError:
                print(f"{name:16s} {layer.name:12s} exhaustive space over {max_points:,} points: skipped")
                continue
            t_exh = time.perf_counter() - t
            f, e = METRIC[objective](fast.cost), METRIC[objective](exh.cost)
            row = {
                "accelerator": name,
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
            rows.append(row)
            print(
                f"{name:16s} {layer.name:12s} gap {row['gap_pct']:6.2f}%  fast {t_fast:6.2f}s "
                f"({fast.evaluated:>6,} pts)  exhaustive {t_exh:7.2f}s ({exh.evaluated:>10,} pts)  "
                f"ratio {row['time_ratio']:7.1f}x"
            )
    ratio_gm = geomean([1 + r["gap_pct"] / 100 for r in rows])
    summary = {
        "objective": objective,
        "points": len(rows),
        "geomean_gap_pct": (ratio_gm - 1) * 100,
        "max_gap_pct": max(r["gap_pct"] for r in rows),
        "exact_optimum": sum(r["gap_pct"] <= 1e-9 for r in rows),
        "fast_s_total": sum(r["fast_s"] for r in rows),
        "exhaustive_s_total": sum(r["exhaustive_s"] for r in rows),
        "time_ratio_total": sum(r["exhaustive_s"] for r in rows) / sum(r["fast_s"] for r in rows),
        "time_ratio_geomean": geomean([r["time_ratio"] for r in rows]),
        "evaluated_ratio_total": sum(r["exhaustive_evaluated"] for r in rows)
        / sum(r["fast_evaluated"] for r in rows),
    }
    return {"summary": summary, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objective", default="edp", choices=sorted(METRIC))
    ap.add_argument("--max-points", type=int, default=2_500_000)
    ap.add_argument("--quick", action="store_true", help="one accelerator only")
    args = ap.parse_args()
    accels = ACCELS[:1] if args.quick else ACCELS
    res = run(args.objective, accels, args.max_points)
    s = res["summary"]
    print(
        f"\n{s['points']} (layer, accelerator) points, objective {s['objective']}: geomean gap "
        f"{s['geomean_gap_pct']:.3f}% (max {s['max_gap_pct']:.2f}%, exact optimum on {s['exact_optimum']}); "
        f"time: fast {s['fast_s_total']:.1f}s vs exhaustive {s['exhaustive_s_total']:.1f}s = "
        f"{s['time_ratio_total']:.0f}x total ({s['time_ratio_geomean']:.0f}x geomean per layer); "
        f"{s['evaluated_ratio_total']:.0f}x fewer mappings evaluated"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
