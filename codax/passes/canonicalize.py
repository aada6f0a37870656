"""canonicalize: TVM's own simplifications plus two rewrites that make layers pattern-matchable.

- `ClipToRelax`: TVM's ONNX importer lowers Clip to `call_tir(maximum)` / `call_tir(minimum)` at import
  time; this turns them back into `R.nn.relu` / `R.clip` so Relu6 and Clip can be fused as epilogues.
- `CanonicalizeLayout` (codax.passes.layout): conv1d and N-D x 2-D matmuls become conv2d / 2-D matmul.
- `LowerQDQ` (codax.passes.qdq): dequantize -> conv2d/matmul -> quantize chains become integer layers.
It must run before FoldConstant, which would otherwise fold the int8 weights into float constants.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import relax
from tvm.relax import PyExprMutator, expr_functor

from codax.passes.layout import CanonicalizeLayout
from codax.passes.qdq import LowerQDQ
from codax.passes.relax_util import const_value, is_constant, op_name, relax_functions, scalar_const, shape


@expr_functor.mutator
class _ClipRewriter(PyExprMutator):
    def _resolve(self, e):
        if isinstance(e, relax.Var):
            v = self.lookup_binding(e)
            return v if v is not None else e
        return e

    def _minmax(self, call) -> tuple[str, relax.Expr, float] | None:
        """('maximum'|'minimum', x, bound) for a TE-emitted elementwise max/min with a scalar bound."""
        if op_name(call) != "relax.call_tir" or not isinstance(call.args[0], tvm.ir.GlobalVar):
            return None
        name = call.args[0].name_hint
        kind = "maximum" if name.startswith("maximum") else "minimum" if name.startswith("minimum") else None
        args = call.args[1]
        if kind is None or not isinstance(args, relax.Tuple) or len(args.fields) != 2:
            return None
        bound = scalar_const(args.fields[1], self._resolve)
        return None if bound is None else (kind, args.fields[0], bound)

    def visit_call_(self, call):
        call = super().visit_call_(call)
        mm = self._minmax(call)
        if mm is None:
            return call
        kind, x, bound = mm
        if kind == "maximum":
            if bound == 0.0:
                return relax.op.nn.relu(x)
            return relax.op.clip(x, bound, math.inf)
        inner = self._resolve(x)
        if op_name(inner) == "relax.nn.relu":
            return relax.op.clip(inner.args[0], 0.0, bound)
        if op_name(inner) == "relax.clip" and math.isinf(float(inner.args[2].value)):
            return relax.op.clip(inner.args[0], float(inner.args[1].value), bound)
        return relax.op.clip(x, -math.inf, bound)


@expr_functor.mutator
class _LayoutFolder(PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        name = op_name(call)
        if name not in ("relax.reshape", "relax.permute_dims") or not is_constant(call.args[0]):
            return call
        a = const_value(call.args[0])
        if name == "relax.reshape":
            return relax.const(np.ascontiguousarray(a.reshape(shape(call))))
        axes = None if call.attrs.axes is None else [int(v) for v in call.attrs.axes]
        return relax.const(np.ascontiguousarray(np.transpose(a, axes)))


@tvm.transform.module_pass(opt_level=0, name="codax.FoldLayoutConstants")
class FoldLayoutConstants:
    """Fold reshape / permute_dims of constants (bias reshapes, Gemm weight transposes) in numpy.

    FoldConstant would do it too, but compiles a TIR kernel per folded op (seconds on MobileNetV2);
    after this pass it has almost nothing left to do."""

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        rw = _LayoutFolder(mod)
        for gv, func in list(relax_functions(mod)):
            rw.builder_.update_func(gv, rw.visit_expr(func))
        return rw.builder_.get()


@tvm.transform.module_pass(opt_level=0, name="codax.ClipToRelax")
class ClipToRelax:
    """Rewrite importer-lowered Clip (call_tir maximum/minimum with scalar bounds) to relu / clip."""

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        rw = _ClipRewriter(mod)
        for gv, func in list(relax_functions(mod)):
            rw.builder_.update_func(gv, rw.visit_expr(func))
        return rw.builder_.get()


def canonicalize() -> tvm.transform.Pass:
    """The canonicalization pipeline (a Sequential of real passes)."""
    return tvm.transform.Sequential(
        [
            ClipToRelax(),
            CanonicalizeLayout(),
            LowerQDQ(),
            relax.transform.DeadCodeElimination(),
            FoldLayoutConstants(),
            relax.transform.FoldConstant(),
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            relax.transform.DeadCodeElimination(),
        ],
        name="codax.canonicalize",
    )
