"""Layout canonicalization: Conv1d, ConvTranspose and token matmuls ([B, T, C] x [C, K]) become ordinary
conv2d / 2-D dense layers that are offloaded, with the partitioned module computing what ONNX Runtime
computes and the layer shapes and MACs equal to a count made straight from the ONNX attributes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from codax.frontend import extract_graph, import_onnx
from codax.frontend.conv_transpose import conv_weight, geometry, zero_insert
from codax.passes import build_report, pipeline
from codax.passes.canonicalize import canonicalize
from codax.passes.relax_util import op_name
from tests.passes.helpers import float_accel, ort_run, relax_run

F = onnx.TensorProto.FLOAT


def _model(nodes, x_shape, inits, path):
    g = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("x", F, list(x_shape))],
        [helper.make_tensor_value_info("y", F, None)],
        inits,
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _ops(mod) -> set[str]:
    out = set()
    for block in mod["main"].body.blocks:
        for b in block.bindings:
            if op_name(b.value):
                out.add(op_name(b.value))
    return out


def _check(path, x, layer_name, macs):
    """Offloaded, matching ONNX Runtime, with the expected MACs; returns the layer."""
    mod = canonicalize()(import_onnx(path))
    assert not _ops(mod) & {"relax.nn.conv1d", "relax.nn.conv2d_transpose"}
    ref = pipeline(float_accel(), offload=False, map_layers=False)(import_onnx(path))
    np.testing.assert_allclose(relax_run(ref, x), ort_run(path, {"x": x})[0], rtol=1e-4, atol=1e-5)
    part = pipeline(float_accel(), map_layers=False)(import_onnx(path))
    rep = build_report(part, float_accel())
    row = next(r for r in rep.nodes if r.node == layer_name)
    assert row.placement == "accelerator", row.reason
    layer = extract_graph(part).nodes[layer_name]
    assert layer.macs == macs
    assert rep.totals["model_macs"] == macs  # the model has no other MAC node
    return layer


@settings(max_examples=6, deadline=None)
@given(
    c_in=st.sampled_from([2, 4]),
    c_out=st.sampled_from([4, 6]),
    k=st.integers(1, 5),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    pads=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    depthwise=st.booleans(),
    relu=st.booleans(),
)
def test_conv1d_is_an_h1_conv2d_layer(
    tmp_path_factory, c_in, c_out, k, stride, dilation, pads, depthwise, relu
):
    length = 12
    groups = c_in if depthwise else 1
    c_out = c_in if depthwise else c_out
    rng = np.random.default_rng(0)
    w = rng.standard_normal((c_out, c_in // groups, k)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    conv = helper.make_node(
        "Conv",
        ["x", "w", "b"],
        ["c" if relu else "y"],
        name="conv",
        strides=[stride],
        dilations=[dilation],
        pads=list(pads),
        group=groups,
    )
    nodes = [conv] + ([helper.make_node("Relu", ["c"], ["y"], name="relu")] if relu else [])
    path = _model(
        nodes,
        (1, c_in, length),
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
        tmp_path_factory.mktemp("c1") / "m.onnx",
    )
    out = (length + sum(pads) - dilation * (k - 1) - 1) // stride + 1
    x = rng.standard_normal((1, c_in, length)).astype(np.float32)
    layer = _check(path, x, "conv", out * c_out * (c_in // groups) * k)
    assert (layer.P, layer.Q, layer.R, layer.S, layer.G) == (1, out, 1, k, groups)
    assert layer.stride == (1, stride) and layer.pads == (0, pads[0], 0, pads[1])
    assert layer.epilogue.bias and layer.epilogue.activation == ("relu" if relu else None)


# ConvTranspose attributes: kernel, stride, dilation, pads (t, l, b, r), output padding, groups
CONV_TRANSPOSE_ARGS = dict(
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    pads=st.tuples(*[st.integers(0, 3)] * 4),
    out_pad=st.integers(0, 2),
    groups=st.sampled_from([1, 2]),
)


@settings(max_examples=6, deadline=None)
@given(**CONV_TRANSPOSE_ARGS)
@example(k=2, stride=2, dilation=1, pads=(2, 1, 3, 0), out_pad=1, groups=1)  # pads beyond the halo: a crop
@example(k=3, stride=2, dilation=1, pads=(1, 1, 1, 1), out_pad=1, groups=2)  # the U-Net up-sampling
def test_conv_transpose_is_a_conv_over_the_zero_inserted_input(
    tmp_path_factory, k, stride, dilation, pads, out_pad, groups
):
    out_pad = min(out_pad, stride - 1)  # TVM imports output_padding < stride only
    c_in, c_out, hw = 4, 4, (3, 4)
    geo = geometry(hw, (k, k), (stride, stride), (dilation, dilation), pads, (out_pad, out_pad))
    if min(geo.out_hw) < 1 or min(geo.in_hw) < 1:
        return
    rng = np.random.default_rng(1)
    w = rng.standard_normal((c_in, c_out // groups, k, k)).astype(np.float32)
    node = helper.make_node(
        "ConvTranspose",
        ["x", "w"],
        ["y"],
        name="up",
        strides=[stride] * 2,
        dilations=[dilation] * 2,
        pads=list(pads),
        output_padding=[out_pad] * 2,
        group=groups,
    )
    path = _model(
        [node], (1, c_in, *hw), [numpy_helper.from_array(w, "w")], tmp_path_factory.mktemp("ct") / "m.onnx"
    )
    x = rng.standard_normal((1, c_in, *hw)).astype(np.float32)
    macs = int(np.prod(geo.out_hw)) * c_out * (c_in // groups) * k * k  # as the conv over the zeros runs
    layer = _check(path, x, "up", macs)
    assert (layer.P, layer.Q) == geo.out_hw and layer.stride == (1, 1) and layer.G == groups


@example(k=2, stride=3, dilation=1, pads=(2, 0, 3, 1), out_pad=2, groups=2)
@settings(max_examples=20, deadline=None)
@given(**CONV_TRANSPOSE_ARGS)
def test_zero_insert_and_conv_weight_equal_torch_conv_transpose(k, stride, dilation, pads, out_pad, groups):
    """The host's zero insertion (frontend.conv_transpose.zero_insert) and the layer's convolution
    compute torch's conv_transpose2d (asymmetric pads taken from its symmetric-pad output)."""
    out_pad = min(out_pad, max(stride, dilation) - 1)
    geo = geometry((3, 4), (k, k), (stride, stride), (dilation, dilation), pads, (out_pad, out_pad))
    if min(geo.out_hw) < 1 or min(geo.in_hw) < 1:
        return
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 4, 3, 4))
    w = rng.standard_normal((4, 6 // groups, k, k))
    full = torch.nn.functional.conv_transpose2d(
        torch.tensor(x), torch.tensor(w), stride=stride, dilation=dilation, groups=groups
    ).numpy()
    full = np.pad(full, ((0, 0), (0, 0), (0, out_pad), (0, out_pad)))
    want = full[:, :, pads[0] : full.shape[2] - pads[2], pads[1] : full.shape[3] - pads[3]]
    z = torch.tensor(zero_insert(x, geo))
    got = torch.nn.functional.conv2d(
        torch.nn.functional.pad(z, (geo.pads[1], geo.pads[3], geo.pads[0], geo.pads[2])),
        torch.tensor(conv_weight(w, groups)),
        dilation=dilation,
        groups=groups,
    ).numpy()
    assert got.shape[2:] == geo.out_hw
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_conv_weight_against_torch():
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.standard_normal((1, 6, 5, 5)).astype(np.float32))
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    want = torch.nn.functional.conv_transpose2d(x, torch.tensor(w), stride=2, groups=3).numpy()
    z = torch.zeros(1, 6, 9, 9)
    z[:, :, ::2, ::2] = x
    got = torch.nn.functional.conv2d(z, torch.tensor(conv_weight(w, 3)), padding=2, groups=3).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_token_matmul_is_a_dense_layer_with_bias_residual_and_relu(tmp_path):
    t, d, k = 5, 8, 8
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.standard_normal((d, k)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(k).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "b"], ["mb"], name="bias"),
        helper.make_node("Add", ["mb", "x"], ["r"], name="res"),
        helper.make_node("Relu", ["r"], ["y"], name="relu"),
    ]
    path = _model(nodes, (2, t, d), inits, tmp_path / "m.onnx")
    x = rng.standard_normal((2, t, d)).astype(np.float32)
    layer = _check(path, x, "fc", 2 * t * d * k)
    assert (layer.N, layer.C, layer.K, layer.op) == (2 * t, d, k, "matmul")
    assert layer.epilogue.bias and layer.epilogue.residual == "x" and layer.epilogue.activation == "relu"


