"""LowerQDQ: `dequantize -> conv2d/matmul (+ bias) (+ relu/clip) -> quantize` becomes an integer layer.

The rewritten chain is what an integer accelerator computes, written in Relax ops:

    acc = conv2d(astype(xq, int32) - zx, wq, out_dtype=int32) + bq          # int32 accumulation
    y   = quantize(activation(astype(acc, f32) * (sx * sw)), sy, zy)         # requantization epilogue

`sx * sw` is per output channel for per-channel weights. It equals the ONNX QDQ semantics up to the
float rounding of the reference's float accumulation (<= 1 LSB). A chain that does not have this form
(asymmetric weights, bias scale != sx * sw, ...) is left as it is (float, host). A matmul whose second
operand is a run-time tensor (attention) lowers to `matmul(xq - zx, wq - zw)` with both zero points.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax import PyExprMutator, expr_functor

from codax.passes.relax_util import const_value, dtype, is_constant, op_name, relax_functions

_CORES = ("relax.nn.conv2d", "relax.matmul")


@expr_functor.mutator
class _QDQRewriter(PyExprMutator):
    def _val(self, e):
        if isinstance(e, relax.Var):
            v = self.lookup_binding(e)
            return v if v is not None else e
        return e

    def _dequant_const(self, e) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(q, scale, zero_point) of `dequantize(const, const, const)`, else None."""
        e = self._val(e)
        if op_name(e) != "relax.dequantize" or not all(is_constant(a) for a in e.args):
            return None
        return tuple(const_value(a) for a in e.args)  # type: ignore[return-value]

    def _bias(self, e, k: int) -> np.ndarray | None:
        e = self._val(e)
        if op_name(e) == "relax.reshape":
            e = self._val(e.args[0])
        dq = self._dequant_const(e)
        if dq is None or dq[0].dtype != np.int32 or np.any(dq[2] != 0) or dq[0].size != k:
            return None
        return dq[0].reshape(-1), np.broadcast_to(dq[1], (k,)).astype(np.float64)

    def _dequant_runtime(self, e) -> tuple | None:
        """(quantized tensor, scale, zero point) of `dequantize(run-time tensor, const, const)` with a
        per-tensor scale: a matmul's second operand computed at run time (attention's K^T, V)."""
        e = self._val(e)
        if op_name(e) != "relax.dequantize" or is_constant(e.args[0]):
            return None
        if not (is_constant(e.args[1]) and is_constant(e.args[2])):
            return None
        s, z = const_value(e.args[1]), const_value(e.args[2])
        if s.size != 1 or z.size != 1 or dtype(e.args[0]) not in ("int8", "uint8"):
            return None
        return e.args[0], float(s.reshape(())), int(z.reshape(()))

    def _centred(self, t, z: int):
        """An integer operand on its zero point: astype(t, int32) [- z]."""
        bb = self.builder_
        t = bb.emit(relax.op.astype(t, "int32"))
        return bb.emit(relax.op.subtract(t, relax.const(z, "int32"))) if z != 0 else t

    def _requantize(self, acc, scale: np.ndarray, act, q):
        """The epilogue every lowered layer shares: float32(acc) * scale [relu | clip] -> quantize."""
        bb = self.builder_
        y = bb.emit(relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(scale)))
        if act is not None:
            y = bb.emit(
                relax.op.nn.relu(y)
                if op_name(act) == "relax.nn.relu"
                else relax.op.clip(y, act.args[1], act.args[2])
            )
        return relax.op.quantize(y, q.args[1], q.args[2], axis=int(q.attrs.axis), out_dtype=dtype(q))

    def _lower_runtime(self, q, core, act, x_dq, rt):
        """matmul(dq(xq), dq(wq)) -> quantize as an integer matmul of two run-time tensors:
        acc = matmul(xq - zx, wq - zw) in int32, then the same requantization with s = s_x * s_w."""
        bb = self.builder_
        wq, sw, zw = rt
        sx, zx = float(const_value(x_dq.args[1]).reshape(())), int(const_value(x_dq.args[2]).reshape(()))

        xi, wi = self._centred(x_dq.args[0], zx), self._centred(wq, zw)
        acc = bb.emit(relax.op.matmul(xi, wi, out_dtype="int32"))
        scale = np.array([sx * sw], np.float32)
        return self._requantize(acc, scale, act, q)

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if op_name(call) != "relax.quantize":
            return call
        lowered = self._lower(call)
        return call if lowered is None else lowered

    def _lower(self, q):  # noqa: C901 - one linear walk back from the quantize
        if not (is_constant(q.args[1]) and is_constant(q.args[2]) and const_value(q.args[1]).size == 1):
            return None
        f = self._val(q.args[0])
        act = None
        if op_name(f) in ("relax.nn.relu", "relax.clip"):
            act, f = f, self._val(f.args[0])
        bias_expr = None
        if op_name(f) == "relax.add":
            a, b = self._val(f.args[0]), f.args[1]
            if op_name(a) not in _CORES:
                a, b = self._val(f.args[1]), f.args[0]
            bias_expr, f = b, a
        if op_name(f) not in _CORES:
            return None
        core = f
        x_dq = self._val(core.args[0])
        if op_name(x_dq) != "relax.dequantize" or not all(is_constant(a) for a in x_dq.args[1:]):
            return None
        sx, zx = const_value(x_dq.args[1]), const_value(x_dq.args[2])
        if sx.size != 1 or zx.size != 1:
            return None
        rt = self._dequant_runtime(core.args[1]) if op_name(core) == "relax.matmul" else None
        if rt is not None:
            return None if bias_expr is not None else self._lower_runtime(q, core, act, x_dq, rt)
        w_e = self._val(core.args[1])
        transpose = op_name(w_e) == "relax.permute_dims"
        if transpose:
            w_e = w_e.args[0]
        wdq = self._dequant_const(w_e)
        if wdq is None or np.any(wdq[2] != 0) or wdq[0].dtype not in (np.int8, np.uint8):
            return None
        wq, sw = wdq[0], wdq[1].astype(np.float64)
        is_conv = op_name(core) == "relax.nn.conv2d"
        k = wq.shape[0]  # conv OIHW and the matmul weight before transposition both lead with K
        if is_conv and core.attrs.data_layout != "NCHW":
            return None
        if not is_conv and (not transpose or wq.ndim != 2):
            if wq.ndim != 2:
                return None
            k = wq.shape[1]
        sxw = float(sx.reshape(())) * np.broadcast_to(sw.reshape(-1), (k,))
        bias = None
        if bias_expr is not None:
            bias = self._bias(bias_expr, k)
            if bias is None or not np.allclose(bias[1], sxw, rtol=1e-6, atol=0):
                return None
        bb = self.builder_
        xi = self._centred(x_dq.args[0], int(zx.reshape(())))
        if is_conv:
            a = core.attrs
            acc = bb.emit(
                relax.op.nn.conv2d(
                    xi,
                    relax.const(wq),
                    strides=[int(v) for v in a.strides],
                    padding=[int(v) for v in a.padding],
                    dilation=[int(v) for v in a.dilation],
                    groups=int(a.groups),
                    data_layout="NCHW",
                    kernel_layout=str(a.kernel_layout),
                    out_dtype="int32",
                )
            )
            cshape = (1, k, 1, 1)
        else:
            w = np.ascontiguousarray(wq.T) if transpose else wq
            acc = bb.emit(relax.op.matmul(xi, relax.const(w), out_dtype="int32"))
            cshape = (k,)
        if bias is not None:
            acc = bb.emit(relax.op.add(acc, relax.const(bias[0].reshape(cshape).astype("int32"))))
        scale = sxw.astype("float32").reshape(cshape)
        return self._requantize(acc, scale, act, q)


@tvm.transform.module_pass(opt_level=0, name="codax.LowerQDQ")
class LowerQDQ:
    """Rewrite QDQ float chains around conv2d/matmul into integer layers with a requantization epilogue."""

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        rw = _QDQRewriter(mod)
        for gv, func in list(relax_functions(mod)):
            rw.builder_.update_func(gv, rw.visit_expr(func))
        return rw.builder_.get()
