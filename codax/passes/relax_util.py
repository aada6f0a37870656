"""Small helpers for reading Relax expressions (this TVM's constants are `GenericConst`)."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

_CONSTS = tuple(
    c
    for c in (getattr(tvm.ir.expr, "GenericConst", None), getattr(tvm.ir.expr, "Constant", None))
    if c is not None
)


def is_constant(e) -> bool:
    return isinstance(e, _CONSTS)


def const_value(e) -> np.ndarray:
    return e.value.numpy()


def op_name(e) -> str | None:
    """'relax.nn.conv2d' for a call of that op, else None."""
    if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op):
        return e.op.name
    return None


def dtype(e) -> str:
    return str(e.ty.dtype.dtype if hasattr(e.ty.dtype, "dtype") else e.ty.dtype)


def shape(e) -> tuple[int, ...]:
    return tuple(int(v) for v in e.ty.shape.values)


def scalar_const(e, resolve=lambda v: v) -> float | None:
    """The value of a scalar constant, seeing through TVM's `where(isnan(c), +-inf, c)` Clip guard."""
    e = resolve(e)
    if is_constant(e) and const_value(e).size == 1:
        return float(const_value(e).reshape(()))
    if op_name(e) == "relax.where":
        cond, inf, c = (resolve(a) for a in e.args)
        if op_name(cond) == "relax.isnan" and is_constant(c):
            v = float(const_value(c).reshape(()))
            return float(const_value(inf).reshape(())) if np.isnan(v) else v
    return None


def quantized_source(e, resolve=lambda v: v):
    """q of an integer layer's operand `astype(q) [- z]` (`resolve` sees through bound variables),
    else None."""
    e = resolve(e)
    if op_name(e) == "relax.subtract":
        e = resolve(e.args[0])
    return e.args[0] if op_name(e) == "relax.astype" else None


def relax_functions(mod: tvm.IRModule):
    for gv, f in mod.functions_items():
        if isinstance(f, relax.Function):
            yield gv, f


def attr(func, name: str, default=None):
    if func.attrs is None or name not in func.attrs:
        return default
    return func.attrs[name]
