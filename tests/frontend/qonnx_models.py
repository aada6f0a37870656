"""QONNX models for the tests and benchmarks: a Brevitas network exported with `export_qonnx`, and
hand-built single-layer models with every Quant option (rounding mode, signed, narrow, per-channel
scales, zero point), plus the reference values QONNX's own executor gives for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QONNX = "qonnx.custom_op.general"


def brevitas_net(bias: bool = False):
    """4-bit weights and activations (power-of-two scales, as FINN flows use), one layer with 2-bit
    weights, a residual add of two quantized tensors, a max pool, a dense head with an 8-bit output.
    With `bias`, the first convolution and the dense head have Brevitas's default float bias (no bias
    quantizer)."""
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int8ActPerTensorFixedPoint as SignedAct
    from brevitas.quant import Int8WeightPerTensorFixedPoint as Weight
    from brevitas.quant import Uint8ActPerTensorFixedPoint as UnsignedAct
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=SignedAct, bit_width=4, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(3, 8, 3, padding=1, weight_quant=Weight, weight_bit_width=4, bias=bias)
            self.r1 = qnn.QuantReLU(act_quant=UnsignedAct, bit_width=4)
            self.c2 = qnn.QuantConv2d(8, 8, 3, padding=1, weight_quant=Weight, weight_bit_width=2, bias=False)
            self.r2 = qnn.QuantReLU(act_quant=UnsignedAct, bit_width=4)
            self.res = qnn.QuantIdentity(act_quant=UnsignedAct, bit_width=4)
            self.pool = nn.MaxPool2d(2)
            self.fc = qnn.QuantLinear(8 * 3 * 3, 10, weight_quant=Weight, weight_bit_width=4, bias=bias)
            self.out = qnn.QuantIdentity(act_quant=SignedAct, bit_width=8)

        def forward(self, x):
            y = self.r1(self.c1(self.inp(x)))
            s = self.res(self.r2(self.c2(y)) + y)  # the residual add, requantized
            return self.out(self.fc(torch.flatten(self.pool(s), 1)))

    return Net


BREVITAS_INPUT = (1, 3, 6, 6)


def export_brevitas(path: Path, seed: int = 0, bias: bool = False) -> Path:
    """The Brevitas network (`bias`: with float biases) with seeded weights, its activation ranges
    calibrated on a few random batches, exported with brevitas.export.export_qonnx."""
    import torch
    from brevitas.export import export_qonnx

    torch.manual_seed(seed)
    net = brevitas_net(bias)()
    net.train()
    with torch.no_grad():
        for _ in range(8):
            net(torch.randn(8, *BREVITAS_INPUT[1:]))
    net.eval()
    export_qonnx(net, torch.randn(*BREVITAS_INPUT), str(path))
    return path


def quant_node(
    name: str, x: str, y: str, bits: int, *, signed=True, narrow=False, mode="ROUND"
) -> onnx.NodeProto:
    """A QONNX Quant node reading its scale, zero point and bit width from `<name>_s/_z/_b`."""
    return helper.make_node(
        "Quant",
        [x, f"{name}_s", f"{name}_z", f"{name}_b"],
        [y],
        name=name,
        domain=QONNX,
        signed=int(signed),
        narrow=int(narrow),
        rounding_mode=mode,
    )


def quant_params(name: str, scale, zero, bits: int) -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array(np.asarray(scale, np.float32), f"{name}_s"),
        numpy_helper.from_array(np.asarray(zero, np.float32), f"{name}_z"),
        numpy_helper.from_array(np.asarray(bits, np.float32), f"{name}_b"),
    ]


def conv_model(
    *,
    mode: str = "ROUND",
    x_bits: int = 4,
    x_signed: bool = True,
    x_zero: float = 0.0,
    w_bits: int = 4,
    w_narrow: bool = True,
    w_per_channel: bool = True,
    y_bits: int = 4,
    y_signed: bool = False,
    y_narrow: bool = False,
    relu: bool = True,
    bias: bool = False,
    channels_in: int = 3,
    w_axis: int = 0,
    seed: int = 0,
) -> onnx.ModelProto:
    """input -> Quant(x, `mode`) -> Conv(Quant(w, `mode`) [, float bias]) [-> Relu] -> Quant(y, ROUND).
    The weight scales are not powers of two; per channel they differ along weight axis `w_axis` (0: the
    output channels)."""
    rng = np.random.default_rng(seed)
    k, c = 6, channels_in
    w = rng.normal(0, 0.5, (k, c, 3, 3)).astype(np.float32)
    sw = np.abs(np.moveaxis(w, w_axis, 0)).reshape(w.shape[w_axis], -1).max(1) / (2 ** (w_bits - 1) - 1)
    sw = sw.astype(np.float32)
    shape = [1, 1, 1, 1]
    shape[w_axis] = w.shape[w_axis]
    sw = sw.reshape(shape) if w_per_channel else np.float32(sw.max())
    nodes = [
        quant_node("qx", "input", "xq", x_bits, signed=x_signed, mode=mode),
        quant_node("qw", "w", "wq", w_bits, narrow=w_narrow, mode=mode),
        helper.make_node(
            "Conv", ["xq", "wq", *(["b"] if bias else [])], ["c"], name="conv", pads=[1, 1, 1, 1]
        ),
    ]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["r"], name="relu"))
    nodes.append(quant_node("qy", "r" if relu else "c", "out", y_bits, signed=y_signed, narrow=y_narrow))
    inits = [
        numpy_helper.from_array(w, "w"),
        *quant_params("qx", 0.25, x_zero, x_bits),
        *quant_params("qw", sw, 0.0, w_bits),
        *quant_params("qy", 0.375, 0.0, y_bits),
        *([numpy_helper.from_array(rng.normal(0, 0.3, k).astype(np.float32), "b")] if bias else []),
    ]
    g = helper.make_graph(
        nodes,
        "qonnx_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c, 5, 5])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, k, 5, 5])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)])


def bipolar_model() -> onnx.ModelProto:
    """A Conv whose weights are BipolarQuant (1 bit: +-scale) between 4-bit activations."""
    m = conv_model(relu=False, y_signed=True)
    g = m.graph
    (qw,) = [n for n in g.node if n.name == "qw"]
    g.node.remove(qw)
    g.node.insert(0, helper.make_node("BipolarQuant", ["w", "qw_s"], ["wq"], name="qw_bipolar", domain=QONNX))
    return m


def qonnx_tensors(model: onnx.ModelProto | Path, x: np.ndarray | dict) -> dict[str, np.ndarray]:
    """Every tensor of a QONNX model as QONNX's executor (qonnx.core.onnx_exec) computes it, on input
    `x` (or on the graph inputs `x` names)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    mw = ModelWrapper(str(model) if isinstance(model, Path) else model).transform(InferShapes())
    feeds = x if isinstance(x, dict) else {mw.graph.input[0].name: x}
    return execute_onnx(mw, feeds, return_full_exec_context=True)


