"""Per-layer numeric parameters (weights, bias, scales, zero points) and their extraction from ONNX.

A `LayerParams` is what a kernel needs besides its loop nest. `from_onnx(model, layer)` reads it from
the ONNX node the frontend linked the layer to (`layer.onnx_node`, else the node producing
`layer.outputs`), for
- float models (torch.onnx.export): Conv / Gemm / MatMul with initializer weights and bias;
- QDQ models (onnxruntime.quantization.quantize_static): DequantizeLinear -> Conv/Gemm/MatMul ->
  [Relu | Clip | Add(residual)]* -> QuantizeLinear, per-tensor or per-channel weight scales.
Weights are returned as [G*K, C, R, S] (dense: [K, C, 1, 1]) whatever the ONNX op's layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codax.errors import ModelError, UnsupportedError
from codax.frontend.conv_transpose import channel_scale, conv_weight
from codax.frontend.onnx_graph import LAYER_OPS
from codax.ir import Layer


@dataclass
class LayerParams:
    kind: str  # "int" | "float"
    # [G*K, C, R, S]: float32, or the quantized integers; None for a run-time weight tensor (its scale
    # and zero point are still here; codax.codegen.golden.with_weight fills the values in per call)
    weight: np.ndarray | None
    bias: np.ndarray | None = None  # [G*K]: float32, or int32 at scale s_w * s_x
    # integer layers only
    w_scale: np.ndarray = field(default_factory=lambda: np.ones(1, np.float32))  # [1] or [G*K]
    w_zero_point: int = 0
    x_scale: float = 1.0
    x_zero_point: int = 0
    y_scale: float = 1.0
    y_zero_point: int = 0
    r_scale: float = 1.0  # fused residual input
    r_zero_point: int = 0
    w_signed: bool = True
    x_signed: bool = True
    y_signed: bool = True
    r_signed: bool = True
    y_bits: int = 8
    activation: str | None = None
    clip_min: float | None = None
    clip_max: float | None = None
    out_channels: int = 0  # G*K, when there is no constant weight to read it from

    @property
    def channels(self) -> int:
        return int(self.weight.shape[0]) if self.weight is not None else self.out_channels

    @property
    def multiplier(self) -> np.ndarray:
        """Per-output-channel requantization multiplier M = s_w * s_x / s_y, as float32 [G*K]."""
        ws = np.broadcast_to(np.asarray(self.w_scale, np.float64).reshape(-1), (self.channels,))
        return (ws * float(self.x_scale) / float(self.y_scale)).astype(np.float32)

    @property
    def r_multiplier(self) -> np.float32:
        return np.float32(float(self.r_scale) / float(self.y_scale))

    @property
    def y_dtype(self) -> np.dtype:
        if self.kind == "float":
            return np.dtype("f4")
        w = 8 if self.y_bits <= 8 else 16 if self.y_bits <= 16 else 32
        return np.dtype(f"{'i' if self.y_signed else 'u'}{w // 8}")

    @property
    def clamp(self) -> tuple[float, float]:
        """(lo, hi) of the output: its type's range intersected with the fused activation's."""
        act, lo_a, hi_a = self.activation, self.clip_min, self.clip_max
        if act == "relu":
            lo_a, hi_a = 0.0, None
        elif act == "relu6":
            lo_a, hi_a = 0.0, 6.0
        if self.kind == "float":
            return (-np.inf if lo_a is None else float(lo_a), np.inf if hi_a is None else float(hi_a))
        b = self.y_bits
        tlo, thi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if self.y_signed else (0, (1 << b) - 1)
        q = lambda v: int(np.rint(v / self.y_scale)) + self.y_zero_point  # noqa: E731
        lo = tlo if lo_a is None else max(tlo, q(lo_a))
        hi = thi if hi_a is None else min(thi, q(hi_a))
        return float(lo), float(hi)


def random_params(layer: Layer, rng: np.random.Generator, signed_x: bool = True) -> LayerParams:
    """Random parameters of the layer's kind (tests, benchmarks): int8-range integers or floats."""
    shape = (layer.G * layer.K, layer.C, layer.R, layer.S)
    ch = layer.G * layer.K
    ep = layer.epilogue
    if layer.precision.kind == "float":
        return LayerParams(
            "float",
            rng.standard_normal(shape).astype(np.float32),
            rng.standard_normal(ch).astype(np.float32) if ep.bias else None,
            activation=ep.activation,
            clip_min=ep.clip_min,
            clip_max=ep.clip_max,
        )
    wb, ab = layer.precision.weight, layer.precision.act
    wlo, whi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
    xlo, xhi = (-(1 << (ab - 1)), (1 << (ab - 1)) - 1) if signed_x else (0, (1 << ab) - 1)
    fan_in = layer.C * layer.R * layer.S
    return LayerParams(
        "int",
        rng.integers(wlo, whi + 1, shape).astype(np.int8 if wb <= 8 else np.int16),
        rng.integers(-1000, 1000, ch).astype(np.int32) if ep.bias else None,
        w_scale=(rng.uniform(0.5, 1.5, ch) * 0.02).astype(np.float32),
        w_zero_point=0,
        x_scale=0.05,
        x_zero_point=int(rng.integers(xlo, xhi + 1) // 4),
        y_scale=float(0.02 * np.sqrt(fan_in) * 0.05 * 10),
        y_zero_point=int(rng.integers(-10, 10)) if layer.precision.out > 4 else 0,
        r_scale=0.07,
        r_zero_point=3,
        x_signed=signed_x,
        y_bits=layer.precision.out,
        activation=ep.activation,
        clip_min=ep.clip_min,
        clip_max=ep.clip_max,
    )


# --- ONNX ------------------------------------------------------------------------------------------
class _Model:
    """Name lookups over an ONNX graph: initializers, Constant nodes, producers and consumers."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper

        g = model.graph
        self.init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.producer = {}
        self.consumers: dict[str, list] = {}
        self.nodes = {}
        for i, n in enumerate(g.node):
            self.nodes[n.name or f"#{i}"] = n
            for o in n.output:
                self.producer[o] = n
            for x in n.input:
                self.consumers.setdefault(x, []).append(n)
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.init[n.output[0]] = numpy_helper.to_array(a.t)

    def const(self, name: str, what: str) -> np.ndarray:
        if name in self.init:
            return self.init[name]
        p = self.producer.get(name)
        if p is not None and p.op_type in ("Identity", "Cast") and p.input[0] in self.init:
            return self.init[p.input[0]]
        raise ModelError(f"{what} ({name!r}) is not a constant initializer; fold constants before compiling")

    def attr(self, node, name: str, default=None):
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default


def _find_node(m: _Model, layer: Layer):
    if layer.onnx_node and layer.onnx_node in m.nodes:
        n = m.nodes[layer.onnx_node]
        if n.op_type in LAYER_OPS:
            return n
        # the frontend may name the QuantizeLinear that closes a QDQ span: walk back to the MAC op
        seen = 0
        while n is not None and n.op_type not in LAYER_OPS and seen < 6:
            n = m.producer.get(n.input[0])
            seen += 1
        if n is not None and n.op_type in LAYER_OPS:
            return n
    for out in layer.outputs:
        n = m.producer.get(out)
        while n is not None and n.op_type not in LAYER_OPS:
            n = m.producer.get(n.input[0]) if n.input else None
        if n is not None:
            return n
    raise ModelError(
        f"layer {layer.name}: cannot find its Conv/Gemm/MatMul node (onnx_node={layer.onnx_node!r}, "
        f"outputs={list(layer.outputs)}); the frontend must set Layer.onnx_node"
    )


def _dq(m: _Model, name: str):
    """(quantized values, scale, zero point, axis) when `name` is a DequantizeLinear output, else None."""
    p = m.producer.get(name)
    if p is None or p.op_type != "DequantizeLinear":
        return None
    q = m.const(p.input[0], f"DequantizeLinear {p.name} input") if p.input[0] in m.init else None
    scale = m.const(p.input[1], f"DequantizeLinear {p.name} scale")
    zp = (
        m.const(p.input[2], f"DequantizeLinear {p.name} zero point")
        if len(p.input) > 2 and p.input[2]
        else None
    )
    return q, scale, zp, m.attr(p, "axis", 1), p


def _runtime_weight_params(m: _Model, node, layer: Layer) -> LayerParams:
    """A MatMul of two run-time tensors (attention's QK^T, AV): no weight values, only the second
    operand's quantization (scale and zero point, an activation's: per tensor)."""
    ep = layer.epilogue
    common = dict(activation=ep.activation, clip_min=ep.clip_min, clip_max=ep.clip_max)
    ch = layer.G * layer.K
    if layer.precision.kind == "float":
        return LayerParams("float", None, None, out_channels=ch, **common)
    ws, wzp = _dq_activation(m, node.input[1], layer, "second operand")
    xs, xzp = _dq_activation(m, node.input[0], layer, "input")
    cons = m.consumers.get(node.output[0], [])
    if len(cons) != 1 or cons[0].op_type != "QuantizeLinear":
        raise ModelError(
            f"layer {layer.name}: the output of {node.name} must feed exactly one QuantizeLinear (QDQ model)"
        )
    c = cons[0]
    ys = float(np.asarray(m.const(c.input[1], "output scale")).reshape(-1)[0])
    yzp = np.asarray(m.const(c.input[2], "output zero point")) if len(c.input) > 2 else np.uint8(0)
    return LayerParams(
        "int",
        None,
        None,
        w_scale=np.full(1, ws, np.float32),
        w_zero_point=int(wzp.reshape(-1)[0]),
        x_scale=xs,
        x_zero_point=int(xzp.reshape(-1)[0]),
        y_scale=ys,
        y_zero_point=int(yzp.reshape(-1)[0]),
        w_signed=wzp.dtype.kind == "i",
        x_signed=xzp.dtype.kind == "i",
        y_signed=yzp.dtype.kind == "i",
        y_bits=8 * yzp.dtype.itemsize,
        out_channels=ch,
        **common,
    )


def _dq_activation(m: _Model, name: str, layer: Layer, what: str):
    p = m.producer.get(name)
    if p is None or p.op_type != "DequantizeLinear":
        raise ModelError(f"layer {layer.name}: {what} {name!r} does not come from a DequantizeLinear")
    scale = m.const(p.input[1], f"{what} scale")
    zp = m.const(p.input[2], f"{what} zero point") if len(p.input) > 2 and p.input[2] else np.uint8(0)
    if np.size(scale) != 1:
        raise UnsupportedError(f"layer {layer.name}: per-channel activation scale on {what} is not supported")
    return float(np.asarray(scale).reshape(-1)[0]), np.asarray(zp)


def from_onnx(model, layer: Layer) -> LayerParams:
    """The layer's parameters read from an ONNX ModelProto (float or QDQ), see the module docstring."""
    m = _Model(model)
    node = _find_node(m, layer)
    wname = node.input[1]
    bname = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if bname is None and layer.epilogue.bias and len(layer.inputs) > 2:
        bname = layer.inputs[2]  # a bias Add fused into the layer (a MatMul's, see frontend.onnx_graph)
    ep = layer.epilogue
    if layer.runtime_weight:
        return _runtime_weight_params(m, node, layer)
    dq_w = _dq(m, wname)
    if dq_w is None:
        w = m.const(wname, f"layer {layer.name} weight").astype(np.float32)
        b = m.const(bname, f"layer {layer.name} bias").astype(np.float32) if bname else None
        w, b = _canonical_weight(node, m, w, b, layer)
        return LayerParams(
            "float", w, b, activation=ep.activation, clip_min=ep.clip_min, clip_max=ep.clip_max
        )
    wq, ws, wzp, axis, _ = dq_w
    if wq is None:
        raise ModelError(f"layer {layer.name}: quantized weight of {node.name} is not an initializer")
    wzp = np.zeros(1, np.int64) if wzp is None else np.asarray(wzp).reshape(-1).astype(np.int64)
    if np.any(wzp != wzp[0]):
        raise UnsupportedError(
            f"layer {layer.name}: per-channel weight zero points differ; quantize weights symmetrically "
            "(quantize_static(..., extra_options={'WeightSymmetric': True}))"
        )
    ws = np.asarray(ws, np.float32).reshape(-1)
    if node.op_type == "ConvTranspose":  # per-channel scales of C_out/g, repeated per group
        ws = channel_scale(ws, int(m.attr(node, "group", 1)))
    xs, xzp = _dq_activation(m, node.input[0], layer, "input")
    w, _ = _canonical_weight(node, m, wq, None, layer)
    bias = None
    if bname:
        dq_b = _dq(m, bname)
        if dq_b is not None and dq_b[0] is not None:
            bq, bs, _, _, _ = dq_b
            bias = np.rint(
                bq.astype(np.float64) * np.asarray(bs, np.float64) / (ws.astype(np.float64) * xs)
            ).astype(np.int32)
        else:
            bf = m.const(bname, f"layer {layer.name} bias").astype(np.float64)
            bias = np.rint(bf / (ws.astype(np.float64) * xs)).astype(np.int32)
        bias = np.broadcast_to(bias.reshape(-1), (w.shape[0],)).copy()
    # walk forward to the QuantizeLinear that closes the span (through Relu / Clip / Add)
    t = node.output[0]
    rs, rzp, r_signed = 1.0, 0, True
    for _ in range(6):
        cons = m.consumers.get(t, [])
        if len(cons) != 1:
            raise ModelError(f"layer {layer.name}: {t!r} must feed exactly one QuantizeLinear (QDQ model)")
        c = cons[0]
        if c.op_type == "QuantizeLinear":
            ys = float(np.asarray(m.const(c.input[1], "output scale")).reshape(-1)[0])
            yzp = np.asarray(m.const(c.input[2], "output zero point")) if len(c.input) > 2 else np.uint8(0)
            return LayerParams(
                "int",
                w,
                bias,
                w_scale=ws,
                w_zero_point=int(wzp[0]),
                x_scale=xs,
                x_zero_point=int(xzp.reshape(-1)[0]),
                y_scale=ys,
                y_zero_point=int(yzp.reshape(-1)[0]),
                r_scale=rs,
                r_zero_point=rzp,
                w_signed=wq.dtype.kind == "i",
                x_signed=xzp.dtype.kind == "i",
                y_signed=yzp.dtype.kind == "i",
                r_signed=r_signed,
                y_bits=8 * yzp.dtype.itemsize,
                activation=ep.activation,
                clip_min=ep.clip_min,
                clip_max=ep.clip_max,
            )
        if c.op_type == "Add":
            other = c.input[1] if c.input[0] == t else c.input[0]
            rs, rz = _dq_activation(m, other, layer, "residual")
            rzp, r_signed = int(rz.reshape(-1)[0]), rz.dtype.kind == "i"
        elif c.op_type not in ("Relu", "Clip"):
            raise ModelError(
                f"layer {layer.name}: unexpected {c.op_type} node {c.name!r} between {node.name} and its "
                "QuantizeLinear"
            )
        t = c.output[0]
    raise ModelError(f"layer {layer.name}: no QuantizeLinear after {node.name}")


def _canonical_weight(node, m: _Model, w: np.ndarray, b, layer: Layer):
    """Weights as [G*K, C, R, S]: Conv already is; Gemm B is [K, C] (transB=1) or [C, K]; MatMul [C, K]."""
    if node.op_type == "ConvTranspose":  # the conv over the zero-inserted input (frontend.conv_transpose)
        w4 = conv_weight(w, int(m.attr(node, "group", 1)))
    elif node.op_type == "Conv":
        w4 = w.reshape(w.shape[0], w.shape[1], *(w.shape[2:] or (1, 1)))
        if w4.ndim == 3:  # Conv1d: a 2-D convolution with H = 1, the kernel along W
            w4 = w4[:, :, None, :]
    elif node.op_type == "Gemm":
        if float(m.attr(node, "alpha", 1.0)) != 1.0 or float(m.attr(node, "beta", 1.0)) != 1.0:
            raise UnsupportedError(f"layer {layer.name}: Gemm with alpha/beta != 1")
        if m.attr(node, "transA", 0):
            raise UnsupportedError(f"layer {layer.name}: Gemm with transA=1")
        w2 = w if m.attr(node, "transB", 0) else w.T
        w4 = w2.reshape(w2.shape[0], w2.shape[1], 1, 1)
    else:
        w4 = w.T.reshape(w.shape[1], w.shape[0], 1, 1)
    expect = (layer.G * layer.K, layer.C, layer.R, layer.S)
    if tuple(w4.shape) != expect:
        raise ModelError(
            f"layer {layer.name}: weight of {node.name} has shape {tuple(w4.shape)}, the layer needs {expect}"
        )
    return np.ascontiguousarray(w4), (None if b is None else np.asarray(b).reshape(-1))
