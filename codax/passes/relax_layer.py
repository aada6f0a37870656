"""What a matched Relax conv2d/matmul is as a codax Layer, and whether the accelerator can run it.

One decision function, `offload_reason`, is used both by the partition `check` (to accept a match)
and by the report (to say why a layer stayed on the host), so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax

from codax.frontend.onnx_graph import weight_key
from codax.ir import Accelerator, Epilogue, Layer, Precision
from codax.passes.relax_util import const_value, dtype, is_constant, op_name, shape

_BITS = {"int8": 8, "uint8": 8, "int4": 4, "uint4": 4, "int16": 16, "uint16": 16, "int32": 32}


@dataclass(frozen=True)
class CoreInfo:
    """A conv2d/matmul call read off the Relax IR."""

    op: str  # conv | matmul
    key: str | None  # weight fingerprint (see codax.frontend.onnx_graph.weight_key)
    precision: Precision | None
    problem: str | None  # why it cannot be a layer at all, else None
    runtime_weight: bool = False  # the second operand is a run-time tensor (attention)


def _var_name(v) -> str:
    return str(getattr(v, "name_hint", None) or v.name)


def _weight(core: relax.Call, w=None):
    w = core.args[1] if w is None else w
    if op_name(w) in ("relax.permute_dims", "relax.expand_dims"):  # shape-only Gemm / Conv1d parameter
        w = w.args[0]
    return w


def core_info(
    core: relax.Call,
    act_dtype: str | None = None,
    weight=None,
    weight_dtype: str | None = None,
    runtime_key: str | None = None,
) -> CoreInfo:
    """Read op kind, weight fingerprint and precision. `act_dtype`: the quantized input's dtype;
    `weight`: the weight expression when core.args[1] is a variable bound to it. A matmul whose
    second operand is a run-time tensor is a layer too: `weight_dtype` is then that tensor's quantized
    dtype and `runtime_key` its link to the ONNX node (codax.frontend.onnx_graph.runtime_matmul_key)."""
    op = "conv" if op_name(core) == "relax.nn.conv2d" else "matmul"
    w = _weight(core, weight)
    runtime = False
    if is_constant(w):
        key = weight_key(const_value(w), op)
    elif isinstance(w, relax.Var) and not isinstance(w, relax.DataflowVar) and _var_name(w).startswith("w_"):
        key = "param:" + _var_name(w)
    elif op == "matmul":
        key, runtime = runtime_key, True
    else:
        return CoreInfo(op, None, None, "its weight is computed at run time, not a constant")
    if runtime:
        problem = runtime_operands_ok(core)
        if problem:
            return CoreInfo(op, key, None, problem, True)
    elif op == "conv":
        a = core.attrs
        if a.data_layout != "NCHW" or a.kernel_layout != "OIHW" or len(shape(core)) != 4:
            return CoreInfo(
                op, key, None, f"conv2d layout {a.data_layout}/{a.kernel_layout} is not NCHW/OIHW"
            )
    elif len(shape(core.args[0])) != 2 or len(shape(w)) != 2:
        return CoreInfo(op, key, None, "matmul is not 2-D x 2-D")
    out = dtype(core)
    if out.startswith("float"):
        if out != "float32" or dtype(core.args[0]) != "float32":
            msg = f"{out} arithmetic (only fp32 and integer layers are supported)"
            return CoreInfo(op, key, None, msg, runtime)
        return CoreInfo(op, key, Precision.float32(), None, runtime)
    wdt = weight_dtype if runtime else dtype(w)  # a run-time operand's quantized dtype, not int32's
    wb, ab = _BITS.get(wdt or ""), _BITS.get(act_dtype or "")
    if wb is None or ab is None:
        return CoreInfo(op, key, None, f"integer layer with {wdt} weights / {act_dtype} inputs", runtime)
    return CoreInfo(op, key, Precision(weight=wb, act=ab, acc=32, out=8, kind="int"), None, runtime)


def runtime_operands_ok(core: relax.Call) -> str | None:
    """None if a matmul of two run-time tensors is [..., N, C] x [..., C, K] with equal batch dims."""
    xs, ws = shape(core.args[0]), shape(core.args[1])
    if len(xs) < 2 or len(ws) < 2 or xs[:-2] != ws[:-2] or xs[-1] != ws[-2]:
        return (
            f"matmul of run-time tensors {list(xs)} x {list(ws)}: only [..., N, C] x [..., C, K] with "
            "equal batch dims runs on the accelerator"
        )
    return None


def offload_reason(info: CoreInfo, accel: Accelerator, analysis: bool = False) -> str | None:
    """None if `accel` can execute the layer, else a sentence saying why not and what would help.
    With `analysis`, a float layer on an integer accelerator is accepted: it is costed at the
    accelerator's precision (codax.hw.precision), not compiled."""
    if info.problem:
        return info.problem
    p = info.precision
    assert p is not None
    if p.kind == "float":
        if not accel.float_ok and not analysis:
            return (
                f"fp32 layer, but accelerator {accel.name} has no float datapath (precision.float: false); "
                "compile with --calibrate SAMPLES to quantize it, give a QDQ model, or use an "
                "accelerator with float: true"
            )
        return None
    if not accel.supports_bits(p.weight, p.act):
        return (
            f"bitwidth int{p.weight} weights / int{p.act} activations exceeds accelerator {accel.name} "
            f"(weights <= {max(accel.weight_bits)}, activations <= {max(accel.act_bits)} bits)"
        )
    return None


