"""Operand widths read from a quantized ONNX model itself, and narrow integer types made importable.

A QDQ model states how wide each integer tensor is in standard ONNX, in one of three ways:
- its type: INT4 / UINT4 (opset 21) hold 4 bits, INT8 / UINT8 8 bits;
- a Clip on the integer tensor between QuantizeLinear and DequantizeLinear (`Q -> Clip -> DQ`):
  the narrowest width of the tensor's signedness that holds the clip's range (an int8 tensor
  clipped to [-32, 31] or [-31, 31] holds 6 bits, a uint8 one clipped to [0, 63] 6 bits);
- a constant (a weight): the narrowest such width that holds every stored value.
Everything else is as wide as its type. No codax-specific metadata is read: an ONNX Runtime model
quantized to INT4 and a codax export restricted to 6 bits are read the same way.

TVM's Relax ONNX frontend (0.27) cannot import INT4 / UINT4 tensors (the initializer copy fails
with "TensorCopyFromBytes: size mismatch"), and codax's QDQ lowering fuses `Q -> DQ` pairs with
nothing between them. `read_widths` therefore also rewrites the model, keeping its values:
1. an INT4 / UINT4 initializer becomes INT8 / UINT8 holding the same values; a QuantizeLinear to a
   4-bit type quantizes to the 8-bit type followed by a Clip to the 4-bit range (QuantizeLinear
   saturates, so the two are equal);
2. `Q(s, z) -> Clip(lo, hi) -> DQ` becomes `Clip((lo - z) s, (hi - z) s) -> Q(s, z) -> DQ`: equal,
   because rounding is monotonic and the bounds are integers. A Relu or a Clip that feeds only the
   QuantizeLinear is merged into the new Clip, so the layer producing the tensor fuses the range as
   its activation and the integer engine stores values inside it.
Weight widths are read after step 1, activation widths as step 2 folds each clip; both are keyed
by the rewritten model's tensor names.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from codax.errors import ModelError

_WIDE = {TensorProto.INT4: TensorProto.INT8, TensorProto.UINT4: TensorProto.UINT8}
_BITS = {
    TensorProto.INT4: 4,
    TensorProto.UINT4: 4,
    TensorProto.INT8: 8,
    TensorProto.UINT8: 8,
    TensorProto.INT16: 16,
    TensorProto.UINT16: 16,
}
_SIGNED = {TensorProto.INT4, TensorProto.INT8, TensorProto.INT16}


def integer_range(bits: int, signed: bool) -> tuple[int, int]:
    """The values a `bits`-bit integer holds: [-2^(b-1), 2^(b-1) - 1] or [0, 2^b - 1]."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def width_of_range(lo: int, hi: int, signed: bool) -> int:
    """The narrowest width of the given signedness holding every integer in [lo, hi]."""
    b = 1
    while True:
        tlo, thi = integer_range(b, signed)
        if tlo <= lo and hi <= thi:
            return b
        b += 1


