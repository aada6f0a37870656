"""Single-layer ONNX models: parameters extracted by codegen.params, run in C-simulation, compared with
ONNX Runtime (optimizations disabled). Float: rtol 1e-4. QDQ (quantize_static, QUInt8 activations,
QInt8 weights): within 1 LSB, mismatch rate printed; csim equals the golden model bit for bit."""

import numpy as np
import pytest

from codax.codegen import from_onnx, golden_layer, run_layer
from codax.errors import ModelError
from codax.hw import load_accelerator
from codax.hw.mapper.naive import naive_mapping
from codax.ir import Epilogue, Precision, conv2d, dense
from tests.codegen.onnx_models import conv_model, gemm_model, ort_run, quantize
from tests.hw.accels import one_level

ACC = load_accelerator("zc706-int8")


def test_float_conv_vs_ort():
    rng = np.random.default_rng(0)
    m = conv_model(rng, 4, 6, 9, 3, stride=2, pad=1, relu=True)
    layer = conv2d("c", c_in=4, c_out=6, hw=(9, 9), kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1),
                   precision=Precision.float32(), epilogue=Epilogue(bias=True, activation="relu"),
                   onnx_node="conv0")  # fmt: skip
    p = from_onnx(m, layer)
    x = rng.standard_normal((1, 4, 9, 9)).astype(np.float32)
    facc = one_level(4, 4, ["K", "P", "G"], ["C", "Q"], float_ok=True)  # every PE with an fp32 MAC
    y, _ = run_layer(layer, facc, naive_mapping(layer, facc), p, x)
    np.testing.assert_allclose(y, ort_run(m, {"x": x}), rtol=1e-4, atol=1e-5)


def _qdq_case(tmp_path, model, layer, x_shape, per_channel, seed=0):
    rng = np.random.default_rng(seed)
    calib = [rng.standard_normal(x_shape).astype(np.float32) for _ in range(8)]
    q = quantize(model, calib, tmp_path, per_channel=per_channel)
    p = from_onnx(q, layer)
    assert not p.x_signed and p.w_signed and p.kind == "int"
    x = rng.standard_normal(x_shape).astype(np.float32)
    xq = np.clip(np.rint(x / p.x_scale) + p.x_zero_point, 0, 255).astype(np.uint8)
    y, _ = run_layer(layer, ACC, naive_mapping(layer, ACC), p, xq.reshape(x_shape))
    assert np.array_equal(y, golden_layer(layer, p, xq))
    ref = ort_run(q, {"x": x})
    ref_q = np.clip(np.rint(ref / p.y_scale) + p.y_zero_point, 0, 255).astype(np.int64)
    diff = np.abs(y.astype(np.int64).reshape(ref_q.shape) - ref_q)
    print(
        f"{layer.name} per_channel={per_channel}: mismatch rate {np.mean(diff > 0):.4%}, max {diff.max()} LSB"
    )
    assert diff.max() <= 1


@pytest.mark.parametrize("per_channel", [False, True])
def test_qdq_conv_vs_ort(tmp_path, per_channel):
    rng = np.random.default_rng(1)
    m = conv_model(rng, 4, 6, 8, 3, pad=1, relu=True)
    layer = conv2d("qc", c_in=4, c_out=6, hw=(8, 8), kernel=(3, 3), pads=(1, 1, 1, 1),
                   epilogue=Epilogue(bias=True, activation="relu", requant=True),
                   onnx_node="conv0")  # fmt: skip
    _qdq_case(tmp_path, m, layer, (1, 4, 8, 8), per_channel)


def test_qdq_depthwise_vs_ort(tmp_path):
    rng = np.random.default_rng(2)
    m = conv_model(rng, 6, 6, 7, 3, stride=2, pad=1, group=6)
    layer = conv2d("qdw", c_in=6, c_out=6, hw=(7, 7), kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1),
                   groups=6, epilogue=Epilogue(bias=True, requant=True), outputs=("y",))  # fmt: skip
    _qdq_case(tmp_path, m, layer, (1, 6, 7, 7), True)


def test_qdq_gemm_vs_ort(tmp_path):
    rng = np.random.default_rng(3)
    m = gemm_model(rng, 24, 10)
    layer = dense("qfc", c_in=24, c_out=10, epilogue=Epilogue(bias=True, requant=True), onnx_node="fc0")
    _qdq_case(tmp_path, m, layer, (1, 24), False)


def test_missing_node_is_a_model_error():
    m = conv_model(np.random.default_rng(0), 2, 2, 4, 1)
    layer = conv2d("nope", c_in=2, c_out=2, hw=(4, 4), kernel=(1, 1), onnx_node="absent")
    with pytest.raises(ModelError, match="onnx_node"):
        from_onnx(m, layer)