def bias_ok(core: relax.Call, bias) -> bool:
    """A bias is a constant broadcast along output channels only ([1,K,1,1]/[K,1,1] or [K]/[1,K])."""
    if not is_constant(bias):
        return False
    k = shape(core)[1]
    s = tuple(np.shape(const_value(bias)))
    if op_name(core) == "relax.nn.conv2d":
        return s in ((1, k, 1, 1), (k, 1, 1))
    return s in ((k,), (1, k))


def residual_ok(add: relax.Call, residual) -> bool:
    """A residual is a run-time activation of exactly the output's shape (no broadcasting)."""
    return not is_constant(residual) and shape(residual) == shape(add)


def layer_from_relax(
    core: relax.Call, name: str, precision: Precision, epilogue: Epilogue, runtime_weight: bool = False
) -> Layer:
    """The loop nest of a Relax conv2d (NCHW/OIHW) or 2-D matmul, independently of ONNX; a matmul of
    two run-time tensors [..., N, C] x [..., C, K] has its batch as the group dim."""
    if runtime_weight:
        xs, ws = shape(core.args[0]), shape(core.args[1])
        return Layer(
            name, N=xs[-2], G=int(np.prod(xs[:-2], dtype=np.int64)), K=ws[-1], C=xs[-1], op="matmul",
            in_hw=(1, 1), precision=precision, epilogue=epilogue, runtime_weight="GCK",
        )  # fmt: skip
    if op_name(core) == "relax.nn.conv2d":
        n, c_in, h, w_ = shape(core.args[0])
        k_out, cg, r, s = shape(core.args[1])
        _, _, p, q = shape(core)
        a = core.attrs
        g = int(a.groups)
        pt, pl, pb, pr = (int(v) for v in a.padding)
        return Layer(
            name, N=n, G=g, K=k_out // g, C=cg, P=p, Q=q, R=r, S=s,
            stride=tuple(int(v) for v in a.strides), dilation=tuple(int(v) for v in a.dilation),
            pads=(pt, pl, pb, pr), in_hw=(h, w_), op="conv", precision=precision, epilogue=epilogue,
        )  # fmt: skip
    n, c = shape(core.args[0])
    k = shape(core)[1]
    return Layer(name, N=n, K=k, C=c, op="matmul", in_hw=(1, 1), precision=precision, epilogue=epilogue)