def read_widths(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """The model rewritten for import (INT4 widened, integer clips folded; see the module docstring)
    and the width in bits of each integer weight and quantized activation, by tensor name."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    widen_int4(m)
    widths = weight_widths(m)
    widths.update(_fold_integer_clips(m))
    _through_views(m, widths)
    return m, widths


# --- step 1: INT4 / UINT4 as 8-bit tensors with the 4-bit range ---------------------------------------
def widen_int4(m: onnx.ModelProto) -> None:
    g = m.graph
    for vi in list(g.input) + list(g.output):
        if vi.type.tensor_type.elem_type in _WIDE:
            raise ModelError(
                f"graph input/output {vi.name!r} is a 4-bit tensor; give the model float or 8-bit "
                "inputs and outputs (quantize inside the graph)"
            )
    for n in g.node:
        if n.op_type == "Constant" and any(a.name == "value" and a.t.data_type in _WIDE for a in n.attribute):
            raise ModelError(f"Constant node {n.name!r} holds a 4-bit tensor; store it as an initializer")
    original = {t.name: t.data_type for t in g.initializer}
    for t in g.initializer:
        if t.data_type not in _WIDE:
            continue
        if onnx.external_data_helper.uses_external_data(t):
            raise ModelError(
                f"initializer {t.name!r} is a 4-bit tensor in an external data file; store it inside "
                "the .onnx file (onnx.save(..., save_as_external_data=False))"
            )
        arr = numpy_helper.to_array(t).astype(helper.tensor_dtype_to_np_dtype(_WIDE[t.data_type]))
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
    keep = [vi for vi in g.value_info if vi.type.tensor_type.elem_type not in _WIDE]
    del g.value_info[:]
    g.value_info.extend(keep)  # the retyped tensors are re-inferred after the rewrite
    rebuilt = []
    for n in list(g.node):
        rebuilt.append(n)
        out_type = _quantized_type(n, original) if n.op_type == "QuantizeLinear" else None
        if out_type not in _WIDE:
            continue
        for a in n.attribute:
            if a.name == "output_dtype":
                a.i = _WIDE[out_type]
        lo, hi = integer_range(4, out_type in _SIGNED)
        q_out = n.output[0]
        n.output[0] = q_out + "_int8"
        rebuilt.append(_int_clip(g, q_out + "_int4_range", n.output[0], q_out, lo, hi, _WIDE[out_type]))
    del g.node[:]
    g.node.extend(rebuilt)


def _quantized_type(q: onnx.NodeProto, init_types: dict[str, int]) -> int:
    """The element type a QuantizeLinear produces: output_dtype, else its zero point's, else uint8."""
    for a in q.attribute:
        if a.name == "output_dtype" and a.i:
            return a.i
    if len(q.input) > 2 and q.input[2]:
        return init_types.get(q.input[2], TensorProto.UINT8)
    return TensorProto.UINT8


def _int_clip(g: onnx.GraphProto, name: str, x: str, y: str, lo: int, hi: int, elem: int) -> onnx.NodeProto:
    """A Clip of integer tensor x to [lo, hi] (its bounds added to g's initializers)."""
    dt = helper.tensor_dtype_to_np_dtype(elem)
    g.initializer.extend(
        [
            numpy_helper.from_array(np.array(lo, dt), name + "_min"),
            numpy_helper.from_array(np.array(hi, dt), name + "_max"),
        ]
    )
    return helper.make_node("Clip", [x, name + "_min", name + "_max"], [y], name=name)


# --- widths ---------------------------------------------------------------------------------------------
def weight_widths(m: onnx.ModelProto) -> dict[str, int]:
    """Integer initializers read by a DequantizeLinear: the width their stored values need."""
    inits = {t.name: t for t in m.graph.initializer}
    out: dict[str, int] = {}
    for n in m.graph.node:
        t = inits.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if t is None or t.data_type not in _BITS or onnx.external_data_helper.uses_external_data(t):
            continue
        v = numpy_helper.to_array(t)
        if v.size:
            out[t.name] = width_of_range(int(v.min()), int(v.max()), t.data_type in _SIGNED)
    return out


# --- step 2: integer clips folded into a float clip before the QuantizeLinear -----------------------
def _bounds(
    node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]
) -> tuple[float | None, float | None] | None:
    """A Clip's constant (min, max), None for an absent bound; None if a bound is computed at run time."""
    out: list[float | None] = []
    for i in (1, 2):
        name = node.input[i] if len(node.input) > i else ""
        if not name:
            out.append(None)
        elif name in inits and not onnx.external_data_helper.uses_external_data(inits[name]):
            out.append(float(numpy_helper.to_array(inits[name]).reshape(())))
        else:
            return None
    return out[0], out[1]


