"""codax's cost model beside ZigZag's on the same mappings.

For each distinct conv/dense layer of ZigZag's bundled ResNet-18, ZigZag's LOMA search picks a
mapping on ZigZag's tpu_like and eyeriss_like; the mapping is translated into a codax mirror of the
hardware (codax.bench.zigzag_mirror) and evaluated by codax. Printed per layer: both models'
latency and energy and their ratios; latency also without codax's output drain (the last output
tiles' write-back after compute ends) and descriptor fetch (the engine reads each layer's descriptor
before it starts), which ZigZag's hardware template does not have. See docs/zigzag_comparison.md.

    .venv/bin/python benchmarks/costmodel_vs_zigzag.py [--hardware tpu_like eyeriss_like] [--layers N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from codax.bench import zigzag_bridge as zb
from codax.bench.stats import geomean
from codax.bench.zigzag_mirror import NotRepresentable, from_zigzag
from codax.hw.evaluate import evaluate_core

RESULTS = Path(__file__).parent / "results"
SPATIAL = {"tpu_like": {"D1": [("K", 32)], "D2": [("C", 32)]}, "eyeriss_like": None}


def distinct_layers(model: str) -> list[zb.ZigZagLayer]:
    seen, out = set(), []
    for z in zb.conv_layers_from_onnx(model):
        key = (z.K, z.C, z.G, z.P, z.Q, z.R, z.S, z.stride, z.padding)
        if key not in seen:
            seen.add(key)
            out.append(z)
    return out


def compare(hardware: str, layers: list[zb.ZigZagLayer]) -> dict:
    rows = []
    for z in layers:
        t = time.perf_counter()
        r = zb.search_loma(z, hardware, spatial=SPATIAL[hardware])
        loma_s = time.perf_counter() - t
        row = {
            "layer": z.name,
            "shape": f"K{z.K} C{z.C} G{z.G} P{z.P} R{z.R} s{z.stride[0]}",
            "zz_latency": r.latency_cycles,
            "zz_energy_pj": r.energy_pj,
            "loma_s": loma_s,
        }
        try:
            m = from_zigzag(z, hardware, r)
        except NotRepresentable as e:
            row["skipped"] = str(e)
            rows.append(row)
            print(f"  {z.name[-34:]:34} {row['shape']:26} skipped: {e}")
            continue
        _, o = evaluate_core(m.layer, m.accel, m.mapping)
        lat, energy = o.cycles.item(), o.energy_pj.item()
        drain = o.drain_cycles.item() + o.fetch_cycles.item()  # what ZigZag's template lacks
        row.update(
            cx_latency=lat,
            cx_latency_no_drain=lat - drain,
            cx_energy_pj=energy,
            latency_ratio=lat / r.latency_cycles,
            latency_ratio_no_drain=(lat - drain) / r.latency_cycles,
            energy_ratio=energy / r.energy_pj,
        )
        rows.append(row)
        print(
            f"  {z.name[-34:]:34} {row['shape']:26} lat {r.latency_cycles:>11,.0f} {lat:>11,.0f} "
            f"{row['latency_ratio']:6.3f} {row['latency_ratio_no_drain']:6.3f}   energy {r.energy_pj:10.4g} "
            f"{energy:10.4g} {row['energy_ratio']:6.3f}"
        )
    ok = [r for r in rows if "skipped" not in r]
    summary = {
        "hardware": hardware,
        "layers": len(rows),
        "compared": len(ok),
        "geomean_latency_ratio": geomean([r["latency_ratio"] for r in ok]),
        "geomean_latency_ratio_no_drain": geomean([r["latency_ratio_no_drain"] for r in ok]),
        "geomean_energy_ratio": geomean([r["energy_ratio"] for r in ok]),
        "within_15pct_latency_no_drain": sum(abs(r["latency_ratio_no_drain"] - 1) <= 0.15 for r in ok),
        "within_15pct_energy": sum(abs(r["energy_ratio"] - 1) <= 0.15 for r in ok),
    }
    return {"summary": summary, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hardware", nargs="+", default=["tpu_like", "eyeriss_like"])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--layers", type=int, default=None, help="only the first N distinct layers")
    args = ap.parse_args()
    layers = distinct_layers(args.model)[: args.layers]
    out = {}
    for hw in args.hardware:
        print(
            f"\n{hw}: {len(layers)} distinct layers of {args.model}; "
            "ZigZag (LOMA) vs codax on ZigZag's mapping"
        )
        print(
            f"  {'layer':34} {'shape':26} {'latency zz':>15} {'codax':>11} {'ratio':>6} {'-drain':>6}   "
            f"{'energy zz':>16} {'codax':>10} {'ratio':>6}"
        )
        out[hw] = compare(hw, layers)
        s = out[hw]["summary"]
        print(
            f"  geomean codax/ZigZag: latency {s['geomean_latency_ratio']:.3f} "
            f"(without output drain and descriptor fetch {s['geomean_latency_ratio_no_drain']:.3f}), energy "
            f"{s['geomean_energy_ratio']:.3f}; within 15%: latency (no drain) "
            f"{s['within_15pct_latency_no_drain']}/{s['compared']}, "
            f"energy {s['within_15pct_energy']}/{s['compared']}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "costmodel_vs_zigzag.json").write_text(json.dumps(out, indent=2))
    print(f"\nwrote {RESULTS / 'costmodel_vs_zigzag.json'}")


if __name__ == "__main__":
    main()
