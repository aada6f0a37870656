"""QONNX models (FINN / hls4ml / Brevitas): `Quant`, `BipolarQuant` and `Trunc` rewritten into the QDQ
form the rest of codax compiles, values unchanged.

QONNX quantizes with `q = round_mode(clip(x / s + z, qmin, qmax))` (it clamps, then rounds) and returns
`(q - z) * s` as a float tensor (qonnx.custom_op.general.intquant). codax compiles QuantizeLinear /
DequantizeLinear chains, and reads a tensor's width from an integer Clip between them
(codax.frontend.widths), so each node becomes:

- `Quant` of a constant (a weight or a bias): folded here with QONNX's own rounding functions into an
  integer initializer read by a DequantizeLinear (per-channel scales keep their axis). Any rounding mode
  is exact, since the integers are computed once, as QONNX computes them.
- `Quant` of a layer's output (through a Relu / Clip), rounding ROUND (half to even), and of any
  run-time tensor with zero point 0: `QuantizeLinear -> Clip(qmin, qmax) -> DequantizeLinear`, the QDQ
  form whose Clip states the width; the producing layer fuses it as its requantization. QuantizeLinear
  (and the engine) add the zero point after rounding, QONNX before: with an odd zero point a tie rounds
  the other way (one step; the per-layer tolerance).
- `Quant` of a run-time tensor with another rounding mode or a nonzero zero point (not after a layer),
  `BipolarQuant` and `Trunc` of run-time tensors: their float formula in standard ONNX ops on the host
  (Div, Add, Clip, Floor / Ceil / Round / Where), then `QuantizeLinear(scale 1) -> Clip ->
  DequantizeLinear(s, z)` on the already-integer values, so the next layer still reads an integer
  tensor. The engine's requantization rounds half to even only, so such a node may not directly follow
  a layer: that is an error naming the node. Trunc v1 does not clamp and states no signedness: its
  integers' range is that of the Quant producing its input, truncated (an error where no Quant does).

Afterwards `frontend.qonnx_graph` moves DequantizeLinears past views and max pools and makes float
biases int32 ones, so the integer lowering finds its patterns.

qonnx's own QuantToQCDQ covers only ROUND with zero point 0 and quantizes weights at run time, which
codax's integer lowering cannot read; hence this rewrite. qonnx's model wrapper, shape inference and
constant folding prepare the graph, and qonnx's executor is the reference the tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from codax.errors import ModelError, UnsupportedError
from codax.frontend.qonnx_graph import attr, integer_biases, sink_dequantize
from codax.frontend.widths import VALUE_VIEWS, width_of_range

DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")
QUANT_OPS = ("Quant", "IntQuant", "BipolarQuant", "Trunc")
_MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Brevitas writes its enum's name for round-to-zero; QONNX's executor calls the same mode DOWN
_ALIASES = {"HALF_EVEN": "ROUND", "ROUND_TO_ZERO": "DOWN"}
ROUNDING_MODES = ("ROUND", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")


@dataclass(frozen=True)
class QuantTensor:
    """What a QONNX node declared about the tensor it produced (kept for the report and the checks):
    `role` is "weight" (a constant a layer multiplies) or "activation" (a run-time tensor)."""

    node: str
    op_type: str
    bits: int
    signed: bool
    role: str = "activation"
    bipolar: bool = False


@dataclass(frozen=True)
class _Grid:
    """An integer grid: scale and zero point (float32, scalar or along `axis` with `nch` channels) and
    the integer range [lo, hi]."""

    s: np.ndarray
    z: np.ndarray
    axis: int | None
    nch: int | None
    lo: int
    hi: int
    signed: bool

    def at(self, s: np.ndarray, z: np.ndarray) -> _Grid:
        """The same range and axis at another scale and zero point."""
        return replace(self, s=np.asarray(s, np.float32), z=np.asarray(z, np.float32))


def is_qonnx(model: onnx.ModelProto) -> bool:
    """Whether the model holds nodes of the QONNX domains (by their domain, as QONNX tools detect them)."""
    return any(n.domain in DOMAINS for n in model.graph.node)


def lower_qonnx(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, dict[str, QuantTensor]]:
    """The QDQ model equal to QONNX `model`, and the QONNX node behind each quantized tensor (by the name
    of the tensor the next layer reads: a weight initializer or an activation's integer tensor).
    `model` itself is left as it is."""
    for n in model.graph.node:
        if n.domain in DOMAINS and n.op_type not in QUANT_OPS:
            raise UnsupportedError(
                f"node {n.name or n.output[0]!r} is a {n.op_type} of domain {n.domain}; codax reads the "
                f"QONNX nodes {', '.join(QUANT_OPS)} (docs/frontend.md, QONNX)"
            )
    versions = {o.domain: o.version for o in model.opset_import}
    return _Lowering(_prepare(model, name), versions).run()


def _prepare(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """qonnx's shape inference and constant folding (its nodes and QDQ nodes kept), node names kept, on a
    copy of `model`."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import RemoveStaticGraphInputs, RemoveUnusedTensors
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

    m = onnx.ModelProto()
    m.CopyFrom(model)
    model = m
    taken = {n.name for n in model.graph.node if n.name}
    for n in model.graph.node:
        if not n.name:  # errors name the node; QONNX exports may leave it empty
            n.name = base = f"{n.op_type}_{n.output[0]}"
            i = 0
            while n.name in taken:
                i += 1
                n.name = f"{base}_{i}"
            taken.add(n.name)
    if _opset(model) < 13:  # per-axis QuantizeLinear and integer Clip need opset 13
        try:
            model = onnx.version_converter.convert_version(model, 13)
        except Exception as e:
            raise ModelError(
                f"QONNX model {name!r} uses ONNX opset {_opset(model)}; converting it to opset 13 for its "
                f"QuantizeLinear nodes failed ({type(e).__name__}: {str(e)[:200]}); export it at opset 13 "
                "or newer"
            ) from None
    keep = [*QUANT_OPS, "QuantizeLinear", "DequantizeLinear"]
    try:
        mw = ModelWrapper(model)
        for t in (InferShapes(), FoldConstants(exclude_op_types=keep), FoldTransposeIntoQuantInit()):
            mw = mw.transform(t)
        mw = mw.transform(RemoveUnusedTensors()).transform(RemoveStaticGraphInputs())
    except Exception as e:  # qonnx raises plain exceptions of many kinds
        raise ModelError(
            f"qonnx could not prepare QONNX model {name!r} (shape inference / constant folding): "
            f"{type(e).__name__}: {str(e)[:300]}; check it with `qonnx-cleanup` and re-export it"
        ) from None
    return mw.model


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def rounding_mode(node: onnx.NodeProto, default: str = "ROUND") -> str:
    mode = str(attr(node, "rounding_mode", default)).upper()
    mode = _ALIASES.get(mode, mode)
    if mode not in ROUNDING_MODES:
        raise UnsupportedError(
            f"{node.op_type} node {node.name!r} (output {node.output[0]!r}): rounding_mode {mode!r} is not "
            "a QONNX rounding mode "
            f"({', '.join(ROUNDING_MODES)}); re-export it with one of them"
        )
    return mode


def int_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """QONNX's [min_int, max_int] (qonnx.custom_op.general.intquant)."""
    from qonnx.custom_op.general.intquant import max_int, min_int

    return int(min_int(signed, narrow, bits)), int(max_int(signed, narrow, bits))


def _desc(n: onnx.NodeProto) -> str:
    """How an error names a node: its type, name and output tensor."""
    return f"{n.op_type} node {n.name!r} (output {n.output[0]!r})"


class _Lowering:
    def __init__(self, model: onnx.ModelProto, versions: dict[str, int]):
        self.model = model
        self.versions = versions  # opset version by domain, as the model imports them
        g = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for x in n.input:
                self.consumers.setdefault(x, []).append(n)
        self.shapes = {
            vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in list(g.input) + list(g.value_info) + list(g.output)
        }
        self.new_inits: list[onnx.TensorProto] = []
        self.taken = set(self.consts) | {x for n in g.node for x in (*n.input, *n.output)}
        self.taken |= {v.name for v in (*g.input, *g.output, *g.value_info)}
        self.declared: dict[str, QuantTensor] = {}

    # --- helpers --------------------------------------------------------------------------------------
    def fresh(self, name: str) -> str:
        """`name` for a new tensor, suffixed where the model already uses that name."""
        base, i = name, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name

    def init(self, name: str, value: np.ndarray) -> str:
        """A new initializer under `name` (made unique)."""
        name = self.fresh(name)
        self.new_inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def const(self, node: onnx.NodeProto, i: int, what: str) -> np.ndarray:
        name = node.input[i] if len(node.input) > i else ""
        if name not in self.consts:
            raise UnsupportedError(
                f"{_desc(node)}: its {what} ({name or 'missing'}) is computed at run time; codax needs it "
                "constant (an initializer)"
            )
        return self.consts[name]

    def bit_width(self, node: onnx.NodeProto, i: int, what: str) -> int:
        v = self.const(node, i, what)
        if v.size != 1 or float(v.reshape(())) != int(v.reshape(())):
            raise UnsupportedError(
                f"{_desc(node)}: {what} {v.tolist()} is not one integer; codax compiles one integer width "
                "per tensor (2..8 bits, wider for biases)"
            )
        return int(v.reshape(()))

    @staticmethod
    def signed_narrow(node: onnx.NodeProto) -> tuple[bool, bool]:
        """A Quant's `signed` and `narrow`, which QONNX requires it to state."""
        missing = [a for a in ("signed", "narrow") if attr(node, a, None) is None]
        if missing:
            raise ModelError(
                f"{_desc(node)} has no {' / '.join(missing)} attribute; QONNX requires a Quant to state "
                "both `signed` and `narrow` (0 or 1). Re-export the model with them"
            )
        return bool(attr(node, "signed", 1)), bool(attr(node, "narrow", 0))

    def axis_of(self, node: onnx.NodeProto, rank: int, *values: np.ndarray) -> tuple[int | None, int | None]:
        """(None, None) where the scale and zero point are per tensor, else the one axis the per-channel
        ones run along and their number of channels."""
        axes: set[int] = set()
        sizes: set[int] = set()
        for v in values:
            if v.size == 1:
                continue
            shape = [1] * (rank - v.ndim) + list(v.shape)
            along = [i for i, d in enumerate(shape) if d != 1]
            if len(along) != 1 or len(shape) != rank:
                raise UnsupportedError(
                    f"{_desc(node)}: scale / zero point of shape {list(v.shape)} does not run along one "
                    f"axis of its rank-{rank} input; codax supports per-tensor and per-channel (one axis) "
                    "scales and zero points"
                )
            axes.add(along[0])
            sizes.add(v.size)
        if len(axes) > 1 or len(sizes) > 1:
            raise UnsupportedError(
                f"{_desc(node)}: its scale and zero point run along different axes or channel counts "
                f"({[list(v.shape) for v in values]}); codax needs them along one axis"
            )
        return (axes.pop(), sizes.pop()) if axes else (None, None)

    def rank_of(self, node: onnx.NodeProto, x: str, *values: np.ndarray) -> int:
        """The rank of run-time tensor `x`; an error where it is unknown and a per-channel scale needs it."""
        shape = self.shapes.get(x, [])
        if shape:
            return len(shape)
        if any(v.size != 1 for v in values):
            raise UnsupportedError(
                f"{_desc(node)}: the shape of its input {x!r} is unknown (shape inference could not follow "
                "it), so its per-channel scale has no axis; give the model static shapes"
            )
        return max([v.ndim for v in values] + [1])

    @staticmethod
    def per_axis(v: np.ndarray, axis: int | None, n: int | None) -> np.ndarray:
        """A scale / zero point as QuantizeLinear wants it: a scalar, or 1-D along the axis."""
        v = np.asarray(v)
        if axis is None:
            return v.reshape(())
        return np.broadcast_to(v.reshape(-1), (n,)).copy() if v.size == 1 else v.reshape(-1)

    def qparams(self, prefix: str, g: _Grid, dt) -> tuple[list[str], dict]:
        """The scale and zero-point initializers of a Quantize/DequantizeLinear on grid `g`, and its axis."""
        s = self.init(prefix + "scale", self.per_axis(g.s, g.axis, g.nch).astype(np.float32))
        z = self.init(prefix + "zero", self.per_axis(g.z, g.axis, g.nch).astype(dt))
        return [s, z], ({} if g.axis is None else {"axis": g.axis})

    def dequantized_ints(self, n: onnx.NodeProto, ints: np.ndarray, g: _Grid, decl) -> list[onnx.NodeProto]:
        """Integer initializer `ints` read by a DequantizeLinear on grid `g`, producing `n`'s output."""
        name = self.init(n.output[0] + "_int", ints)
        if decl is not None:
            self.declared[name] = decl
        params, ax = self.qparams(n.name + "_dq", g, ints.dtype)
        return [helper.make_node("DequantizeLinear", [name, *params], [n.output[0]], name=n.name, **ax)]

    def runs_after_layer(self, tensor: str) -> onnx.NodeProto | None:
        """The MAC node whose output reaches `tensor` through at most a Relu / Clip (a layer's output)."""
        n = self.producer.get(tensor)
        while n is not None and n.op_type in ("Relu", "Clip"):
            n = self.producer.get(n.input[0])
        return n if n is not None and n.op_type in _MAC_OPS else None

    def not_after_layer(self, n: onnx.NodeProto, does: str) -> None:
        """A node the engine's requantization cannot compute may not read a layer's output directly."""
        after = self.runs_after_layer(n.input[0])
        if after is not None:
            raise UnsupportedError(
                f"{_desc(n)} {does} the output of layer {after.name!r}; the engine's requantization rounds "
                "half to even (ROUND). Quantize that output with a ROUND Quant (zero point 0 or not), or "
                "apply this node to a host-side tensor"
            )

    # --- the rewrite ----------------------------------------------------------------------------------
    def run(self) -> tuple[onnx.ModelProto, dict[str, QuantTensor]]:
        g = self.model.graph
        out: list[onnx.NodeProto] = []
        for n in g.node:
            out.extend(self.lower(n) if n.domain in DOMAINS else [n])
        g.initializer.extend(self.new_inits)
        out = sink_dequantize(out, {t.name for t in g.initializer}, {o.name for o in g.output})
        out = integer_biases(out, g)
        del g.node[:]
        g.node.extend(out)
        keep = {o for n in out for o in n.output}
        vi = [v for v in g.value_info if v.name in keep]  # re-inferred by load_onnx
        del g.value_info[:]
        g.value_info.extend(vi)
        used = {x for n in out for x in n.input}
        inits = [t for t in g.initializer if t.name in used]
        del g.initializer[:]
        g.initializer.extend(inits)
        ops = [o for o in self.model.opset_import if o.domain not in DOMAINS]  # _prepare made it >= 13
        del self.model.opset_import[:]
        self.model.opset_import.extend(ops)
        return self.model, self.declared

    def lower(self, n: onnx.NodeProto) -> list[onnx.NodeProto]:
        if n.op_type == "BipolarQuant":
            return self.bipolar(n)
        if n.op_type == "Trunc":
            return self.trunc(n)
        return self.quant(n)

    def quant(self, n: onnx.NodeProto) -> list[onnx.NodeProto]:
        s = self.const(n, 1, "scale").astype(np.float32)
        z = self.const(n, 2, "zero point").astype(np.float32)
        bits = self.bit_width(n, 3, "bit width")
        signed, narrow = self.signed_narrow(n)
        mode = rounding_mode(n)
        if np.any(s <= 0) or not np.all(np.isfinite(s)):
            raise ModelError(f"{_desc(n)}: scales must be positive and finite")
        if np.any(z != np.round(z)):
            raise UnsupportedError(
                f"{_desc(n)}: zero point {z.reshape(-1)[:4].tolist()} is not an integer; integer layers "
                "need integer zero points"
            )
        if bits == 1 and signed:  # QONNX executes a signed 1-bit Quant as +-1 of x / s + z
            if np.any(z != 0):
                raise UnsupportedError(
                    f"{_desc(n)}: a signed 1-bit Quant with zero point {z.reshape(-1)[:4].tolist()} (its "
                    "output (+-1 - z) * s is no bipolar tensor); codax takes 1-bit Quants with zero point 0"
                )
            return self.bipolar(n, s)
        x = n.input[0]
        if x in self.consts:
            return self.fold_constant(n, self.consts[x], s, z, bits, signed, narrow, mode)
        if not 2 <= bits <= 8:
            raise UnsupportedError(
                f"{_desc(n)} quantizes an activation to {bits} bits; codax's integer layers take 2..8-bit "
                "activations"
            )
        lo, hi = int_range(bits, signed, narrow)
        axis, nch = self.axis_of(n, self.rank_of(n, x, s, z), s, z)
        grid = _Grid(s, z, axis, nch, lo, hi, signed)
        decl = QuantTensor(n.name, n.op_type, bits, signed)
        if mode == "ROUND" and (self.runs_after_layer(x) is not None or not np.any(z)):
            return self.qcdq(n, x, grid, decl)
        self.not_after_layer(n, f"rounds {mode}")
        r, nodes = self.host_round(n, x, grid, mode)
        return [*nodes, *self.qcdq(n, r, grid.at(np.ones_like(s), np.zeros_like(z)), decl, deq=grid)]

    def qcdq(self, n, x: str, q: _Grid, decl: QuantTensor, deq: _Grid | None = None) -> list[onnx.NodeProto]:
        """QuantizeLinear(q) -> Clip(q.lo, q.hi) -> DequantizeLinear (on grid `deq` when the input already
        holds the integers), producing `n`'s output; the clipped integers are declared as `decl`."""
        dt = np.int8 if q.signed else np.uint8
        info = np.iinfo(dt)
        kind = "signed" if q.signed else "unsigned"
        for g in (q, deq or q):
            if g.z.size and (g.z.min() < info.min or g.z.max() > info.max):
                raise UnsupportedError(
                    f"{_desc(n)}: zero point {g.z.reshape(-1)[:4].tolist()} does not fit its {kind} 8-bit "
                    "tensor"
                )
        if q.lo < info.min or q.hi > info.max:
            raise UnsupportedError(
                f"{_desc(n)}: its integers span [{q.lo}, {q.hi}], more than a {kind} 8-bit tensor holds; "
                "codax's integer layers take 2..8-bit activations"
            )
        y = n.output[0]
        yq, yc = self.fresh(y + "_q"), self.fresh(y + "_qc")
        qp, ax = self.qparams(n.name + "_q", q, dt)
        dp = qp if deq is None else self.qparams(n.name + "_dq", deq, dt)[0]
        lo = self.init(n.name + "_qmin", np.array(q.lo, dt))
        hi = self.init(n.name + "_qmax", np.array(q.hi, dt))
        self.declared[yc] = decl
        return [
            helper.make_node("QuantizeLinear", [x, *qp], [yq], name=n.name + "_quantize", **ax),
            helper.make_node("Clip", [yq, lo, hi], [yc], name=n.name + "_range"),
            helper.make_node("DequantizeLinear", [yc, *dp], [y], name=n.name + "_dequantize", **ax),
        ]

    def host_round(self, n, x: str, g: _Grid, mode: str) -> tuple[str, list[onnx.NodeProto]]:
        """round_mode(clip(x / s + z, lo, hi)) as ONNX ops, in QONNX's float32 order of operations (it
        clamps, then rounds)."""
        b, t = n.name, self.fresh
        rank = self.rank_of(n, x, g.s, g.z)

        def bshape(v):  # scale / zero point broadcast against x as QONNX broadcasts them
            v = np.asarray(v, np.float32)
            return v.reshape(v.shape if g.axis is None else [-1] + [1] * (rank - g.axis - 1))

        xs, xz, xc = t(b + "_xs"), t(b + "_xz"), t(b + "_xc")
        lo, hi = self.init(b + "_lo", np.float32(g.lo)), self.init(b + "_hi", np.float32(g.hi))
        nodes = [
            helper.make_node("Div", [x, self.init(b + "_s", bshape(g.s))], [xs], name=b + "_div"),
            helper.make_node("Add", [xs, self.init(b + "_z", bshape(g.z))], [xz], name=b + "_add"),
            helper.make_node("Clip", [xz, lo, hi], [xc], name=b + "_clip"),
        ]
        return self.round_nodes(b, xc, mode, nodes)

    def round_nodes(self, b: str, v: str, mode: str, nodes: list) -> tuple[str, list[onnx.NodeProto]]:
        """QONNX's rounding functions (qonnx intquant.resolve_rounding_mode) in ONNX ops."""
        mk, t = helper.make_node, self.fresh
        r = t(b + "_rounded")
        if mode in ("ROUND", "CEIL", "FLOOR"):
            return r, [*nodes, mk(mode.capitalize(), [v], [r], name=b + "_round")]
        neg = t(b + "_neg")
        nodes.append(mk("Less", [v, self.init(b + "_zero", np.float32(0))], [neg], name=b + "_sign"))
        if mode in ("UP", "DOWN"):  # away from / towards zero
            a, c = t(b + "_fl"), t(b + "_ce")
            nodes += [mk("Floor", [v], [a], name=b + "_floor"), mk("Ceil", [v], [c], name=b + "_ceil")]
            pick = [neg, a, c] if mode == "UP" else [neg, c, a]
            return r, [*nodes, mk("Where", pick, [r], name=b + "_round")]
        # HALF_UP: sign(v) * floor(|v| + 0.5); HALF_DOWN: sign(v) * ceil(|v| - 0.5)
        half = self.init(b + "_half", np.float32(0.5))
        op, comb = ("Floor", "Add") if mode == "HALF_UP" else ("Ceil", "Sub")
        ab, sh, mag, nm = t(b + "_abs"), t(b + "_shift"), t(b + "_mag"), t(b + "_negmag")
        nodes += [
            mk("Abs", [v], [ab], name=b + "_abs"),
            mk(comb, [ab, half], [sh], name=b + "_shift"),
            mk(op, [sh], [mag], name=b + "_mag"),
            mk("Neg", [mag], [nm], name=b + "_negate"),
            mk("Where", [neg, nm, mag], [r], name=b + "_round"),
        ]
        return r, nodes

    def fold_constant(self, n, w, s, z, bits, signed, narrow, mode) -> list[onnx.NodeProto]:
        """A constant quantized once, as QONNX's executor quantizes it (int_quant: scale, shift, clamp,
        then round, in float32), read by a DequantizeLinear."""
        from qonnx.custom_op.general.intquant import resolve_rounding_mode

        if bits > 8 and not self.feeds_bias(n.output[0]):
            raise UnsupportedError(
                f"{_desc(n)} quantizes a weight to {bits} bits; the engine takes weights of at most 8 bits "
                "(wider only for a Conv / Gemm bias)"
            )
        if np.any(z != 0) and bits <= 8:
            raise UnsupportedError(
                f"{_desc(n)}: weight zero point {z.reshape(-1)[:4].tolist()} is not 0; the engine's weights "
                "are symmetric (zero point 0)"
            )
        lo, hi = int_range(bits, signed, narrow)
        w = np.asarray(w, np.float32)
        v = w / s + z
        v = np.where(v > hi, np.float32(hi), v)
        v = np.where(v < lo, np.float32(lo), v)
        q = resolve_rounding_mode(mode)(v)
        dt = np.int32 if bits > 8 else np.int8 if signed else np.uint8
        axis, nch = self.axis_of(n, w.ndim, s, z)
        decl = QuantTensor(n.name, n.op_type, bits, signed, role="weight") if bits <= 8 else None
        return self.dequantized_ints(n, q.astype(dt), _Grid(s, z, axis, nch, lo, hi, signed), decl)

    def feeds_bias(self, tensor: str) -> bool:
        users = self.consumers.get(tensor, [])
        return bool(users) and all(
            u.op_type in ("Conv", "ConvTranspose", "Gemm") and len(u.input) > 2 and u.input[2] == tensor
            for u in users
        )

    def bipolar(self, n: onnx.NodeProto, s: np.ndarray | None = None) -> list[onnx.NodeProto]:
        """x >= 0 -> +1, else -1 (times the scale): QONNX's BipolarQuant (and a signed 1-bit Quant with
        zero point 0)."""
        s = self.const(n, 1, "scale").astype(np.float32) if s is None else s
        x = n.input[0]
        if x in self.consts:
            w = np.asarray(self.consts[x], np.float32)
            axis, nch = self.axis_of(n, w.ndim, s)
            decl = QuantTensor(n.name, n.op_type, 1, True, role="weight", bipolar=True)
            grid = _Grid(s, np.zeros_like(s), axis, nch, -1, 1, True)
            return self.dequantized_ints(n, np.where(w >= 0, 1, -1).astype(np.int8), grid, decl)
        axis, nch = self.axis_of(n, self.rank_of(n, x, s), s)
        b, mk = n.name, helper.make_node
        neg, r = self.fresh(b + "_neg"), self.fresh(b + "_rounded")
        nodes = [
            mk("Less", [x, self.init(b + "_zero", np.float32(0))], [neg], name=b + "_sign"),
            mk("Where", [neg, self.init(b + "_m1", np.float32(-1)), self.init(b + "_p1", np.float32(1))], [r],
               name=b + "_round"),
        ]  # fmt: skip
        grid = _Grid(s, np.zeros_like(s), axis, nch, -1, 1, True)
        decl = QuantTensor(n.name, n.op_type, 1, True, bipolar=True)
        return [*nodes, *self.qcdq(n, r, grid.at(np.ones_like(s), np.zeros_like(s)), decl, deq=grid)]

    def trunc(self, n: onnx.NodeProto) -> list[onnx.NodeProto]:
        """QONNX Trunc, its version from the model's opset for its domain as QONNX's executor picks it
        (v1: 5 inputs, v2: 6): round(x / s + z), divided by the power-of-two truncation scale, clamped
        (v2 only) and rounded by its mode (FLOOR by default), at the output scale."""
        if n.input[0] in self.consts:
            raise UnsupportedError(f"{_desc(n)} truncates a constant; fold it in the exported model")
        version = 2 if self.versions.get(n.domain, 1) >= 2 else 1
        want = 6 if version == 2 else 5
        if len(n.input) != want:
            raise ModelError(
                f"{_desc(n)} has {len(n.input)} inputs, but the model imports {n.domain} at opset "
                f"{self.versions.get(n.domain, 1)}, where Trunc is version {version} with {want} inputs; "
                "re-export it with the domain's opset matching the node"
            )
        s = self.const(n, 1, "scale").astype(np.float32)
        z = self.const(n, 2, "zero point").astype(np.float32)
        mode = rounding_mode(n, "FLOOR")
        if np.any(z != 0) or s.size != 1:
            raise UnsupportedError(f"{_desc(n)}: codax supports per-tensor scales and zero point 0 for Trunc")
        in_bits = self.bit_width(n, 3, "input bit width")
        if version == 2:
            out_s = self.const(n, 4, "output scale").astype(np.float32)
            if out_s.size != 1:
                raise UnsupportedError(
                    f"{_desc(n)}: output scale of shape {list(out_s.shape)}; codax supports a per-tensor "
                    "output scale for Trunc"
                )
            out_bits = self.bit_width(n, 5, "output bit width")
            shift = np.float32(2 ** np.round(np.log2(out_s / s))).reshape(())  # QONNX: a power of two
            signed, narrow = bool(attr(n, "signed", 1)), bool(attr(n, "narrow", 0))
            lo, hi = int_range(out_bits, signed, narrow)
        else:
            out_bits = self.bit_width(n, 4, "output bit width")
            shift = np.float32(2.0 ** (in_bits - out_bits))
            out_s = s
            lo, hi = self.trunc_v1_range(n, s, shift, mode)
            signed = lo < 0
        if not 2 <= out_bits <= 8:
            raise UnsupportedError(
                f"{_desc(n)} truncates to {out_bits} bits; codax's integer layers take 2..8 bits"
            )
        self.not_after_layer(n, "truncates")
        b, mk, t = n.name, helper.make_node, self.fresh
        xs, xr, xt = t(b + "_xs"), t(b + "_xr"), t(b + "_xt")
        nodes = [
            mk("Div", [n.input[0], self.init(b + "_s", s.reshape(()))], [xs], name=b + "_div"),
            mk("Round", [xs], [xr], name=b + "_round_in"),
            mk("Div", [xr, self.init(b + "_shift", shift)], [xt], name=b + "_shift"),
        ]
        if version == 2:  # v2 clamps before its rounding; v1 does not clamp (its range is its input's)
            xc, lo_n, hi_n = (
                t(b + "_xc"),
                self.init(b + "_lo", np.float32(lo)),
                self.init(b + "_hi", np.float32(hi)),
            )
            nodes.append(mk("Clip", [xt, lo_n, hi_n], [xc], name=b + "_clip"))
        r, nodes = self.round_nodes(b, nodes[-1].output[0], mode, nodes)
        decl = QuantTensor(n.name, n.op_type, width_of_range(lo, hi, signed), signed)
        zero = np.zeros((), np.float32)
        grid = _Grid(out_s.reshape(()), zero, None, None, lo, hi, signed)
        return [*nodes, *self.qcdq(n, r, grid.at(np.float32(1), zero), decl, deq=grid)]

    def trunc_v1_range(
        self, n: onnx.NodeProto, s: np.ndarray, shift: np.float32, mode: str
    ) -> tuple[int, int]:
        """A Trunc v1's integers (it does not clamp): the range of its input's integers round(x / s),
        divided by the truncation scale and rounded by its mode. The input's range is that of the Quant
        producing it (through views and max pools, which keep its values)."""
        from qonnx.custom_op.general.intquant import resolve_rounding_mode

        p = self.producer.get(n.input[0])
        while p is not None and p.op_type in VALUE_VIEWS:
            p = self.producer.get(p.input[0])
        if p is None or p.domain not in DOMAINS or p.op_type not in ("Quant", "IntQuant", "BipolarQuant"):
            raise UnsupportedError(
                f"{_desc(n)}: a Trunc v1 neither clamps nor states its signedness, so codax takes its range "
                f"from the Quant producing its input, and {n.input[0]!r} is not a Quant's output; re-export "
                "it as Trunc v2 (opset 2 of its domain), which states `signed` and clamps"
            )
        ps = self.const(p, 1, "scale").astype(np.float32).reshape(-1)
        if p.op_type == "BipolarQuant":
            pz, (qlo, qhi) = np.zeros(1, np.float32), (-1, 1)
        else:
            pz = self.const(p, 2, "zero point").astype(np.float32).reshape(-1)
            pbits = self.bit_width(p, 3, "bit width")
            psigned, pnarrow = self.signed_narrow(p)
            qlo, qhi = (-1, 1) if pbits == 1 and psigned else int_range(pbits, psigned, pnarrow)
        ends = (np.array([[qlo], [qhi]], np.float32) - pz[None]) * ps[None]  # QONNX's float32 (q - z) * s
        ints = np.round(np.array([ends.min(), ends.max()], np.float32) / s.reshape(()))
        lo, hi = resolve_rounding_mode(mode)(ints / shift)
        return int(lo), int(hi)


def check_widths_on(declared: dict[str, QuantTensor], accel) -> None:
    """A QONNX node's width must run on `accel`, weights checked against the weight widths it lists and
    activations against its activation widths: 1-bit (bipolar) tensors only where that list has 1 bit,
    any other width where some listed width is at least as wide (it then runs at that width)."""
    for tensor, q in declared.items():
        listed = tuple(accel.weight_bits if q.role == "weight" else accel.act_bits)
        a = "an" if q.role[0] in "aeiou" else "a"
        if q.bipolar and 1 not in listed:
            raise UnsupportedError(
                f"{q.op_type} node {q.node!r} quantizes {a} {q.role} to 1 bit (bipolar), but accelerator "
                f"{accel.name} lists no 1-bit {q.role} width ({q.role} widths {list(listed)}; tensor "
                f"{tensor!r}); use an accelerator with 1-bit {q.role} widths or quantize that tensor to 2 "
                "bits or more"
            )
        if q.bits > max(listed):
            raise UnsupportedError(
                f"{q.op_type} node {q.node!r} quantizes {a} {q.role} to {q.bits} bits, wider than any "
                f"{q.role} width accelerator {accel.name} lists ({sorted(set(listed))}; tensor {tensor!r}); "
                f"quantize it to at most {max(listed)} bits"
            )
