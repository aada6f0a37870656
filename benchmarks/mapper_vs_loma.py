"""codax's mapper against ZigZag's LOMA search, both judged by ZigZag's own cost model.

For each distinct conv/dense layer of ZigZag's bundled ResNet-18 on ZigZag's tpu_like (K x C array):
LOMA searches the temporal mapping (fixed spatial K32/C32); codax's mapper searches a mapping on the
codax mirror of tpu_like (codax.bench.zigzag_mirror), among the loop nests ZigZag can express (see
map_codax); that mapping is translated back into ZigZag's spatial mapping + temporal ordering and
evaluated by ZigZag's cost model. Two codax results per layer: the mapper on codax's model alone,
and the mapper with ZigZag's model as its oracle (`map_layer(oracle=...)`: the best --top distinct
mappings of codax's search re-ranked by ZigZag, --top ZigZag evaluations against LOMA's thousands).
Printed per layer: latencies and energies as ZigZag computes them, their ratios to LOMA's, and the
wall time of each search. docs/mapper.md explains the differences.

    .venv/bin/python benchmarks/mapper_vs_loma.py [--layers N] [--objective latency] [--top 32]
"""

from __future__ import annotations

import argparse
import json
import math
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


def zigzag_oracle(z: zb.ZigZagLayer, accel, objective: str):
    """ZigZag's cost model as the mapper's oracle: each candidate translated and evaluated by ZigZag
    (inf where ZigZag rejects it)."""

    def score(layer, mappings) -> list[float]:
        out = []
        for m in mappings:
            spatial, temporal = to_zigzag(m, accel)
            try:
                r = zb.evaluate_fixed(z, HARDWARE, spatial, temporal)
            except (zb.InfeasibleMappingError, ValueError):
                out.append(math.inf)
                continue
            out.append(r.latency_cycles if objective == "latency" else r.energy_pj)
        return out

    return score


def map_codax(z: zb.ZigZagLayer, accel, objective: str, **oracle):
    """codax's mapping of a ZigZag layer, searched among the loop nests ZigZag can express: ZigZag
    takes only perfect factorisations of the temporal loops, and its memory allocator fills the
    on-chip memories before DRAM, so a loop that codax kept at DRAM while the layer fits on chip
    would be moved on chip by ZigZag (a different nest from the one codax chose and costed). Layers
    too large to stay on chip are mapped without that constraint (ZigZag spills them to DRAM too)."""
    layer = codax_layer(z)
    try:
        return map_layer(layer, accel, objective=objective, constraints=RESIDENT, **oracle)
    except InfeasibleError:
        return map_layer(layer, accel, objective=objective, constraints={"divisors_only": True}, **oracle)


def judged(z: zb.ZigZagLayer, res, accel, loma, prefix: str) -> dict:
    """ZigZag's evaluation of a codax mapping, as row fields named with `prefix`."""
    spatial, temporal = to_zigzag(res.mapping, accel)
    try:
        ours = zb.evaluate_fixed(z, HARDWARE, spatial, temporal)
    except (zb.InfeasibleMappingError, ValueError) as e:
        return {f"{prefix}error": str(e)[:200]}
    return {
        f"{prefix}latency": ours.latency_cycles,
        f"{prefix}energy_pj": ours.energy_pj,
        f"{prefix}latency_ratio": ours.latency_cycles / loma.latency_cycles,
        f"{prefix}energy_ratio": ours.energy_pj / loma.energy_pj,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=None, help="only the first N distinct layers")
    ap.add_argument("--objective", default="latency", choices=["latency", "energy"])
    ap.add_argument("--top", type=int, default=32, help="codax's best mappings re-ranked by ZigZag")
    args = ap.parse_args()
    from costmodel_vs_zigzag import distinct_layers  # the sibling benchmark's layer set

    accel = mirror_accelerator()
    rows = []
    print(f"ResNet-18 on {HARDWARE}, objective {args.objective}; every mapping evaluated by ZigZag")
    print(f"  codax: codax's model alone; +oracle: its best {args.top} mappings re-ranked by ZigZag")
    print(
        f"  {'layer':34} {'LOMA lat':>10} {'codax':>6} {'+oracle':>7} {'LOMA E':>10} {'codax':>6} "
        f"{'+oracle':>7} {'LOMA s':>7} {'codax s':>7} {'+oracle s':>9}"
    )
    for z in distinct_layers("resnet18")[: args.layers]:
        loma = zb.search_loma(z, HARDWARE, objective=args.objective, spatial=SPATIAL)
        t = time.perf_counter()
        # ZigZag evaluates only perfect factorisations of the temporal loops: no partial tiles
        res = map_codax(z, accel, args.objective)
        codax_s = time.perf_counter() - t
        t = time.perf_counter()
        oracle = zigzag_oracle(z, accel, args.objective)
        res_o = map_codax(z, accel, args.objective, oracle=oracle, oracle_top=args.top)
        oracle_s = time.perf_counter() - t
        row = {
            "layer": z.name,
            "loma_latency": loma.latency_cycles,
            "loma_energy_pj": loma.energy_pj,
            "loma_s": loma.wall_s,
            "codax_s": codax_s,
            "codax_evaluated": res.evaluated,
            "oracle_s": oracle_s,
            "oracle_evaluated": res_o.oracle_evaluated,
            "oracle_rank": res_o.oracle_rank,
        }
        row.update(judged(z, res, accel, loma, "codax_"))
        row.update(judged(z, res_o, accel, loma, "oracle_"))
        rows.append(row)
        if "codax_error" in row or "oracle_error" in row:
            why = row.get("codax_error", row.get("oracle_error"))
            print(f"  {z.name[-34:]:34} ZigZag rejects codax's mapping: {why[:80]}")
            continue
        print(
            f"  {z.name[-34:]:34} {loma.latency_cycles:>10,.0f} {row['codax_latency_ratio']:6.3f} "
            f"{row['oracle_latency_ratio']:7.3f} {loma.energy_pj:10.4g} {row['codax_energy_ratio']:6.3f} "
            f"{row['oracle_energy_ratio']:7.3f} {loma.wall_s:7.2f} {codax_s:7.2f} {oracle_s:9.2f}"
        )
    ok = [r for r in rows if "codax_error" not in r and "oracle_error" not in r]
    summary = {
        "hardware": HARDWARE,
        "objective": args.objective,
        "oracle_top": args.top,
        "layers": len(rows),
        "evaluated_by_zigzag": len(ok),
        "loma_seconds": sum(r["loma_s"] for r in rows),
    }
    for name in ("codax", "oracle"):
        summary[f"{name}_geomean_latency_ratio"] = geomean([r[f"{name}_latency_ratio"] for r in ok])
        summary[f"{name}_geomean_energy_ratio"] = geomean([r[f"{name}_energy_ratio"] for r in ok])
        summary[f"{name}_seconds"] = sum(r[f"{name}_s"] for r in rows)
        summary[f"{name}_time_ratio"] = summary[f"{name}_seconds"] / summary["loma_seconds"]
        label = "codax alone" if name == "codax" else f"codax + ZigZag re-rank of {args.top}"
        print(
            f"  {label:34} geomean vs LOMA on ZigZag's model: latency "
            f"{summary[f'{name}_geomean_latency_ratio']:.4f}, "
            f"energy {summary[f'{name}_geomean_energy_ratio']:.4f}; "
            f"search time {summary[f'{name}_seconds']:.2f} s vs {summary['loma_seconds']:.1f} s "
            f"({summary[f'{name}_time_ratio']:.3f}x)"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"mapper_vs_loma_{args.objective}.json").write_text(
        json.dumps({"summary": summary, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
