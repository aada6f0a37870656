"""Schedules of ResNet-18 and MobileNetV2 on the library accelerators.

Per network x accelerator: per-layer and total latency, energy, EDP, utilization, roofline bound
and the fraction of it reached, with the mapper choosing every layer's mapping. Also times mapping
a whole ResNet-18 (target < 10 s on 2 cores). Uses the shape-only ONNX models that zigzag-dse ships.
Writes benchmarks/results/schedule_bench.json, schedule_roofline.png and
schedule_breakdown_<network>.png.

    .venv/bin/python benchmarks/schedule_bench.py [--objective latency]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from codax.bench.onnx_layers import load_graph, zigzag_workload
from codax.bench.plots import breakdown, roofline
from codax.bench.schedule import DEFAULT_ACCELS, bench_network, table
from codax.hw import load_accelerator
from codax.hw.mapper import map_graph

RESULTS = Path(__file__).parent / "results"
NETWORKS = ("resnet18", "mobilenetv2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objective", default="latency", choices=["latency", "energy", "edp"])
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)

    resnet = load_graph(zigzag_workload("resnet18"))
    t = time.perf_counter()
    gm = map_graph(resnet, load_accelerator("eyeriss-like"), args.objective)
    resnet_s = time.perf_counter() - t
    print(
        f"mapping ResNet-18 ({len(resnet.layers)} layers, {gm.searched} distinct shapes) on eyeriss-like: "
        f"{resnet_s:.2f} s, {gm.evaluated:,} mappings evaluated (target < 10 s)"
    )

    results = []
    for net in NETWORKS:
        results += bench_network(load_graph(zigzag_workload(net)), DEFAULT_ACCELS, args.objective)
    print(table(results))
    roof = roofline(results, RESULTS / "schedule_roofline.png")
    plots = [str(roof)] + [
        str(breakdown(results, net, RESULTS / f"schedule_breakdown_{net}.png")) for net in NETWORKS
    ]
    out = {
        "objective": args.objective,
        "resnet18_map_s": resnet_s,
        "resnet18_map_evaluated": gm.evaluated,
        "plots": plots,
        "results": [r.to_dict() for r in results],
    }
    (RESULTS / "schedule_bench.json").write_text(json.dumps(out, indent=1))
    print(f"wrote {RESULTS / 'schedule_bench.json'} and {', '.join(plots)}")


if __name__ == "__main__":
    main()
