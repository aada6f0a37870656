"""The compile and run flows behind `codax compile` / `codax run`: ONNX -> Relax -> codax passes ->
HLS project + runtime schedule + report, and a TVM executable in which the offloaded layers run as
C-simulated kernels and everything else on the CPU."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codax.errors import ConfigError, ModelError
from codax.ir import Accelerator, Mapping, dump_yaml, load_mappings, save_mappings

EXECUTABLE = "model.so"
MODEL_COPY = "model.onnx"
MANIFEST = "codax.json"


@dataclass
class CompileResult:
    out_dir: Path
    report: object  # codax.passes.CompileReport
    mappings: dict[str, Mapping]
    executable: Path | None


def _accelerator(accel: str | Path | Accelerator) -> Accelerator:
    from codax.hw import load_accelerator

    return accel if isinstance(accel, Accelerator) else load_accelerator(accel)


def compile_model(
    model: str | Path,
    accel: str | Path | Accelerator,
    out_dir: str | Path,
    mappings: str | Path | dict[str, Mapping] | None = None,
    *,
    shapes: dict[str, list[int]] | None = None,
    analyze_only: bool = False,
    force: bool = False,
    objective: str = "latency",
    executable: bool = True,
) -> CompileResult:
    """Compile an ONNX model for `accel` into `out_dir` (written atomically: a failure leaves any
    previous output intact). `analyze_only` stops after mapping: report and mappings only, which is
    all a shape-only model (weights in missing external files) allows."""
    from codax.frontend import import_onnx, load_onnx
    from codax.passes import build_report, offloaded_layers, pipeline

    out = Path(out_dir)
    if out.exists() and not force:
        raise ConfigError(f"output directory {out} exists; pass --force to replace it")
    acc = _accelerator(accel)
    given = load_mappings(mappings) if isinstance(mappings, (str, Path)) else mappings
    lm = load_onnx(model, shapes)
    if not analyze_only:
        lm.require_weights("compiling (kernels, weights blob, executable)")
    mod = import_onnx(lm)
    mod = pipeline(acc, given, objective=objective)(mod)
    report = build_report(mod, acc)
    offl = offloaded_layers(mod)
    maps = {name: o.mapping for name, o in offl.items() if o.mapping is not None}
    files: dict[str, bytes] = {
        "report.json": json.dumps(report.to_dict(), indent=1).encode(),
        "mappings.yaml": save_mappings(maps, extra={"accelerator": acc.name}).encode(),
        "accel.yaml": dump_yaml(acc.to_dict()).encode(),
    }
    exe_path = None
    if analyze_only:
        from codax.codegen.project import write_atomic

        write_atomic(out, files)
        return CompileResult(out, report, maps, None)

    from codax.codegen.params import from_onnx
    from codax.codegen.project import write_project
    from codax.frontend import extract_graph

    graph = extract_graph(mod, accel=acc)
    params = {layer.name: from_onnx(lm.model, layer) for layer in graph.layers}
    files[MODEL_COPY] = lm.model.SerializeToString()
    files[MANIFEST] = json.dumps(
        {"inputs": {k: list(v) for k, v in lm.input_shapes.items()}, "accelerator": acc.name}
    ).encode()
    with tempfile.TemporaryDirectory() as td:
        if executable:
            ex = build_executable(mod, acc)
            so = Path(td) / EXECUTABLE
            ex.export_library(str(so))
            files[EXECUTABLE] = so.read_bytes()
        write_project(graph, acc, maps, params, out, force=force, shapes=_tensor_bytes(lm.model), extra=files)
    if executable:
        exe_path = out / EXECUTABLE
    return CompileResult(out, report, maps, exe_path)


def _tensor_bytes(model) -> dict[str, int]:
    """Bytes of every tensor whose shape ONNX shape inference knows (host-op outputs included)."""
    from onnx import helper

    out = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        t = vi.type.tensor_type
        dims = [d.dim_value for d in t.shape.dim]
        if dims and all(d > 0 for d in dims):
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
            out[vi.name] = int(np.prod(dims)) * itemsize
    consts = [(i.name, i) for i in model.graph.initializer]  # scales, zero points, shapes host ops read
    consts += [
        (n.output[0], a.t)
        for n in model.graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    ]
    for name, t in consts:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        out.setdefault(name, int(np.prod(t.dims, dtype=np.int64)) * itemsize)
    return out


def build_executable(mod, accel: Accelerator):
    """tvm.compile the pipeline's output: offloaded functions through relax.ext.codax, the rest LLVM."""
    try:
        from codax.codegen.byoc_hls import build_hls_executable
    except ImportError:
        build_hls_executable = None
    if build_hls_executable is not None:
        return build_hls_executable(mod, accel)
    from codax.codegen.byoc import build

    return build(mod)


def run_compiled(out_dir: str | Path, inputs: dict[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """Run a compiled output directory's executable (VM) on numpy inputs."""
    import tvm
    from tvm import relax

    out = Path(out_dir)
    so = out / EXECUTABLE
    if not so.exists():
        raise ConfigError(
            f"{out}: no {EXECUTABLE}; compile with `codax compile MODEL.onnx ... -o {out}` first"
        )
    manifest = json.loads((out / MANIFEST).read_text())
    names = list(manifest["inputs"])
    arrays = [inputs] if isinstance(inputs, np.ndarray) else [inputs[n] for n in names]
    for name, arr in zip(names, arrays):
        want = tuple(manifest["inputs"][name])
        if tuple(arr.shape) != want:
            raise ModelError(f"input {name}: shape {tuple(arr.shape)} but the model was compiled for {want}")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(so)), tvm.cpu())
    res = vm["main"](*[tvm.runtime.tensor(a) for a in arrays])
    items = [res] if hasattr(res, "numpy") else list(res)
    return [r.numpy() for r in items]


def reference_outputs(out_dir: str | Path, inputs: dict[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """ONNX Runtime on the compiled model, executing the ONNX reference semantics (no fusions)."""
    import onnxruntime as ort

    out = Path(out_dir)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(out / MODEL_COPY), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    feed = {names[0]: inputs} if isinstance(inputs, np.ndarray) else {n: inputs[n] for n in names}
    return sess.run(None, feed)
