"""Codegen and C-simulation build times for a ResNet-18-sized network (224x224, int8, zc706-int8).

Measures (1) `codax.codegen.write_project` wall time for the whole network (target < 5 s), (2) the
g++ build of every kernel into one csim library (cold cache, plain and instrumented), (3) a cached
rebuild (hash lookup only). Prints a table and writes benchmarks/results/codegen_bench.json.

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

from codax.codegen import write_project
from codax.codegen.csim import build_library, csim_wrapper
from codax.codegen.examples import random_graph_params, resnet18_graph
from codax.codegen.hls.emit import emit_kernel
from codax.codegen.hls.types import KernelTypes
from codax.codegen.names import Namer
from codax.hw import load_accelerator
from codax.hw.mapper.naive import naive_mapping

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accel", default="zc706-int8")
    args = ap.parse_args()
    accel = load_accelerator(args.accel)
    graph = resnet18_graph()
    maps = {layer.name: naive_mapping(layer, accel) for layer in graph.layers}
    params = random_graph_params(graph)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = write_project(graph, accel, maps, params, Path(tmp) / "r18")
        t_codegen = time.perf_counter() - t0
        n_files = sum(1 for _ in out.rglob("*") if _.is_file())
        src_bytes = sum(p.stat().st_size for p in out.rglob("*.cpp"))
        os.environ["CODAX_CACHE"] = str(Path(tmp) / "cache")  # cold cache for the build timings
        namer = Namer()
        kernels = [
            emit_kernel(
                lay, accel, maps[lay.name], namer(lay.name), KernelTypes.for_layer(lay, params[lay.name])
            )
            for lay in graph.layers
        ]
        sources = {f"{k.ident}.h": k.header for k in kernels}
        sources.update({f"{k.ident}.cpp": k.source for k in kernels})
        sources["csim_entry.cpp"] = csim_wrapper(kernels)
        times = {}
        for count in (False, True):
            t0 = time.perf_counter()
            build_library(sources, count=count)
            times["instrumented" if count else "plain"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_library(sources, count=False)
        t_cached = time.perf_counter() - t0
    res = {
        "network": "resnet18_like 224x224 int8",
        "accelerator": accel.name,
        "layers": len(graph.layers),
        "macs": graph.macs,
        "codegen_s": t_codegen,
        "codegen_target_s": 5.0,
        "project_files": n_files,
        "cpp_bytes": src_bytes,
        "csim_build_s": times["plain"],
        "csim_build_instrumented_s": times["instrumented"],
        "csim_build_cached_s": t_cached,
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    print(f"{'what':<34}{'value':>14}")
    for k in ("layers", "macs", "codegen_s", "project_files", "cpp_bytes", "csim_build_s",
              "csim_build_instrumented_s", "csim_build_cached_s"):  # fmt: skip
        v = res[k]
        print(f"{k:<34}{v:>14.3f}" if isinstance(v, float) else f"{k:<34}{v:>14,}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "codegen_bench.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
