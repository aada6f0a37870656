"""The engine's time is the model's time: per layer, the cost model's cycles against the cycles the
engine's C-simulation accounts as it runs (codax_engine.h; docs/vitis.md, "Cycle accounting": decode,
load, compute and store tasks meeting through dependence tokens, DRAM transfers at the beats their
addresses touch on a dram.bandwidth-wide port plus the DRAM latency per transfer, the descriptor's
fetch, one PE-array step per cycle plus a pipeline fill per run of steps). Each network's layers run
as the calls of one program, in order: every call prefetches the next call's descriptor while its layer
runs, so a call waits only for what of that prefetch outlasted the call before (its exposed fetch,
`fetch_cycles`); the model charges the same (codax.hw.evaluate.chain_calls).

Networks: QDQ ResNet-18 and MobileNetV2 (32x32, per-channel int8, ORT quantize_static) on zc706-int8
and zcu102-int8, each layer mapped by codax's mapper; ResNet-18 at its own 224x224 on zcu102-int8
(--no-imagenet skips it); and a co-search result (net.onnx, accel.yaml and
mappings.yaml of `codax search`, given with --search, else a quick search run here). Per network the
accounted GOPS against the device's peak (PEs x 2 ops x clock: DSPs x clock x ops per DSP with the
accelerator's MAC packing); for ResNet-18 also its 3x3 convolutions alone.

Per layer also `ii`: the largest initiation interval over the engine's pipelined loops the layer runs
(its compute task's loop and its transfer loops), as the loops' memory ports allow it
(codax.codegen.hls_ii: per iteration, the accesses to each physical bank over its ports, the banks as
the generated ARRAY_PARTITION / RESHAPE pragmas lay them out), beside `accounting_ii`, the II the
cycle accounting charges (COMPUTE_II). Where the two differ, the code cannot run at the accounted speed.

Writes benchmarks/results/engine_cycles.json with a `summary`: geomean_ratio (code / model) and
max_abs_dev (largest per-layer |code/model - 1|), fetch_shares (per network: exposed descriptor fetch /
code cycles) and max_fetch_share over the networks of at least 1M MACs, max_ii over every layer.
Targets: max_ii 1 (the accounting's II) on zc706-int8 and zcu102-int8; geomean within 3%,
every layer within 10%; ResNet-18's 3x3 convolutions at >= 70% of zcu102-int8's peak by the code's
accounting; an exposed fetch of at most 5% of a network's cycles; the co-search result (the demo's
network) waits no longer for descriptors than the first descriptor's round trip.

    .venv/bin/python benchmarks/engine_cycles.py [--search out/search] [--no-imagenet]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from codax.codegen import LayerKernel, random_params
from codax.codegen.hls_engine import engine_loop_iis
from codax.frontend import export_torch, extract_graph, import_onnx
from codax.frontend.zoo import mobilenet_v2, resnet18
from codax.hw import evaluate, load_accelerator
from codax.hw.cost import descriptor_fetch_cycles
from codax.hw.evaluate import chain_calls
from codax.ir import load_mappings
from codax.passes import offloaded_layers, pipeline

RESULTS = Path(__file__).parent / "results"
ACCOUNTING_II = 1  # codax_engine.h COMPUTE_II: one PE-array step per cycle in the cycle accounting
_LOOP_II: dict[str, int] = {}


def engine_ii(accel) -> int:
    """The largest II the generated engine's pipelined loops allow (every layer runs the compute loop
    and the transfer loops of its ports)."""
    if accel.name not in _LOOP_II:
        _LOOP_II[accel.name] = max(lp.ii for lp in engine_loop_iis(accel))
    return _LOOP_II[accel.name]


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


def accounted_program(layers, accel, mappings) -> list:
    """The engine's Counts of each layer run as call i of one program of all of them, in order."""
    kernels = [LayerKernel(layer, accel, mappings[layer.name], count=True) for layer in layers]
    params = [random_params(layer, np.random.default_rng(0)) for layer in layers]
    program = np.stack([k.descriptor(p) for k, p in zip(kernels, params)])
    out = []
    for i, (layer, k, p) in enumerate(zip(layers, kernels, params)):
        h, w = layer.in_hw
        x = np.zeros((layer.N, layer.G * layer.C, h, w), np.int8)
        res = (
            np.zeros((layer.N, layer.G * layer.K, layer.P, layer.Q), np.int8)
            if layer.epilogue.residual
            else None
        )
        out.append(k(p, x, res, program=program, call=i)[1])
    return out


