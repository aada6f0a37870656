"""ONNX models for the schedule benchmarks, read through codax's frontend (the one ONNX reader).

Shape-only models (weights stripped into missing external files, as zigzag-dse ships them) are
enough: weight shapes come from the initializers' dims and activation shapes from ONNX shape
inference (codax.frontend.load_onnx / extract_graph).
"""

from __future__ import annotations

from pathlib import Path

from codax.errors import ModelError
from codax.frontend import extract_graph
from codax.ir import Graph, Layer, Precision

INT8 = Precision()


def load_graph(path: str | Path, precision: Precision | None = INT8, name: str | None = None) -> Graph:
    """The Graph of an ONNX model as codax.frontend.extract_graph reads it (Conv, Gemm and MatMul
    with constant weights as layers, with their fused epilogues; everything else as host ops).
    Every layer carries `precision` (default int8, the width the schedule benchmarks cost); None
    keeps each layer's own (fp32 for a float model, the QDQ widths for a quantized one)."""
    path = Path(path)
    graph = extract_graph(path)
    graph.name = name or path.stem
    if precision is None:
        return graph
    out = Graph(name=graph.name, inputs=graph.inputs, outputs=graph.outputs)
    for node in graph.nodes.values():
        out.add(node.with_(precision=precision) if isinstance(node, Layer) else node)
    return out


def zigzag_workload(name: str) -> Path:
    """Path of a shape-only ONNX model shipped by zigzag-dse (resnet18, mobilenetv2, ...)."""
    import zigzag

    p = Path(zigzag.__file__).parent / "inputs" / "workload" / f"{name}.onnx"
    if not p.exists():
        raise ModelError(f"zigzag-dse ships no workload {name!r} at {p}")
    return p
