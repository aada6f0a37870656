"""Compile time: the cold `codax compile` of a QDQ ResNet-18 (32x32, per-channel int8) and the pieces
of it, on this machine.

Measures, each with an empty build cache:
1. `codax compile` of QDQ ResNet-18 (32x32, 10 classes, full width) for zc706-int8, end to end
   (import, passes, mapper, engine build, executable, project, testbench data); target < 30 s;
2. the engine's C-simulation library (built once per accelerator, whatever the network);
3. the project writer alone on a ResNet-18-shaped 224x224 graph (no g++), and a cached recompile.
Prints a table and writes benchmarks/results/codegen_bench.json.

    .venv/bin/python benchmarks/codegen_bench.py [--accel zc706-int8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from codax.codegen import write_project
from codax.codegen.csim import EngineSim
from codax.codegen.examples import random_graph_params, resnet18_graph
from codax.flow import compile_model
from codax.frontend import export_torch
from codax.frontend.zoo import resnet18
from codax.hw import load_accelerator
from codax.hw.mapper.naive import naive_mapping

RESULTS = Path(__file__).parent / "results"
TARGET_S = 30.0


def qdq_resnet18(tmp: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from sklearn.datasets import load_digits

    fp = export_torch(resnet18(num_classes=10), torch.randn(1, 3, 32, 32), tmp / "r18.onnx")
    imgs = torch.from_numpy(load_digits().images[:16, None].astype(np.float32) / 16.0)
    imgs = torch.nn.functional.interpolate(imgs, size=(32, 32), mode="bilinear").repeat(1, 3, 1, 1).numpy()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"input": imgs[i : i + 1]} for i in range(len(imgs)))

        def get_next(self):
            return next(self.it, None)

    out = tmp / "r18_qdq.onnx"
    quantize_static(str(fp), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    return out


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accel", default="zc706-int8")
    args = ap.parse_args()
    accel = load_accelerator(args.accel)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        model = qdq_resnet18(tmp)
        os.environ["CODAX_CACHE"] = str(tmp / "cache")  # cold: nothing built yet
        t_compile = timed(lambda: compile_model(model, accel, tmp / "out"))
        t_cached = timed(lambda: compile_model(model, accel, tmp / "out", force=True))
        os.environ["CODAX_CACHE"] = str(tmp / "cache2")
        t_engine = timed(lambda: EngineSim(accel))
        t_engine_count = timed(lambda: EngineSim(accel, count=True))
        graph = resnet18_graph()
        maps = {layer.name: naive_mapping(layer, accel) for layer in graph.layers}
        params = random_graph_params(graph)
        t_project = timed(lambda: write_project(graph, accel, maps, params, tmp / "r18_224"))
        hw = sum((tmp / "out" / f).stat().st_size for f in ("engine.cpp", "top.cpp"))
    res = {
        "network": "QDQ ResNet-18 32x32 (per-channel int8, 10 classes, width 64)",
        "accelerator": accel.name,
        "compile_cold_s": t_compile,
        "compile_target_s": TARGET_S,
        "compile_cached_s": t_cached,
        "engine_csim_build_s": t_engine,
        "engine_csim_build_instrumented_s": t_engine_count,
        "project_writer_resnet18_224_s": t_project,
        "hardware_source_bytes": hw,
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    print(f"{'what':<40}{'value':>12}")
    for k, v in res.items():
        if isinstance(v, (int, float)):
            print(f"{k:<40}{v:>12.2f}" if isinstance(v, float) else f"{k:<40}{v:>12,}")
    verdict = "met" if t_compile < TARGET_S else "MISSED"
    print(f"cold compile {t_compile:.1f} s vs target {TARGET_S:.0f} s: {verdict}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "codegen_bench.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