def run_network(name: str, graph, accel, mappings) -> dict:
    rows = []
    layers = graph.layers
    costs = chain_calls([evaluate(layer, accel, mappings[layer.name]) for layer in layers], accel)
    for layer, cost, counts in zip(layers, costs, accounted_program(layers, accel, mappings)):
        rows.append(
            {
                "layer": layer.name,
                "kernel": f"{layer.R}x{layer.S}" + ("dw" if layer.G > 1 and layer.C == 1 else ""),
                "macs": layer.macs,
                "model_cycles": cost.cycles,
                "code_cycles": counts.cycles,
                "ratio": counts.cycles / cost.cycles,
                "fetch_cycles": counts.fetch_cycles,  # exposed descriptor fetch, by the code
                "model_fetch_cycles": cost.fetch_cycles,
                "roofline_cycles": cost.roofline_cycles,  # max(MACs / PEs, compulsory DRAM bytes / bw)
                "ii": engine_ii(accel),
                "accounting_ii": ACCOUNTING_II,
            }
        )
    peak_ops_per_cycle = 2 * accel.pe_array.pes
    macs = sum(r["macs"] for r in rows)
    code = sum(r["code_cycles"] for r in rows)
    c33 = [r for r in rows if r["kernel"] == "3x3"]
    out = {
        "network": name,
        "accelerator": accel.name,
        "layers": rows,
        "code_cycles": code,
        "model_cycles": sum(r["model_cycles"] for r in rows),
        "macs": macs,
        "fetch_cycles": sum(r["fetch_cycles"] for r in rows),
        "model_fetch_cycles": sum(r["model_fetch_cycles"] for r in rows),
        "fetch_share": sum(r["fetch_cycles"] for r in rows) / code,
        # one descriptor's round trip: what the first call waits
        "descriptor_round_trip_cycles": descriptor_fetch_cycles(accel.dram.latency, accel.dram.bandwidth),
        "gops": 2 * macs * accel.clock_mhz * 1e6 / code / 1e9,
        "peak_gops": peak_ops_per_cycle * accel.clock_mhz * 1e6 / 1e9,
    }
    out["fraction_of_peak"] = out["gops"] / out["peak_gops"]
    if c33:
        m33, cyc33 = sum(r["macs"] for r in c33), sum(r["code_cycles"] for r in c33)
        out["conv3x3_fraction_of_peak"] = 2 * m33 / cyc33 / peak_ops_per_cycle
        # the most any design could reach on these layers at this DRAM bandwidth (roofline)
        roof33 = sum(r["roofline_cycles"] for r in c33)
        out["conv3x3_roofline_fraction_of_peak"] = 2 * m33 / roof33 / peak_ops_per_cycle
    return out


