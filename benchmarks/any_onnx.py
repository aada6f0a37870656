"""Any ONNX model on an integer accelerator: how much of each model's MAC work is offloaded.

Analysis-only compiles (`compile_model(..., analyze_only=True)`, float layers costed at the
accelerator's precision) of the models the tests write (a ViT-style encoder block at two token
counts, a Conv1d keyword net, a ConvTranspose decoder, a small CNN) and of ZigZag's shape-only
ResNet-18, MobileNetV2 and AlexNet. Prints a table and writes benchmarks/results/any_onnx.json.

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
            t = res.report.totals
            host_mac_nodes = [
                r.node
                for r in res.report.nodes
                if r.placement == "host" and r.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")
            ]
            rows.append(
                {
                    "model": name,
                    "onnx_nodes": t["onnx_nodes"],
                    "offloaded_layers": t["offloaded_layers"],
                    "offloaded_macs": t["offloaded_macs"],
                    "model_macs": t["model_macs"],
                    "offloaded_mac_share": t["offloaded_mac_share"],
                    "precisions": sorted({r.precision for r in res.report.layers}),
                    "host_mac_nodes": host_mac_nodes,
                    "cycles": t["cycles"],
                    "analysis_s": time.perf_counter() - t0,
                }
            )
    head = (
        f"{'model':20s} {'nodes':>6s} {'layers':>6s} {'MACs offloaded':>16s} {'of MACs':>14s} "
        f"{'share':>7s}  precision"
    )
    print(f"on {args.accel} (analysis only)\n{head}\n{'-' * len(head)}")
    for r in rows:
        print(
            f"{r['model']:20s} {r['onnx_nodes']:6d} {r['offloaded_layers']:6d} {r['offloaded_macs']:16,d} "
            f"{r['model_macs']:14,d} {r['offloaded_mac_share']:7.1%}  {','.join(r['precisions'])}"
        )
    out = RESULTS / "any_onnx.json"
    out.write_text(json.dumps({"accelerator": args.accel, "models": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
