"""The one output-checking rule (codax.verify): bit-exact against the golden integer model, at most one
quantization step from ONNX Runtime, on a layer built so that ONNX Runtime's float reference rounds a
tie the other way from the integer pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

from codax.flow import References, check_compiled, compile_model, run_compiled
from codax.verify import check_output, output_steps

# 1x1 convolution with one weight: y = 3 * x at scale sx * sw, requantized to sy. With these scales the
# float reference (x*sx) * (3*sw) / sy lands on the other side of a rounding tie from the integer
# pipeline's float32(3 * xq) * float32(sw * sx / sy) for some xq in 0..255.
SX, SW, SY, WQ = 0.01, 0.05, 0.02, 3


def _tie_model():
    inits = [
        nh.from_array(np.array(SX, np.float32), "sx"),
        nh.from_array(np.array(0, np.uint8), "zx"),
        nh.from_array(np.array([[[[WQ]]]], np.int8), "wq"),
        nh.from_array(np.array([SW], np.float32), "sw"),
        nh.from_array(np.array([0], np.int8), "zw"),
        nh.from_array(np.array(SY, np.float32), "sy"),
        nh.from_array(np.array(0, np.uint8), "zy"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "sx", "zx"], ["xq"], name="qx"),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xf"], name="dqx"),
        helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wf"], name="dqw", axis=0),
        helper.make_node("Conv", ["xf", "wf"], ["y"], name="conv"),
        helper.make_node("QuantizeLinear", ["y", "sy", "zy"], ["yq"], name="qy"),
        helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["output"], name="dqy"),
    ]
    g = helper.make_graph(
        nodes,
        "tie",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 16, 16])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_rounding_tie_is_bit_exact_vs_golden_and_one_step_vs_onnxruntime(tmp_path):
    import onnx

    path = tmp_path / "tie.onnx"
    onnx.save(_tie_model(), str(path))
    res = compile_model(path, "zcu102-int8", tmp_path / "out")
    assert [la["layer"] for la in res.report.to_dict()["layers"]] == ["conv"]  # the conv is offloaded
    x = (np.arange(256, dtype=np.float32) * np.float32(SX)).reshape(1, 1, 16, 16)
    refs = References(res.out_dir)
    assert refs.steps == [pytest.approx(SY)]
    got = run_compiled(res.out_dir, x)[0]
    ((vs_golden, vs_ort),) = check_compiled(res.out_dir, x, [got], refs)
    # the csim output equals the golden integer model bit for bit
    assert np.array_equal(got, refs.golden(x)[0])
    assert vs_golden.ok and vs_golden.mismatching == 0 and vs_golden.max_steps == 0
    # ... and sits one step from ONNX Runtime's float reference on the tie, which the rule accepts
    assert vs_ort.ok and vs_ort.max_steps == 1 and vs_ort.off_by_one_step >= 1
    assert (
        "1 element(s) one step off" in vs_ort.line()
        or f"{vs_ort.off_by_one_step} element(s)" in vs_ort.line()
    )


def test_check_output_rule():
    ref = np.array([0.0, 0.5, 1.0, 1.5], np.float32)
    one = check_output(ref + np.float32(0.5) * (np.arange(4) == 2), ref, 0.5, "onnxruntime")
    assert one.ok and one.max_steps == 1 and one.off_by_one_step == 1
    two = check_output(ref + np.float32(1.0) * (np.arange(4) == 2), ref, 0.5, "onnxruntime")
    assert not two.ok and two.max_steps == 2 and two.mismatching == 1
    gold = check_output(ref + np.float32(0.5) * (np.arange(4) == 2), ref, 0.5, "golden")
    assert not gold.ok and gold.mismatching == 1  # any difference from golden fails
    flt = check_output(ref * np.float32(1 + 1e-6), ref, None, "onnxruntime")
    assert flt.ok and flt.step is None
    assert not check_output(ref * np.float32(1.01), ref, None, "onnxruntime").ok
    assert not check_output(ref[:3], ref, 0.5, "golden").ok  # a shape mismatch fails


def test_output_steps_reads_the_dequantize_scale():
    assert output_steps(_tie_model()) == [pytest.approx(SY)]
    m = _tie_model()
    m.graph.output[0].name = "y"  # a float output not produced by DequantizeLinear
    assert output_steps(m) == [None]
