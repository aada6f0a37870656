"""The precision a float layer is analysed at on an accelerator without a float datapath.

An integer accelerator cannot run fp32 layers, so costing them at 32-bit words describes hardware
that does not exist. Analysis (`codax bench`, `compile --analyze-only`, the mapper) therefore costs
a float layer as the layer `codax compile --calibrate` would produce: ONNX Runtime's QDQ
quantization gives 8-bit weights and activations with 32-bit accumulation, so int8 where the
accelerator supports it, else its widest supported width.
"""

from __future__ import annotations

from dataclasses import replace

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


def listed_width(bits: int, listed: tuple[int, ...]) -> int:
    """The narrowest width in `listed` holding `bits`-bit values (they fit exactly); `bits` itself when no
    listed width is that wide (the partition then says the layer exceeds the accelerator)."""
    wider = [b for b in listed if b >= bits]
    return min(wider) if wider else bits


def at_listed_widths(layer: Layer, accel: Accelerator) -> Layer:
    """An integer layer at the widths `accel` lists: a width it does not list (a 3-bit weight, a 5-bit
    activation of a QONNX or QDQ model) runs at the next wider width it does list, so the engine, its
    cost and its packing stay at widths the hardware was built for."""
    p = layer.precision
    if p.kind != "int":
        return layer
    runs = replace(
        p,
        weight=listed_width(p.weight, accel.weight_bits),
        act=listed_width(p.act, accel.act_bits),
        out=listed_width(p.out, accel.act_bits),
    )
    return layer if runs == p else layer.with_(precision=runs)


def graph_at(graph: Graph, accel: Accelerator) -> Graph:
    """A copy of `graph` whose float layers carry `accel`'s analysis precision."""
    out = Graph(name=graph.name, inputs=graph.inputs, outputs=graph.outputs)
    for node in graph.nodes.values():
        out.add(layer_at(node, accel) if isinstance(node, Layer) else node)
    return out
