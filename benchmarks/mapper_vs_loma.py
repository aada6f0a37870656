"""codax's mapper against ZigZag's LOMA search, both judged by ZigZag's own cost model.

For each distinct conv/dense layer of ZigZag's bundled ResNet-18 on ZigZag's tpu_like (K x C array):
LOMA searches the temporal mapping (fixed spatial K32/C32); codax's mapper searches a mapping on the
codax mirror of tpu_like (codax.bench.zigzag_mirror), among the loop nests ZigZag can express (see
map_codax); that mapping is translated back into ZigZag's spatial mapping + temporal ordering and
evaluated by ZigZag's cost model. Printed per layer: both latencies and energies as ZigZag computes
them, their ratios, and the wall time of each search. docs/mapper.md explains the differences.

    .venv/bin/python benchmarks/mapper_vs_loma.py [--layers N] [--objective latency]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from codax.bench import zigzag_bridge as zb
from codax.bench.stats import geomean
from codax.bench.zigzag_mirror import codax_layer, from_zigzag, to_zigzag
from codax.errors import InfeasibleError
from codax.hw.mapper import map_layer

RESULTS = Path(__file__).parent / "results"
HARDWARE = "tpu_like"
SPATIAL = {"D1": [("K", 32)], "D2": [("C", 32)]}
RESIDENT = {"divisors_only": True, "resident": True}


def mirror_accelerator():
    """The codax mirror of tpu_like: DRAM -> 2 MB SRAM (I, O) -> per-PE weight and psum registers,
    the structure LOMA's allocations on ResNet-18 have (taken from one of them)."""
    z = zb.ZigZagLayer("probe", N=1, G=1, K=64, C=64, P=14, Q=14, R=3, S=3, padding=(1, 1, 1, 1))
    return from_zigzag(z, HARDWARE, zb.search_loma(z, HARDWARE, spatial=SPATIAL)).accel


def map_codax(z: zb.ZigZagLayer, accel, objective: str):
    """codax's mapping of a ZigZag layer, searched among the loop nests ZigZag can express: ZigZag
    takes only perfect factorisations of the temporal loops, and its memory allocator fills the
    on-chip memories before DRAM, so a loop that codax kept at DRAM while the layer fits on chip
    would be moved on chip by ZigZag (a different nest from the one codax chose and costed). Layers
    too large to stay on chip are mapped without that constraint (ZigZag spills them to DRAM too)."""
    layer = codax_layer(z)
    try:
        return map_layer(layer, accel, objective=objective, constraints=RESIDENT)
    except InfeasibleError:
        return map_layer(layer, accel, objective=objective, constraints={"divisors_only": True})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=None, help="only the first N distinct layers")
    ap.add_argument("--objective", default="latency", choices=["latency", "energy"])
    args = ap.parse_args()
    from costmodel_vs_zigzag import distinct_layers  # the sibling benchmark's layer set

    accel = mirror_accelerator()
    rows = []
    print(f"ResNet-18 on {HARDWARE}, objective {args.objective}; both mappings evaluated by ZigZag")
    print(
        f"  {'layer':34} {'LOMA lat':>10} {'codax lat':>10} {'ratio':>6} {'LOMA E':>10} {'codax E':>10} "
        f"{'ratio':>6} {'LOMA s':>7} {'codax s':>7}"
    )
    for z in distinct_layers("resnet18")[: args.layers]:
        loma = zb.search_loma(z, HARDWARE, objective=args.objective, spatial=SPATIAL)
        t = time.perf_counter()
        # ZigZag evaluates only perfect factorisations of the temporal loops: no partial tiles
        res = map_codax(z, accel, args.objective)
        codax_s = time.perf_counter() - t
        spatial, temporal = to_zigzag(res.mapping, accel)
        row = {
            "layer": z.name,
            "loma_latency": loma.latency_cycles,
            "loma_energy_pj": loma.energy_pj,
            "loma_s": loma.wall_s,
            "codax_s": codax_s,
            "codax_evaluated": res.evaluated,
        }
        try:
            ours = zb.evaluate_fixed(z, HARDWARE, spatial, temporal)
        except (zb.InfeasibleMappingError, ValueError) as e:
            row["error"] = str(e)[:200]
            rows.append(row)
            print(f"  {z.name[-34:]:34} ZigZag rejects codax's mapping: {str(e)[:80]}")
            continue
        row.update(
            codax_latency=ours.latency_cycles,
            codax_energy_pj=ours.energy_pj,
            latency_ratio=ours.latency_cycles / loma.latency_cycles,
            energy_ratio=ours.energy_pj / loma.energy_pj,
        )
        rows.append(row)
        print(
            f"  {z.name[-34:]:34} {loma.latency_cycles:>10,.0f} {ours.latency_cycles:>10,.0f} "
            f"{row['latency_ratio']:6.3f} {loma.energy_pj:10.4g} {ours.energy_pj:10.4g} "
            f"{row['energy_ratio']:6.3f} "
            f"{loma.wall_s:7.2f} {codax_s:7.2f}"
        )
    ok = [r for r in rows if "error" not in r]
    summary = {
        "hardware": HARDWARE,
        "objective": args.objective,
        "layers": len(rows),
        "evaluated_by_zigzag": len(ok),
        "geomean_latency_ratio": geomean([r["latency_ratio"] for r in ok]),
        "geomean_energy_ratio": geomean([r["energy_ratio"] for r in ok]),
        "loma_seconds": sum(r["loma_s"] for r in rows),
        "codax_seconds": sum(r["codax_s"] for r in rows),
    }
    summary["time_ratio"] = summary["codax_seconds"] / summary["loma_seconds"]
    print(
        f"  geomean codax/LOMA on ZigZag's model: latency {summary['geomean_latency_ratio']:.3f}, energy "
        f"{summary['geomean_energy_ratio']:.3f}; search time {summary['codax_seconds']:.1f} s vs "
        f"{summary['loma_seconds']:.1f} s ({summary['time_ratio']:.2f}x)"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"mapper_vs_loma_{args.objective}.json").write_text(
        json.dumps({"summary": summary, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
