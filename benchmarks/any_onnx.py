"""Any ONNX model on an integer accelerator: how much of each model's MAC work is offloaded.

Analysis-only compiles (`compile_model(..., analyze_only=True)`, float layers costed at the
accelerator's precision) of the models the tests write (a ViT-style encoder block at two token
counts, a Conv1d keyword net, a ConvTranspose decoder, a small CNN) and of ZigZag's shape-only
ResNet-18, MobileNetV2 and AlexNet; and a full compile of a Brevitas network exported as QONNX
(4-bit, one 2-bit layer, a residual add), run on random inputs and checked against the golden model
(elements off) and QONNX's executor (steps per quantized tensor). Prints a table and writes
benchmarks/results/any_onnx.json.

    .venv/bin/python benchmarks/any_onnx.py [--accel zc706-int8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from codax.bench.zigzag_bridge import workload_onnx_path  # noqa: E402
from codax.flow import compile_model  # noqa: E402
from codax.frontend import export_torch  # noqa: E402
from tests.frontend.any_models import EncoderBlock, export  # noqa: E402
from tests.frontend.qonnx_models import BREVITAS_INPUT, export_brevitas, qonnx_tensors, quant_steps  # noqa: E402

RESULTS = ROOT / "results"


def _models(tmp: Path) -> dict[str, Path]:
    out = {name: export(name, tmp / f"{name}.onnx") for name in ("encoder", "keyword", "decoder", "cnn")}
    torch.manual_seed(0)  # ViT-style block on 64 tokens of width 64 (32x32 image, 4x4 patches)
    out["encoder_t64"] = export_torch(
        EncoderBlock(dim=64, heads=4, patch=4).eval(), torch.randn(1, 3, 32, 32), tmp / "encoder_t64.onnx"
    )
    for name in ("resnet18", "mobilenetv2", "alexnet"):
        out[f"zigzag_{name}"] = Path(workload_onnx_path(name))
    return out


def _host_mac_nodes(report) -> list[str]:
    """The MAC nodes (Conv, ConvTranspose, MatMul, Gemm) a compile left on the host."""
    macs = ("Conv", "ConvTranspose", "MatMul", "Gemm")
    return [r.node for r in report.nodes if r.placement == "host" and r.op_type in macs]


def _brevitas_row(tmp: Path, accel: str, inputs: int = 8) -> dict:
    """The Brevitas network compiled (kernels, executable), run on `inputs` random samples."""
    import numpy as np
    import onnx

    from codax.flow import References, check_compiled

    path = export_brevitas(tmp / "brevitas_qonnx.onnx")
    t0 = time.perf_counter()
    res = compile_model(path, accel, tmp / "out_brevitas")
    compile_s = time.perf_counter() - t0
    refs, model = References(res.out_dir), onnx.load(str(path))
    rng = np.random.default_rng(0)
    off, steps = 0, {}
    for _ in range(inputs):
        x = rng.standard_normal(BREVITAS_INPUT).astype(np.float32)
        off += sum(c.mismatching for c in check_compiled(res.out_dir, x, refs=refs).golden)
        got, total = quant_steps(model, refs.golden_tensors(x), qonnx_tensors(model, x))
        assert len(got) == total == 5, f"{len(got)} of {total} activation Quants compared (want 5 of 5)"
        for k, v in got.items():
            steps[k] = max(steps.get(k, 0.0), v)
    return {
        **_report_row("brevitas_qonnx", res.report),
        "model_precisions": sorted({r.model_precision for r in res.report.layers if r.model_precision}),
        "compile_s": compile_s,
        "checked_inputs": inputs,
        "elements_off_golden": off,
        "max_steps_vs_qonnx": steps,
    }


def _report_row(model: str, report) -> dict:
    """What a compile report says of a model: nodes, offloaded layers and MACs, widths, cycles."""
    t = report.totals
    return {
        "model": model,
        "onnx_nodes": t["onnx_nodes"],
        "offloaded_layers": t["offloaded_layers"],
        "offloaded_macs": t["offloaded_macs"],
        "model_macs": t["model_macs"],
        "offloaded_mac_share": t["offloaded_mac_share"],
        "precisions": sorted({r.precision for r in report.layers}),
        "host_mac_nodes": _host_mac_nodes(report),
        "cycles": t["cycles"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accel", default="zc706-int8")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for name, path in _models(Path(td)).items():
            t0 = time.perf_counter()
            res = compile_model(path, args.accel, Path(td) / f"out_{name}", analyze_only=True)
            rows.append({**_report_row(name, res.report), "analysis_s": time.perf_counter() - t0})
        rows.append(_brevitas_row(Path(td), args.accel))
    head = (
        f"{'model':20s} {'nodes':>6s} {'layers':>6s} {'MACs offloaded':>16s} {'of MACs':>14s} "
        f"{'share':>7s}  precision"
    )
    print(f"on {args.accel} (analysis only; brevitas_qonnx compiled and run)\n{head}\n{'-' * len(head)}")
    for r in rows:
        print(
            f"{r['model']:20s} {r['onnx_nodes']:6d} {r['offloaded_layers']:6d} {r['offloaded_macs']:16,d} "
            f"{r['model_macs']:14,d} {r['offloaded_mac_share']:7.1%}  {','.join(r['precisions'])}"
        )
    b = rows[-1]
    print(
        f"{b['model']}: compiled and run on {b['checked_inputs']} inputs, "
        f"{b['elements_off_golden']} elements off golden, "
        f"max {max(b['max_steps_vs_qonnx'].values()):g} steps vs QONNX's executor "
        f"(widths stated {','.join(b['model_precisions'])} run at {','.join(b['precisions'])})"
    )
    out = RESULTS / "any_onnx.json"
    out.write_text(json.dumps({"accelerator": args.accel, "models": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