def summary(nets: list[dict]) -> dict:
    ratios = [r["ratio"] for n in nets for r in n["layers"]]
    big = [n for n in nets if n["macs"] >= 1_000_000]
    demo = next(n for n in nets if n["network"] == "cosearch_result")
    return {
        "layers": len(ratios),
        "geomean_ratio": math.exp(sum(math.log(r) for r in ratios) / len(ratios)),
        "max_abs_dev": max(abs(r - 1) for r in ratios),
        "layers_within_10pct": sum(abs(r - 1) <= 0.10 for r in ratios),
        "max_ii": max(r["ii"] for n in nets for r in n["layers"]),
        "max_ii_per_accelerator": {n["accelerator"]: max(r["ii"] for r in n["layers"]) for n in nets},
        "accounting_ii": ACCOUNTING_II,
        "fetch_shares": {f"{n['network']}@{n['accelerator']}": n["fetch_share"] for n in nets},
        "max_fetch_share": max(n["fetch_share"] for n in big),
        "cosearch_result_fetch": {
            "exposed_fetch_cycles": demo["fetch_cycles"],
            "model_exposed_fetch_cycles": demo["model_fetch_cycles"],
            "descriptor_round_trip_cycles": demo["descriptor_round_trip_cycles"],
            "fetch_share": demo["fetch_share"],
            "within_one_round_trip": demo["fetch_cycles"] <= demo["descriptor_round_trip_cycles"],
        },
        "targets": {
            "geomean_within": 0.03,
            "every_layer_within": 0.10,
            "max_ii": 1,
            "max_fetch_share": 0.05,
            "max_fetch_share_over_networks_of_macs": 1_000_000,
            "cosearch_result_fetch_within_one_round_trip": True,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--search", help="a codax search output directory (default: run a quick search)")
    ap.add_argument(
        "--no-imagenet", dest="imagenet", action="store_false",
        help="skip ResNet-18 at 224x224 on zcu102-int8 (its C-simulation takes a few minutes)",
    )  # fmt: skip
    args = ap.parse_args()
    nets = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        models = {
            "resnet18_qdq_32": qdq(resnet18(num_classes=10), tmp / "r18.onnx"),
            "mobilenet_v2_qdq_32": qdq(mobilenet_v2(10), tmp / "mbv2.onnx"),
        }
        runs = [(a, n) for a in ("zc706-int8", "zcu102-int8") for n in models]
        if args.imagenet:
            # ResNet-18 at its own resolution, on the device the peak target names
            models["resnet18_qdq_224"] = qdq(resnet18(num_classes=1000), tmp / "r18_224.onnx", 224)
            runs.append(("zcu102-int8", "resnet18_qdq_224"))
        for accel_name, name in runs:
            accel = load_accelerator(accel_name)
            mod = pipeline(accel)(import_onnx(str(models[name])))  # each layer mapped by codax's mapper
            maps = {n: o.mapping for n, o in offloaded_layers(mod).items()}
            nets.append(run_network(name, extract_graph(mod, accel=accel), accel, maps))
        search = Path(args.search) if args.search else tmp / "search"
        if not args.search:
            from codax.demo import QUICK
            from codax.search import run_search

            run_search(QUICK, search, progress=False)
        accel = load_accelerator(search / "accel.yaml")
        mod = pipeline(accel, load_mappings(search / "mappings.yaml"))(import_onnx(str(search / "net.onnx")))
        graph = extract_graph(mod, accel=accel)
        nets.append(run_network("cosearch_result", graph, accel, load_mappings(search / "mappings.yaml")))
    res = {"summary": summary(nets), "networks": nets}
    head = ("network", "accelerator", "layers", "geomean", "max dev", "GOPS", "of peak", "fetch")
    print("{:<22}{:<14}{:>7}{:>9}{:>9}{:>9}{:>9}{:>9}".format(*head))
    for n in nets:
        rs = [r["ratio"] for r in n["layers"]]
        gm, dev = math.exp(sum(map(math.log, rs)) / len(rs)), max(abs(r - 1) for r in rs)
        print(
            f"{n['network']:<22}{n['accelerator']:<14}{len(rs):>7}{gm:>9.3f}{dev:>9.3f}"
            f"{n['gops']:>9.1f}{n['fraction_of_peak']:>9.1%}{n['fetch_share']:>9.2%}"
        )
        if "conv3x3_fraction_of_peak" in n:
            print(
                f"{'':<22}3x3 convolutions alone: {n['conv3x3_fraction_of_peak']:.1%} of peak "
                f"(the roofline allows {n['conv3x3_roofline_fraction_of_peak']:.1%})"
            )
    s = res["summary"]
    print(
        f"all {s['layers']} layers: geomean code/model {s['geomean_ratio']:.4f}, "
        f"max |dev| {s['max_abs_dev']:.3f}, {s['layers_within_10pct']} within 10%; exposed descriptor "
        f"fetch at most {s['max_fetch_share']:.2%} of a network's cycles (networks of >= 1M MACs)"
    )
    print(
        f"largest II the engines' loops allow: {s['max_ii']} (accounted: {s['accounting_ii']}); "
        + ", ".join(f"{a} {v}" for a, v in s["max_ii_per_accelerator"].items())
    )
    f = s["cosearch_result_fetch"]
    print(
        f"co-search result: exposed fetch {f['exposed_fetch_cycles']:.0f} cycles (model "
        f"{f['model_exposed_fetch_cycles']:.0f}), one descriptor's round trip "
        f"{f['descriptor_round_trip_cycles']:.0f}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine_cycles.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
