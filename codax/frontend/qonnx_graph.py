"""Graph tidy-ups after the QONNX rewrite (frontend.qonnx_lower), so codax's integer lowering finds the
QDQ patterns it compiles: a DequantizeLinear moved past the views and max pools between it and the next
layer, and a float bias between quantized operands made an int32 one."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from codax.errors import UnsupportedError
from codax.frontend.widths import VALUE_VIEWS


def attr(node: onnx.NodeProto, key: str, default):
    """A node attribute's value (strings decoded), else `default`."""
    for a in node.attribute:
        if a.name == key:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _fresh(name: str, taken: set[str]) -> str:
    """`name` for a new tensor, suffixed where the graph already uses that name."""
    base, i = name, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def sink_dequantize(nodes: list[onnx.NodeProto], inits: set[str], outputs: set[str]) -> list[onnx.NodeProto]:
    """`DequantizeLinear -> view` (widths.VALUE_VIEWS: Reshape, Flatten, Transpose, MaxPool, ...; Brevitas
    flattens between the last convolution and its QuantLinear, and pools without requantizing) becomes
    `view -> DequantizeLinear` on the integers: equal for a per-tensor scale, and the next layer then reads a
    dequantized integer tensor as codax's integer lowering needs."""
    producer = {o: n for n in nodes for o in n.output}
    users: dict[str, int] = {}
    for n in nodes:
        for x in n.input:
            users[x] = users.get(x, 0) + 1
    taken = inits | outputs | {x for n in nodes for x in (*n.input, *n.output)}
    out, dropped = [], set()
    for n in nodes:
        dq = producer.get(n.input[0]) if n.op_type in VALUE_VIEWS and n.input else None
        per_tensor = (
            dq is not None
            and dq.op_type == "DequantizeLinear"
            and not any(a.name == "axis" for a in dq.attribute)
        )
        if not per_tensor or dq.input[1] not in inits:
            out.append(n)
            continue
        view = onnx.NodeProto()
        view.CopyFrom(n)
        view.input[0], view.output[0] = dq.input[0], _fresh(n.output[0] + "_int", taken)
        moved = helper.make_node(
            "DequantizeLinear", [view.output[0], *dq.input[1:]], [n.output[0]], name=n.name + "_dequantize"
        )
        out += [view, moved]
        producer[n.output[0]] = moved  # a chain (MaxPool -> Flatten) sinks it again
        users[dq.output[0]] -= 1
        if users[dq.output[0]] == 0 and dq.output[0] not in outputs:
            dropped.add(id(dq))
    return [n for n in out if id(n) not in dropped]


def _output_axis(layer: onnx.NodeProto, weight_rank: int) -> int:
    """The axis of a Conv / ConvTranspose / Gemm weight that runs along the layer's output channels."""
    if layer.op_type == "ConvTranspose":
        return 1
    if layer.op_type == "Gemm":
        return 0 if attr(layer, "transB", 0) else 1
    return 0


def integer_biases(nodes: list[onnx.NodeProto], g: onnx.GraphProto) -> list[onnx.NodeProto]:
    """`nodes` where a float bias of a Conv / Gemm between quantized operands (Brevitas's default, no bias
    quantizer) becomes int32 at scale s_x * s_w, rounded half to even as ONNX Runtime's quantizer rounds
    biases: the integer layer adds it to its accumulator. It moves the bias by at most half of
    s_x * s_w, far below one step of the layer's output. A bias too large for int32 at that scale, or a
    weight scale that does not run along the output channels, is an error naming the layer."""
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in nodes for o in n.output}
    taken = set(inits) | {x for n in nodes for x in (*n.input, *n.output)}

    def dq_scale(tensor: str) -> tuple[np.ndarray, int | None] | None:
        d = producer.get(tensor)
        if d is None or d.op_type != "DequantizeLinear" or d.input[1] not in inits:
            return None
        scale = numpy_helper.to_array(inits[d.input[1]]).astype(np.float64)
        return scale, (None if scale.size == 1 else attr(d, "axis", 1))  # ONNX's default axis is 1

    def fresh(name: str) -> str:
        return _fresh(name, taken)

    out: list[onnx.NodeProto] = []
    for n in nodes:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm") or len(n.input) < 3 or n.input[2] not in inits:
            out.append(n)
            continue
        b = numpy_helper.to_array(inits[n.input[2]])
        sx, sw = dq_scale(n.input[0]), dq_scale(n.input[1])
        if b.dtype.kind != "f" or sx is None or sw is None or sx[0].size != 1:
            out.append(n)
            continue
        k = b.size
        if sw[1] is not None:
            w = inits.get(producer[n.input[1]].input[0])
            rank = len(w.dims) if w is not None else 2 if n.op_type == "Gemm" else 4
            axis = sw[1] + rank if sw[1] < 0 else sw[1]
            if axis != _output_axis(n, rank) or sw[0].size != k:
                raise UnsupportedError(
                    f"{n.op_type} node {n.name!r} (output {n.output[0]!r}): its float bias needs the "
                    f"weight's scale per output channel, but the weight's DequantizeLinear runs along "
                    f"axis {axis} ({sw[0].size} channels, the bias has {k}); quantize the bias in the "
                    "model (a bias Quant) or the weight per output channel"
                )
        scale = (float(sx[0].reshape(())) * np.broadcast_to(sw[0].reshape(-1), (k,))).astype(np.float32)
        q = np.rint(b.reshape(-1).astype(np.float64) / scale.astype(np.float64))
        info = np.iinfo(np.int32)
        if not np.all(np.isfinite(q)) or q.min() < info.min or q.max() > info.max:
            raise UnsupportedError(
                f"{n.op_type} node {n.name!r} (output {n.output[0]!r}): its float bias at the integer scale "
                f"s_x * s_w (min {float(scale.min()):g}) reaches {float(np.abs(q).max()):g}, beyond int32; "
                "quantize the bias in the model (a bias Quant) or use larger input / weight scales"
            )
        per = sw[1] is not None
        name = fresh(n.input[2] + "_int32")
        s_name, z_name, dq_out = fresh(name + "_scale"), fresh(name + "_zero"), fresh(name + "_dq")
        g.initializer.extend(
            [
                numpy_helper.from_array(q.astype(np.int32).reshape(b.shape), name),
                numpy_helper.from_array(scale if per else scale[:1].reshape(()), s_name),
                numpy_helper.from_array(np.zeros(k if per else (), np.int32), z_name),
            ]
        )
        ax = {"axis": 0} if per else {}
        out.append(helper.make_node("DequantizeLinear", [name, s_name, z_name], [dq_out],
                                    name=n.name + "_bias_dequantize", **ax))  # fmt: skip
        n.input[2] = dq_out
        out.append(n)
    return out