def quant_steps(
    model: onnx.ModelProto, golden: dict[str, np.ndarray], ref: dict[str, np.ndarray]
) -> tuple[dict[str, float], int]:
    """Per QONNX activation Quant node: the largest difference, in its own quantization steps, between
    the integers the compiled network computes (the golden model's `<output>_qc` tensor) and QONNX's;
    and how many activation Quants the model has (a Quant whose integers the golden model does not
    hold is left out of the steps, so callers compare the two)."""
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out, total = {}, 0
    for n in model.graph.node:
        if n.op_type != "Quant" or n.input[0] in consts:
            continue
        total += 1
        if n.output[0] + "_qc" not in golden:
            continue
        s, z = consts[n.input[1]], consts[n.input[2]]
        want = np.rint(ref[n.output[0]] / s + z)
        out[n.name] = float(np.abs(golden[n.output[0] + "_qc"].astype(np.float64) - want).max())
    return out, total


def quant_steps_per_layer(model: onnx.ModelProto, golden: dict[str, np.ndarray], x: np.ndarray) -> dict:
    """Per QONNX activation Quant node: the largest difference, in its steps, between the compiled
    network's integers and QONNX's executor run on the compiled network's own inputs to that node (each
    activation Quant's output fed from the golden model's integers), so a difference upstream does not
    carry into it. Every activation Quant must have its integers in `golden`."""
    from onnx import TensorProto as TP

    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    feeds, quants = {m.graph.input[0].name: x}, []
    for n in m.graph.node:
        if n.op_type != "Quant" or n.input[0] in consts:
            continue
        y = n.output[0]
        s, z = consts[n.input[1]], consts[n.input[2]]
        ints = golden[y + "_qc"]  # KeyError: the compiled network lost this Quant's integers
        feeds[y] = ((ints.astype(np.float32) - z) * s).astype(np.float32)
        quants.append((n.name, y, s, z, ints))
        n.output[0] = y + "_ref"
        if y in {o.name for o in m.graph.output}:
            m.graph.output.append(helper.make_tensor_value_info(y + "_ref", TP.FLOAT, None))
        m.graph.input.append(helper.make_tensor_value_info(y, TP.FLOAT, list(feeds[y].shape)))
    del m.graph.value_info[:]
    ref = qonnx_tensors(m, feeds)
    return {
        name: float(np.abs(ints.astype(np.float64) - np.rint(ref[y + "_ref"] / s + z)).max())
        for name, y, s, z, ints in quants
    }