def _scalar(inits: dict[str, onnx.TensorProto], name: str, default: float | None = None) -> float | None:
    if not name:
        return default
    t = inits.get(name)
    if t is None or onnx.external_data_helper.uses_external_data(t):
        return None
    v = numpy_helper.to_array(t)
    return float(v.reshape(())) if v.size == 1 else None


def _fold_integer_clips(m: onnx.ModelProto) -> dict[str, int]:
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    types = {t.name: t.data_type for t in g.initializer}
    nodes = list(g.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for x in n.input:
            consumers.setdefault(x, []).append(i)
    outputs = {o.name for o in g.output}

    def sole_user(tensor: str) -> int | None:
        users = consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in outputs else None

    widths: dict[str, int] = {}
    removed: set[int] = set()
    before: dict[int, onnx.NodeProto] = {}  # node index -> float Clip inserted before it
    for qi, q in enumerate(nodes):
        qtype = _quantized_type(q, types) if q.op_type == "QuantizeLinear" else None
        if qtype not in _BITS:
            continue
        signed = qtype in _SIGNED
        widths[q.output[0]] = _BITS[qtype]
        ci = sole_user(q.output[0])
        clip = nodes[ci] if ci is not None else None
        bounds = _bounds(clip, inits) if clip is not None and clip.op_type == "Clip" else None
        if bounds is None:
            continue
        tlo, thi = integer_range(_BITS[qtype], signed)
        lo = tlo if bounds[0] is None else max(tlo, int(np.ceil(bounds[0])))
        hi = thi if bounds[1] is None else min(thi, int(np.floor(bounds[1])))
        widths[clip.output[0]] = width_of_range(lo, hi, signed)
        s = _scalar(inits, q.input[1])
        z = _scalar(inits, q.input[2] if len(q.input) > 2 else "", 0.0)
        if s is None or z is None:
            continue  # a per-channel range stays an integer Clip (imported as a host op)
        flo, fhi = np.float32((lo - z) * s), np.float32((hi - z) * s)
        src = q.input[0]
        pi = producer.get(src)
        prev = nodes[pi] if pi is not None and sole_user(src) == qi else None
        if prev is not None and prev.op_type == "Relu":
            flo, src = max(flo, np.float32(0)), prev.input[0]
            removed.add(pi)
        elif prev is not None and prev.op_type == "Clip" and _bounds(prev, inits) is not None:
            plo, phi = _bounds(prev, inits)
            flo = flo if plo is None else max(flo, np.float32(plo))
            fhi = fhi if phi is None else min(fhi, np.float32(phi))
            src = prev.input[0]
            removed.add(pi)
        name = clip.name or q.output[0] + "_range"
        g.initializer.extend(
            [
                numpy_helper.from_array(np.array(flo, np.float32), name + "_fmin"),
                numpy_helper.from_array(np.array(fhi, np.float32), name + "_fmax"),
            ]
        )
        before[qi] = helper.make_node(
            "Clip", [src, name + "_fmin", name + "_fmax"], [name + "_out"], name=name
        )
        q.input[0] = name + "_out"
        del widths[q.output[0]]
        q.output[0] = clip.output[0]  # the DequantizeLinear reads the QuantizeLinear directly
        removed.add(ci)
    rebuilt = []
    for i, n in enumerate(nodes):
        if i in before:
            rebuilt.append(before[i])
        if i not in removed:
            rebuilt.append(n)
    del g.node[:]
    g.node.extend(rebuilt)
    return widths


# ops whose output holds only values of their first input (reshapes, and MaxPool): they keep an integer
# tensor's width, and commute with a per-tensor DequantizeLinear (dequantizing is increasing)
VALUE_VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "MaxPool")


def _through_views(m: onnx.ModelProto, widths: dict[str, int]) -> None:
    """A view of an integer tensor (VALUE_VIEWS) holds values of the tensor, so has its width."""
    for n in m.graph.node:
        if n.op_type in VALUE_VIEWS and n.input and n.input[0] in widths:
            widths[n.output[0]] = widths[n.input[0]]
