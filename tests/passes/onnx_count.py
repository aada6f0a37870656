"""An independent MAC/shape count straight from the ONNX graph (onnx package only, no codax)."""

from __future__ import annotations

import onnx


def count(path) -> dict[str, dict]:
    """{node name: {"macs": int, "out": shape}} for every Conv / Gemm / MatMul."""
    m = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False))
    shapes = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    for t in m.graph.initializer:
        shapes[t.name] = list(t.dims)
    producer = {o: n for n in m.graph.node for o in n.output}
    out = {}
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        w = n.input[1]
        if w in producer and producer[w].op_type == "DequantizeLinear":
            w = producer[w].input[0]
        ws, ys = shapes[w], shapes[n.output[0]]
        if n.op_type == "Conv":
            # each output element needs C/groups * R * S MACs: the weight's dims 1..3
            macs = ys[0] * ys[1] * ys[2] * ys[3] * ws[1] * ws[2] * ws[3]
        else:
            macs = ys[0] * ys[1] * shapes[n.input[0]][-1]
        out[n.name] = {"macs": macs, "out": ys}
    return out
