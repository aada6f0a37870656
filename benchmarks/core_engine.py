"""The core engine (VTA-style LOAD / GEMM / STORE IPs around the GEMM core, docs/engine_core.md) on real
quantized layers: every layer of QDQ ResNet-18 and MobileNetV2 (32x32, ONNX Runtime's quantize_static,
per-channel int8 weights, uint8 activations with zero points) compiled to 128-bit instructions
(codax.codegen.core_compile) and run in C-simulation under the token scheduler (codax.codegen.core_sim),
checked bit for bit against the golden layer. Per layer: the cycles of the run (each module busy for
its instructions' loop trips x the II its reader finds, modules overlapping as the dependence tokens
allow), each module's busy cycles, the PE array's utilization (MACs / (cycles x PEs)), the core's
analytic model (codax.codegen.core_model, what a search would charge), and the project cost model's
cycles for the layer on the same accelerator under the mapper's mapping (the engine the flow generates
today), as a peer figure. Per accelerator: the IPs' II (codax.codegen.hls_ii), DSPs and
block RAM by array (codax.codegen.hls_resources) and idiom violations (codax.codegen.hls_idioms), all
read from the generated sources.

Writes benchmarks/results/core_engine.json.

    .venv/bin/python benchmarks/core_engine.py [--accelerators zc706-int8 ...] [--res 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from benchmarks.engine_cycles import qdq  # noqa: E402
from codax.codegen import core_hw  # noqa: E402
from codax.codegen.core import core_shape  # noqa: E402
from codax.codegen.core_compile import CoreLayer, compile_layer  # noqa: E402
from codax.codegen.core_model import layer_cycles  # noqa: E402
from codax.codegen.core_sim import Engine, output  # noqa: E402
from codax.codegen.golden import golden_layer  # noqa: E402
from codax.codegen.hls_engine import device_dsp_kind  # noqa: E402
from codax.codegen.params import from_onnx  # noqa: E402
from codax.errors import UnsupportedError  # noqa: E402
from codax.frontend import extract_graph, import_onnx, load_onnx  # noqa: E402
from codax.frontend.zoo import mobilenet_v2, resnet18  # noqa: E402
from codax.hw import evaluate, load_accelerator  # noqa: E402
from codax.passes import offloaded_layers, pipeline  # noqa: E402

RESULTS = ROOT / "results"


def _inputs(layer, params, rng):
    """Random input (all groups' channels) and residual tensors in the layer's ranges."""
    lo, hi = (0, 255) if not params.x_signed else (-128, 127)
    x = rng.integers(lo, hi + 1, (layer.G * layer.C, *layer.in_hw))
    res = None
    if layer.epilogue.residual:
        rlo, rhi = (0, 255) if not params.r_signed else (-128, 127)
        res = rng.integers(rlo, rhi + 1, (layer.G * layer.K, layer.P, layer.Q))
    return x, res


def run_network(network: str, name: str, onnx_path: Path, engine: Engine) -> dict:
    accel = load_accelerator(name)
    shape = engine.shape
    mod = pipeline(accel)(import_onnx(str(onnx_path)))
    maps = {n: o.mapping for n, o in offloaded_layers(mod).items()}
    graph = extract_graph(mod, accel=accel)
    model = load_onnx(onnx_path).model
    rng = np.random.default_rng(0)
    rows, skipped = [], []
    for layer in graph.layers:
        params = from_onnx(model, layer)
        x, res = _inputs(layer, params, rng)
        try:
            core_layer = CoreLayer.of(layer, params)
            prog = compile_layer(shape, core_layer, x=x, residual=res)
        except UnsupportedError as e:  # reported, not hidden: the layer does not run on the core
            skipped.append({"layer": layer.name, "reason": str(e)})
            continue
        run = engine.run(prog)
        xin = x.reshape(1, layer.G * layer.C) if layer.op == "matmul" else x[None]
        want = golden_layer(layer, params, xin, None if res is None else res[None])
        exact = bool(np.array_equal(output(prog, run).reshape(want.shape), want))
        model_cycles = evaluate(layer, accel, maps[layer.name]).cycles
        cl = core_layer
        predicted = layer_cycles(shape, cl.conv, cl.x_bits, cl.w_bits, cl.y_bits, cl.residual, cl.r_bits,
                                 prog.tiling).cycles  # fmt: skip
        rows.append(
            {
                "layer": layer.name,
                "kernel": f"{layer.R}x{layer.S}/{layer.stride[0]}",
                "macs": layer.macs,
                "instructions": len(prog.insns),
                "tiling": vars(prog.tiling),
                "cycles": run.cycles,
                "busy": run.busy,
                "utilization": layer.macs / (run.cycles * shape.rows * shape.cols),
                "bit_exact": exact,
                "core_model_cycles": predicted,
                "model_cycles": model_cycles,
                "cycles_vs_model": run.cycles / model_cycles,
            }
        )
        print(f"  {layer.name:<24}{run.cycles:>10,}{rows[-1]['utilization']:>8.1%}  exact={exact}")
    cycles = sum(r["cycles"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    return {
        "network": network,
        "accelerator": name,
        "array": [shape.rows, shape.cols],
        "layers": rows,
        "skipped": skipped,
        "cycles": cycles,
        "core_model_cycles": sum(r["core_model_cycles"] for r in rows),
        "model_cycles": sum(r["model_cycles"] for r in rows),
        "utilization": macs / (cycles * shape.rows * shape.cols),
        "fps": accel.clock_mhz * 1e6 / cycles,
        "all_bit_exact": all(r["bit_exact"] for r in rows),
    }


def hardware(name: str) -> dict:
    """What the readers find in the core engine's generated sources."""
    accel = load_accelerator(name)
    shape = core_shape(accel)
    res_hw = core_hw.resources(shape, device_dsp_kind(accel))
    loops = core_hw.ip_loops(shape)
    iis = {m: [{"loop": lp.label, "ii": lp.ii} for lp in ls] for m, ls in loops.items()}
    return {
        "accelerator": name,
        "array": [shape.rows, shape.cols],
        "ip_loop_iis": iis,
        "max_ii": max(lp["ii"] for ls in iis.values() for lp in ls),
        "resources": {
            "dsp": res_hw.dsp,
            "bram18": res_hw.bram18,
            "arrays": [
                {"name": a.name, "bram18": a.bram18, "bits": a.bank_bits, "depth": a.bank_depth}
                for a in res_hw.arrays
            ],
        },
        "idiom_violations": [str(v) for v in core_hw.violations(shape)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accelerators", nargs="+", default=["zc706-int8", "zcu102-int8"])
    ap.add_argument("--res", type=int, default=32, help="input resolution of the QDQ ResNet-18")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = {"args": vars(args), "networks": [], "hardware": []}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        models = {
            f"resnet18_qdq_{args.res}": qdq(resnet18(num_classes=10), Path(tmp) / "r18.onnx", args.res),
            f"mobilenet_v2_qdq_{args.res}": qdq(mobilenet_v2(10), Path(tmp) / "mbv2.onnx", args.res),
        }
        for name in args.accelerators:
            hw = hardware(name)
            out["hardware"].append(hw)
            print(
                f"{name}: IPs' max II {hw['max_ii']}; DSP {hw['resources']['dsp']}, BRAM18 "
                f"{hw['resources']['bram18']}; idiom violations {len(hw['idiom_violations'])}"
            )
            engine = Engine(core_shape(load_accelerator(name)))
            for network, path in models.items():
                print(f"{network} on {name}")
                n = run_network(network, name, path, engine)
                out["networks"].append(n)
                print(
                    f"{network} on {name}: {n['cycles']:,} cycles ({n['fps']:.0f} FPS), PE utilization "
                    f"{n['utilization']:.1%}; core model {n['core_model_cycles']:,}, project cost model "
                    f"{n['model_cycles']:,.0f}; bit-exact {n['all_bit_exact']}; skipped {len(n['skipped'])}"
                )
    out["summary"] = {
        "all_bit_exact": all(n["all_bit_exact"] for n in out["networks"]),
        "layers_skipped": sum(len(n["skipped"]) for n in out["networks"]),
        "max_ii": max(h["max_ii"] for h in out["hardware"]),
        "idiom_violations": sum(len(h["idiom_violations"]) for h in out["hardware"]),
        "resources": {
            h["accelerator"]: {k: h["resources"][k] for k in ("dsp", "bram18")} for h in out["hardware"]
        },
        "networks": {
            f"{n['network']}@{n['accelerator']}": {
                "cycles": n["cycles"],
                "fps": n["fps"],
                "utilization": n["utilization"],
                "core_model_over_csim": n["core_model_cycles"] / n["cycles"],
                "project_cost_model_over_csim": n["model_cycles"] / n["cycles"],
            }
            for n in out["networks"]
        },
    }
    out["seconds"] = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core_engine.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
