"""The precision a float layer is analysed at on an accelerator without a float datapath.

An integer accelerator cannot run fp32 layers, so costing them at 32-bit words describes hardware
that does not exist. Analysis (`codax bench`, `compile --analyze-only`, the mapper) therefore costs
a float layer as the layer `codax compile --calibrate` would produce: ONNX Runtime's QDQ
quantization gives 8-bit weights and activations with 32-bit accumulation, so int8 where the
accelerator supports it, else its widest supported width.
"""

from __future__ import annotations

from codax.ir import Accelerator, Graph, Layer, Precision


def analysis_precision(accel: Accelerator) -> Precision | None:
    """The integer precision float layers are analysed at on `accel`; None when it computes fp32."""
    if accel.float_ok:
        return None
    w = 8 if 8 in accel.weight_bits else max(accel.weight_bits)
    a = 8 if 8 in accel.act_bits else max(accel.act_bits)
    return Precision(weight=w, act=a, acc=32, out=a, kind="int")


def precision_label(p: Precision) -> str:
    """'fp32' or 'w8a8acc32', as reports print it."""
    return "fp32" if p.kind == "float" else f"w{p.weight}a{p.act}acc{p.acc}"


def layer_at(layer: Layer, accel: Accelerator) -> Layer:
    """`layer` as analysed on `accel`: a float layer on an integer accelerator at analysis_precision."""
    target = analysis_precision(accel)
    if target is None or layer.precision.kind != "float":
        return layer
    return layer.with_(precision=target)


def graph_at(graph: Graph, accel: Accelerator) -> Graph:
    """A copy of `graph` whose float layers carry `accel`'s analysis precision."""
    out = Graph(name=graph.name, inputs=graph.inputs, outputs=graph.outputs)
    for node in graph.nodes.values():
        out.add(layer_at(node, accel) if isinstance(node, Layer) else node)
    return out
