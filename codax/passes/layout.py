"""Layout canonicalization: layers that are not yet conv2d / 2-D matmul become one.

- `conv1d(x, w)` (NCW/OIW) is `squeeze(conv2d(expand_dims(x, 2), w[:, :, None, :]), 2)`: a 2-D
  convolution with H = 1 (stride, dilation and pads on the W axis only).
- `conv2d_transpose(x, w)` with a constant(-like) weight is a conv2d of the flipped, transposed
  weight over x with zeros inserted (codax.frontend.conv_transpose); the zero insertion is host work.
- `matmul(x, w)` with x of rank >= 3 and a 2-D constant(-like) weight (a transformer's Linear on
  [B, T, D] tokens) is `reshape(matmul(reshape(x, [B*T, D]), w), [B, T, K])`: a dense layer with
  N = B*T.

The view op around the new core (squeeze / reshape) is then sunk past the elementwise chain that
follows it (bias add, residual add, relu / clip, astype, per-tensor quantize / dequantize), and the
one before it hoisted above a per-tensor dequantize of its input, so the chain has exactly the form
the partition patterns and LowerQDQ match. The views cost nothing (the flat data is the same); they
run on the host. It must run before LowerQDQ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.relax import PyExprMutator, expr_functor

from codax.frontend.conv_transpose import channel_scale, conv_weight, geometry
from codax.passes.relax_util import const_value, is_constant, op_name, relax_functions, shape

_UNARY = ("relax.nn.relu", "relax.clip", "relax.astype", "relax.quantize", "relax.dequantize")
_BINARY = ("relax.add", "relax.multiply", "relax.subtract")


@dataclass(frozen=True)
class _View:
    """A tensor of `outer` shape that is a view of `inner` (a Var of `inner_shape`)."""

    inner: relax.Expr
    inner_shape: tuple[int, ...]
    outer: tuple[int, ...]
    kind: str  # "h1": [N, C, W] = squeeze([N, C, 1, W], 2) | "flat": [..., T, K] = reshape([M, K])

    def small(self, s: tuple[int, ...]) -> tuple[int, ...] | None:
        """The shape a broadcast operand of shape `s` (against outer) takes against inner, or None."""
        if len(s) > len(self.outer):
            return None
        s = (1,) * (len(self.outer) - len(s)) + tuple(s)
        if self.kind == "h1":
            return s[:2] + (1,) + s[2:]
        if all(d == 1 for d in s[:-1]):
            return (s[-1],)
        return None


def _per_tensor(call: relax.Call) -> bool:
    """A quantize/dequantize with one scale and zero point (the axis does not matter then)."""
    return all(is_constant(a) and const_value(a).size == 1 for a in call.args[1:3])


@expr_functor.mutator
class _LayoutRewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.views: dict[relax.Var, _View] = {}

    # -- helpers -------------------------------------------------------------------------------
    def _val(self, e):
        """The value bound to `e`, through variable aliases (None for a parameter)."""
        while isinstance(e, relax.Var):
            v = self.lookup_binding(e)
            if v is None or not isinstance(v, relax.Var):
                return v
            e = v
        return e

    def _view(self, e) -> _View | None:
        while isinstance(e, relax.Var):
            if e in self.views:
                return self.views[e]
            e = self.lookup_binding(e)
        return None

    def _wrap(self, inner: relax.Expr, inner_shape, outer, kind: str, out) -> relax.Var:
        """Emit the view op from `inner` back to the outer shape and remember it."""
        inner_var = inner if isinstance(inner, relax.Var) else self.builder_.emit(inner)
        var = self.builder_.emit(out(inner_var))
        self.views[var] = _View(inner_var, tuple(inner_shape), tuple(outer), kind)
        return var

    def _into(self, x, view_kind: str, inner_shape: tuple[int, ...], to_inner):
        """`x` in inner shape: the inner tensor of a matching view, a dequantize whose input is
        re-viewed, or a view op on x."""
        v = self._view(x)
        if v is not None and v.kind == view_kind and v.inner_shape == inner_shape:
            return v.inner
        dq = self._val(x)
        if op_name(dq) == "relax.dequantize" and _per_tensor(dq):
            q = self._into(dq.args[0], view_kind, inner_shape, to_inner)
            return self.builder_.emit(relax.Call(dq.op, [q, *dq.args[1:]], dq.attrs, dq.ty_args))
        return self.builder_.emit(to_inner(x))

    def _weight(self, w, reshape_const):
        """A constant(-like) weight re-laid out: constant, dequantize(constant), else None."""
        if is_constant(w):
            return relax.const(reshape_const(const_value(w)))
        v = self._val(w)
        if is_constant(v):
            return relax.const(reshape_const(const_value(v)))
        if op_name(v) == "relax.dequantize" and is_constant(v.args[0]):
            q = relax.const(reshape_const(const_value(v.args[0])))
            return self.builder_.emit(relax.Call(v.op, [q, *v.args[1:]], v.attrs, v.ty_args))
        return None

    # -- the rewrites --------------------------------------------------------------------------
    def visit_call_(self, call):
        call = super().visit_call_(call)
        name = op_name(call)
        new = None
        if name == "relax.nn.conv1d":
            new = self._conv1d(call)
        elif name == "relax.matmul":
            new = self._matmul(call)
        elif name == "relax.nn.conv2d_transpose":
            new = self._conv_transpose(call)
        elif name in _UNARY or name in _BINARY:
            new = self._sink(call)
        return call if new is None else new

    def _conv1d(self, call):
        a = call.attrs
        if a.data_layout != "NCW" or a.kernel_layout != "OIW" or a.out_layout != "NCW":
            return None
        n, c, w_in = shape(call.args[0])
        w = self._weight(call.args[1], lambda k: np.ascontiguousarray(k[:, :, None, :]))
        if w is None:
            w = self.builder_.emit(relax.op.expand_dims(call.args[1], [2]))
        x = self._into(call.args[0], "h1", (n, c, 1, w_in), lambda e: relax.op.expand_dims(e, [2]))
        left, right = (int(p) for p in a.padding)
        core = relax.op.nn.conv2d(
            x,
            w,
            strides=[1, int(a.strides[0])],
            padding=[0, left, 0, right],
            dilation=[1, int(a.dilation[0])],
            groups=int(a.groups),
            data_layout="NCHW",
            kernel_layout="OIHW",
            out_dtype=a.out_dtype,
        )
        out = shape(call)
        inner_shape = (out[0], out[1], 1, out[2])
        return self._wrap(core, inner_shape, out, "h1", lambda e: relax.op.squeeze(e, [2]))

    def _matmul(self, call):
        x, w = call.args
        xs, out = shape(x), shape(call)
        if len(xs) < 3 or len(shape(w)) != 2:
            return None
        wv = self._val(w)
        constant_like = (
            is_constant(w)
            or is_constant(wv)
            or (op_name(wv) == "relax.dequantize" and is_constant(wv.args[0]))
            or op_name(wv) == "relax.permute_dims"
            and (
                is_constant(wv.args[0]) or isinstance(wv.args[0], relax.Var) and self._val(wv.args[0]) is None
            )
        )
        if not constant_like:
            return None
        m = math.prod(xs[:-1])
        x2 = self._into(x, "flat", (m, xs[-1]), lambda e: relax.op.reshape(e, [m, xs[-1]]))
        core = relax.op.matmul(x2, w, out_dtype=call.attrs.out_dtype)
        return self._wrap(core, (m, out[-1]), out, "flat", lambda e: relax.op.reshape(e, list(out)))

    def _conv_transpose(self, call):
        a = call.attrs
        if (a.data_layout, a.kernel_layout, a.out_layout) != ("NCHW", "IOHW", "NCHW"):
            return None
        groups = int(a.groups)
        w = self._transposed_weight(call.args[1], groups)
        if w is None:
            return None
        n, c, h, w_in = shape(call.args[0])
        kh, kw = shape(call.args[1])[2:]
        g = geometry(
            (h, w_in),
            (kh, kw),
            tuple(int(v) for v in a.strides),
            tuple(int(v) for v in a.dilation),
            tuple(int(v) for v in a.padding),
            tuple(int(v) for v in a.output_padding),
        )
        if g.out_hw != tuple(shape(call)[2:]):
            return None
        x = call.args[0]
        dq = self._val(x)
        if op_name(dq) == "relax.dequantize" and _per_tensor(dq):
            # insert the zero point (the integer for a real 0), then dequantize as before
            zp = float(const_value(dq.args[2]).reshape(()))
            xi = self._zero_insert(dq.args[0], (n, c, h, w_in), g, zp)
            x = self.builder_.emit(relax.Call(dq.op, [xi, *dq.args[1:]], dq.attrs, dq.ty_args))
        else:
            x = self._zero_insert(x, (n, c, h, w_in), g, 0.0)
        return relax.op.nn.conv2d(
            x,
            w,
            strides=[1, 1],
            padding=list(g.pads),
            dilation=list(g.dilation),
            groups=groups,
            data_layout="NCHW",
            kernel_layout="OIHW",
            out_dtype=a.out_dtype,
        )

    def _transposed_weight(self, w, groups: int):
        """The equivalent conv's weight of a constant or dequantize(constant) transposed weight."""
        v = w if is_constant(w) else self._val(w)
        if is_constant(v):
            return relax.const(conv_weight(const_value(v), groups))
        if op_name(v) != "relax.dequantize" or not all(is_constant(e) for e in v.args):
            return None
        scale, zp = const_value(v.args[1]), const_value(v.args[2])
        if scale.size != 1 and int(v.attrs.axis) != 1:
            return None  # per-channel along an axis other than the output channels
        q = relax.const(conv_weight(const_value(v.args[0]), groups))
        s = relax.const(channel_scale(scale, groups).astype(scale.dtype))
        z = relax.const(channel_scale(zp, groups).astype(zp.dtype))
        return self.builder_.emit(relax.op.dequantize(q, s, z, axis=0, out_dtype=str(v.attrs.out_dtype)))

    def _zero_insert(self, x, xs: tuple[int, ...], g, fill: float):
        """x with stride - 1 `fill` values between neighbours, cropped as the geometry says."""
        n, c, h, w = xs
        sh, sw = g.stride
        bb = self.builder_
        if (sh, sw) != (1, 1):
            x = bb.emit(relax.op.reshape(x, [n, c, h, 1, w, 1]))
            x = bb.emit(relax.op.nn.pad(x, [0, 0, 0, 0, 0, 0, 0, sh - 1, 0, 0, 0, sw - 1], pad_value=fill))
            x = bb.emit(relax.op.reshape(x, [n, c, h * sh, w * sw]))
        (hi, wi), (ct, cl, cb, cr) = g.inserted_hw, g.crop
        if (hi, wi) != (h * sh, w * sw) or any(g.crop):
            x = bb.emit(relax.op.strided_slice(x, [2, 3], [ct, cl], [hi - cb, wi - cr]))
        return x

    def _constant_like(self, w) -> bool:
        """A constant, dequantize(constant), or a transposed constant / weight parameter."""
        v = self._val(w)
        if is_constant(w) or is_constant(v):
            return True
        if op_name(v) == "relax.dequantize":
            return is_constant(v.args[0])
        if op_name(v) == "relax.permute_dims":
            src = v.args[0]
            return is_constant(src) or (isinstance(src, relax.Var) and self._val(src) is None)
        return False

    def _operand(self, e, v: _View):
        """Operand `e` of a binary op on view `v`, in inner shape, or None when it does not map."""
        ov = self._view(e)
        if ov is not None and ov.kind == v.kind and ov.outer == v.outer:
            return ov.inner
        s = shape(e)
        if s == v.outer:
            return self.builder_.emit(relax.op.reshape(e, list(v.inner_shape)))
        small = v.small(s)
        if small is None:
            return None
        if is_constant(e):
            return relax.const(const_value(e).reshape(small))
        src = self._val(e)
        if op_name(src) == "relax.reshape":  # a bias reshaped for broadcasting: reshape its source
            return self.builder_.emit(relax.op.reshape(src.args[0], list(small)))
        return self.builder_.emit(relax.op.reshape(e, list(small)))

    def _sink(self, call):
        name = op_name(call)
        if name in _UNARY:
            v = self._view(call.args[0])
            if v is None:
                return None
            if name in ("relax.quantize", "relax.dequantize") and (
                not _per_tensor(call) or int(call.attrs.axis) >= len(v.inner_shape)
            ):
                return None
            new = relax.Call(call.op, [v.inner, *call.args[1:]], call.attrs, call.ty_args)
            return self._wrap(new, v.inner_shape, v.outer, v.kind, self._outer_op(v))
        va, vb = self._view(call.args[0]), self._view(call.args[1])
        v = va or vb
        if v is None or shape(call) != v.outer:
            return None
        args = [self._operand(e, v) for e in call.args]
        if any(a is None for a in args):
            return None
        new = relax.Call(call.op, args, call.attrs, call.ty_args)
        return self._wrap(new, v.inner_shape, v.outer, v.kind, self._outer_op(v))

    @staticmethod
    def _outer_op(v: _View):
        if v.kind == "h1":
            return lambda e: relax.op.squeeze(e, [2])
        return lambda e: relax.op.reshape(e, list(v.outer))


@tvm.transform.module_pass(opt_level=0, name="codax.CanonicalizeLayout")
class CanonicalizeLayout:
    """conv1d -> conv2d with H = 1; N-D x 2-D constant-weight matmul -> 2-D matmul (see module doc)."""

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        rw = _LayoutRewriter(mod)
        for gv, func in list(relax_functions(mod)):
            rw.builder_.update_func(gv, rw.visit_expr(func))
        return rw.builder_.get()
