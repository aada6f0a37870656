"""A small ONNX reader for benchmarks: Conv and Gemm/MatMul nodes as codax.ir Layers, the rest as
HostOps, in one Graph.

Shape-only models (weights stripped into missing external files, as zigzag-dse ships them) are
enough: weight shapes come from the initializers' dims and activation shapes from ONNX shape
inference. This is deliberately independent of codax.frontend (the full importer) so that the
schedule benchmarks do not depend on TVM.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import shape_inference

from codax.errors import ModelError
from codax.ir import Graph, HostOp, Layer, Precision, conv2d, dense


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Every tensor's static shape: graph inputs/outputs, inferred intermediates, initializers."""
    try:
        model = shape_inference.infer_shapes(model)
    except Exception as e:  # noqa: BLE001 - a model that cannot be inferred still has value_info
        raise ModelError(f"ONNX shape inference failed: {e}") from None
    g = model.graph
    out = {t.name: list(t.dims) for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        out[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    return out


def load_graph(path: str | Path, precision: Precision | None = None, name: str | None = None) -> Graph:
    """The Graph of an ONNX model: Conv -> conv2d layers (groups, pads, strides, dilations),
    Gemm / 2-D MatMul with a constant weight -> dense layers, everything else -> host ops."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    shapes = _shapes(model)
    inits = {t.name for t in model.graph.initializer}
    prec = precision or Precision()
    graph = Graph(name=name or path.stem)
    for i, node in enumerate(model.graph.node):
        nname = node.name or f"{node.op_type}_{i}"
        if node.op_type == "Constant":
            continue
        layer = _layer(node, nname, shapes, inits, prec)
        if layer is None:
            graph.add(HostOp(nname, node.op_type, tuple(node.input), tuple(node.output), onnx_node=node.name))
        else:
            graph.add(layer)
    return graph


def _layer(node, name: str, shapes: dict, inits: set, prec: Precision) -> Layer | None:
    a = _attrs(node)
    io = {"inputs": (node.input[0],), "outputs": tuple(node.output), "onnx_node": node.name}
    if node.op_type == "Conv":
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        if not x or not w or len(x) != 4 or len(w) != 4:
            raise ModelError(f"node {name}: Conv needs 4-D input and weight shapes, got {x} and {w}")
        groups = int(a.get("group", 1))
        k = tuple(a.get("kernel_shape", w[2:]))
        pads = tuple(a.get("pads", (0, 0, 0, 0)))  # ONNX: top, left, bottom, right
        return conv2d(
            name,
            n=x[0],
            c_in=x[1],
            c_out=w[0],
            hw=(x[2], x[3]),
            kernel=(int(k[0]), int(k[1])),
            stride=tuple(int(s) for s in a.get("strides", (1, 1))),
            pads=tuple(int(p) for p in pads),
            dilation=tuple(int(d) for d in a.get("dilations", (1, 1))),
            groups=groups,
            precision=prec,
            **io,
        )
    if node.op_type in ("Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in inits:
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        if not x or not w or len(x) != 2 or len(w) != 2:
            return None
        trans_b = int(a.get("transB", 0)) if node.op_type == "Gemm" else 0
        c_out, c_in = (w[0], w[1]) if trans_b else (w[1], w[0])
        return dense(name, n=x[0], c_in=c_in, c_out=c_out, precision=prec, **io)
    return None


def zigzag_workload(name: str) -> Path:
    """Path of a shape-only ONNX model shipped by zigzag-dse (resnet18, mobilenetv2, ...)."""
    import zigzag

    p = Path(zigzag.__file__).parent / "inputs" / "workload" / f"{name}.onnx"
    if not p.exists():
        raise ModelError(f"zigzag-dse ships no workload {name!r} at {p}")
    return p
