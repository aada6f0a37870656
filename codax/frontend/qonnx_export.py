"""A QDQ model (a search's net.onnx) written as QONNX, the format FINN and hls4ml read.

qonnx's own QCDQToQuant fuses `QuantizeLinear [-> Clip] -> DequantizeLinear` chains and lone weight
DequantizeLinears into `Quant` nodes. Two things are done around it so the widths survive:
- INT4 / UINT4 tensors (which QCDQToQuant does not read) are first widened to 8-bit ones holding the
  same values, with a Clip to the 4-bit range (codax.frontend.widths, as the compiler reads them);
- a weight's Quant states the width its integers need (6-bit weights are stored as INT8, which
  QCDQToQuant would call 8 bits), the width the compiler reads from the QDQ model.
The result is checked: QONNX's executor on it equals ONNX Runtime on the QDQ model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from codax.errors import ModelError
from codax.frontend.qonnx_lower import DOMAINS
from codax.frontend.widths import weight_widths, widen_int4


def qdq_to_qonnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """The QONNX model equal to QDQ `model` (weights, activations and their widths)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.qcdq_to_qonnx import QCDQToQuant

    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise ModelError(
            "the model holds no QuantizeLinear / DequantizeLinear: a float model has no QONNX form"
        )
    m = onnx.ModelProto()
    m.CopyFrom(model)
    widen_int4(m)
    _batch_one(m)
    _unsigned_when_clipped_at_zero(m)
    weight_bits = weight_widths(m)  # by initializer name, before QCDQToQuant rescales them to floats
    try:
        mw = ModelWrapper(m).transform(InferShapes()).transform(QCDQToQuant())
    except Exception as e:  # qonnx raises plain exceptions of many kinds
        raise ModelError(f"qonnx could not convert the QDQ model to QONNX: {type(e).__name__}: {e}") from None
    left = [n.name for n in mw.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if left:
        raise ModelError(
            f"QuantizeLinear / DequantizeLinear node(s) {left[:3]} have no QONNX form (a scale or zero point "
            "computed at run time, or a Q and DQ with different scales); the QDQ model stays the hand-off"
        )
    for n in mw.graph.node:
        if n.domain in DOMAINS and n.op_type == "Quant" and n.input[0] in weight_bits:
            bits = weight_bits[n.input[0]]
            if bits <= 8:
                mw.set_initializer(n.input[3] + "_stated", np.asarray(bits, np.float32))
                n.input[3] = n.input[3] + "_stated"
    return mw.model


def _batch_one(m: onnx.ModelProto) -> None:
    """A dynamic batch (the first dim of the graph's inputs and outputs; a search exports one) pinned to
    1, the batch codax compiles for: FINN / hls4ml and qonnx's executor need static shapes. Another
    dynamic dim is an error. The value infos are dropped (qonnx's shape inference redoes them)."""
    for vi in [*m.graph.input, *m.graph.output]:
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                continue
            if i != 0:
                raise ModelError(
                    f"tensor {vi.name!r} has a dynamic dim {i} ({d.dim_param or 'unnamed'}); the QONNX "
                    "export pins only the batch (dim 0) to 1. Export the model with static shapes"
                )
            d.ClearField("dim_param")
            d.dim_value = 1
    del m.graph.value_info[:]


def _unsigned_when_clipped_at_zero(m: onnx.ModelProto) -> None:
    """`Q(s, int8 0) -> Clip[0, hi]` (a ReLU's output) as `Q(s, uint8 0) -> Clip[0, hi]`: the same values,
    and QCDQToQuant reads it as an unsigned width (it would read a signed tensor clipped to [0, 7] as
    signed 3-bit, [-4, 3])."""
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for x in n.input:
            users.setdefault(x, []).append(n)
    for q in g.node:
        zp = inits.get(q.input[2]) if q.op_type == "QuantizeLinear" and len(q.input) > 2 else None
        if zp is None or zp.data_type != onnx.TensorProto.INT8 or numpy_helper.to_array(zp).any():
            continue
        (clip, *more) = users.get(q.output[0], [None])
        if more or clip is None or clip.op_type != "Clip" or len(clip.input) < 3:
            continue
        lo, hi = (inits.get(b) for b in clip.input[1:3])
        if lo is None or hi is None or int(numpy_helper.to_array(lo)) != 0:
            continue
        dqs = users.get(clip.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" or d.input[2] != q.input[2] for d in dqs):
            continue
        name = q.input[2] + "_unsigned"
        g.initializer.extend(
            [
                numpy_helper.from_array(np.zeros(numpy_helper.to_array(zp).shape, np.uint8), name),
                numpy_helper.from_array(np.uint8(0), clip.input[1] + "_unsigned"),
                numpy_helper.from_array(np.uint8(numpy_helper.to_array(hi)), clip.input[2] + "_unsigned"),
            ]
        )
        for n in (q, *dqs):
            n.input[2] = name
        clip.input[1], clip.input[2] = clip.input[1] + "_unsigned", clip.input[2] + "_unsigned"


def export_qonnx(qdq_path: str | Path, out_path: str | Path) -> Path:
    """Write QDQ model `qdq_path` as QONNX at `out_path`, after checking that QONNX's executor on it
    gives ONNX Runtime's outputs of the QDQ model on a random input."""
    qdq = onnx.load(str(qdq_path))
    q = qdq_to_qonnx(qdq)
    _check_equal(qdq, q)
    out = Path(out_path)
    onnx.save(q, str(out))
    return out


def _check_equal(qdq: onnx.ModelProto, q: onnx.ModelProto) -> None:
    import onnxruntime as ort
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    inits = {t.name for t in qdq.graph.initializer}
    feeds = {}
    rng = np.random.default_rng(0)
    for i in qdq.graph.input:
        if i.name in inits:
            continue
        shape = [d.dim_value or 1 for d in i.type.tensor_type.shape.dim]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(qdq.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(
        None, feeds
    )
    try:
        got = execute_onnx(ModelWrapper(q), feeds)
    except Exception as e:  # qonnx raises plain exceptions of many kinds
        raise ModelError(
            f"QONNX's executor could not run the QONNX export ({type(e).__name__}: {str(e)[:200]}); the QDQ "
            "model stays the hand-off"
        ) from None
    for o, w in zip(q.graph.output, want):
        if not np.array_equal(np.asarray(got[o.name]), w):
            diff = float(np.abs(np.asarray(got[o.name], np.float64) - w).max())
            raise ModelError(
                f"the QONNX export of the QDQ model differs from it on output {o.name!r} (max |diff| "
                f"{diff:g}); the QDQ model stays the hand-off"
            )