@pytest.mark.parametrize("name", ["keyword", "decoder", "encoder"])
def test_quantized_models_lower_to_integer_layers_matching_ort(tmp_path, name):
    """ONNX Runtime's QDQ versions: the same canonical layers, lowered to integer layers with
    requantization, computing what ONNX Runtime computes within one output quantization step."""
    from tests.frontend.any_models import export, quantize, samples
    from tests.passes.helpers import int8_accel

    path = quantize(export(name, tmp_path / "f.onnx"), tmp_path / "q.onnx", samples(name, 16))
    accel = int8_accel()
    part = pipeline(accel, map_layers=False)(import_onnx(path))
    rows = {r.node: r for r in build_report(part, accel).nodes}
    graph = extract_graph(part)
    layers = [n for n, r in rows.items() if r.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")]
    offloaded = [n for n in layers if rows[n].placement == "accelerator"]
    assert all(graph.nodes[n].precision.kind == "int" and graph.nodes[n].epilogue.requant for n in offloaded)
    assert offloaded == layers  # the encoder's attention matmuls too (run-time second operand)
    m = onnx.load(str(path))
    last = next(n for n in m.graph.node if n.output[0] == m.graph.output[0].name)
    step = float(numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == last.input[1])))
    ref = pipeline(accel, offload=False, map_layers=False)(import_onnx(path))
    x = samples(name, 1, seed=9)
    got, want = relax_run(ref, x), ort_run(path, {"input": x})[0]
    assert np.abs(got - want).max() <= step * (1 + 1e-5)