def qdq_model() -> onnx.ModelProto:
    """A QDQ conv as codax's search writes one (docs/bitwidths.md): INT4 weights, a 6-bit input
    (`Q -> Clip[-32, 31] -> DQ`), a ReLU output clipped to 4 bits, an int32 bias."""
    rng = np.random.default_rng(0)
    w = rng.integers(-7, 8, (4, 2, 3, 3)).astype(np.int8)
    i = numpy_helper.from_array
    inits = [
        onnx.helper.make_tensor("w", TensorProto.INT4, w.shape, w.reshape(-1).tolist()),
        i(np.float32(0.05), "w_s"),
        onnx.helper.make_tensor("w_z", TensorProto.INT4, [], [0]),
        i(rng.integers(-50, 50, 4).astype(np.int32), "b"),
        i(np.float32(0.1 * 0.05), "b_s"),
        i(np.int32(0), "b_z"),
        i(np.float32(0.1), "x_s"),
        i(np.int8(0), "x_z"),
        i(np.int8(-32), "x_lo"),
        i(np.int8(31), "x_hi"),
        i(np.float32(0.2), "y_s"),
        i(np.int8(0), "y_z"),
        i(np.int8(0), "y_lo"),
        i(np.int8(7), "y_hi"),
    ]
    mk = helper.make_node
    nodes = [
        mk("QuantizeLinear", ["input", "x_s", "x_z"], ["xq"], name="x_q"),
        mk("Clip", ["xq", "x_lo", "x_hi"], ["xc"], name="x_clip"),
        mk("DequantizeLinear", ["xc", "x_s", "x_z"], ["xd"], name="x_dq"),
        mk("DequantizeLinear", ["w", "w_s", "w_z"], ["wd"], name="w_dq"),
        mk("DequantizeLinear", ["b", "b_s", "b_z"], ["bd"], name="b_dq"),
        mk("Conv", ["xd", "wd", "bd"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        mk("Relu", ["c"], ["r"], name="relu"),
        mk("QuantizeLinear", ["r", "y_s", "y_z"], ["yq"], name="y_q"),
        mk("Clip", ["yq", "y_lo", "y_hi"], ["yc"], name="y_clip"),
        mk("DequantizeLinear", ["yc", "y_s", "y_z"], ["out"], name="y_dq"),
    ]
    g = helper.make_graph(
        nodes,
        "qdq_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 5, 5])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def trunc_model(
    version: int, mode: str = "FLOOR", *, signed: bool = True, opset: int | None = None
) -> onnx.ModelProto:
    """input -> Quant (8-bit, `signed`, scale 1/16) -> Trunc to 4 bits (QONNX Trunc v1: 5 inputs, v2: 6),
    the QONNX domain imported at opset `opset` (default `version`)."""
    s = np.float32(1 / 16)
    inits = [
        *quant_params("q8", s, 0.0, 8),
        numpy_helper.from_array(np.float32(8), "t_in_bits"),
        numpy_helper.from_array(np.float32(4), "t_out_bits"),
        numpy_helper.from_array(np.float32(s * 16), "t_out_scale"),
    ]
    ins = ["x8", "q8_s", "q8_z", "t_in_bits"] + (
        ["t_out_bits"] if version == 1 else ["t_out_scale", "t_out_bits"]
    )
    nodes = [
        quant_node("q8", "input", "x8", 8, signed=signed),
        helper.make_node("Trunc", ins, ["out"], name="trunc", domain=QONNX, rounding_mode=mode),
    ]
    g = helper.make_graph(
        nodes,
        "qonnx_trunc",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 4, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 4, 4])],
        inits,
    )
    return helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX, opset or version)]
    )


def single_node_model(
    nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], shape=(1, 4, 4, 4), qonnx_opset: int = 1
) -> onnx.ModelProto:
    """A graph `input` -> `nodes` -> `out` of one shape, the QONNX domain at `qonnx_opset`."""
    g = helper.make_graph(
        nodes,
        "qonnx_nodes",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, list(shape))],
        inits,
    )
    return helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX, qonnx_opset)]
    )
