"""The one checking rule (codax.verify): outputs bit-exact against the golden integer model; each layer
within one quantization step of ONNX Runtime run on the golden model's own input; end to end against
ONNX Runtime reported. On layers built so that ONNX Runtime's float reference rounds a tie the other
way from the integer pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

from codax.flow import References, check_compiled, compile_model, run_compiled
from codax.verify import EXACT_RULE, FLOAT_RULE, REPORTED, STEP_RULE, compare, output_steps

# 1x1 convolution with one weight: y = 3 * x at scale sx * sw, requantized to sy. With these scales the
# float reference (x*sx) * (3*sw) / sy lands on the other side of a rounding tie from the integer
# pipeline's float32(3 * xq) * float32(sw * sx / sy) for some xq in 0..255.
SX, SW, SY, WQ = 0.01, 0.05, 0.02, 3
# the second layer: SY * SW2 * W2 / SZ = 2 exactly, so it maps its input's steps to twice as many
W2, SW2, SZ = 4, 0.05, 0.002


def _tie_model(second_layer: bool = False):
    """The tie layer; with `second_layer`, a second 1x1 convolution that doubles its input in steps
    (SY * SW2 * W2 / SZ = 2), so a one-step difference at the first layer's output becomes two at the
    network's output while the second layer itself computes exactly."""
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
        helper.make_node(
            "DequantizeLinear", ["yq", "sy", "zy"], ["yf" if second_layer else "output"], name="dqy"
        ),
    ]
    if second_layer:
        inits += [
            nh.from_array(np.array([[[[W2]]]], np.int8), "w2q"),
            nh.from_array(np.array([SW2], np.float32), "sw2"),
            nh.from_array(np.array([0], np.int8), "zw2"),
            nh.from_array(np.array(SZ, np.float32), "sz"),
            nh.from_array(np.array(0, np.uint8), "zz"),
        ]
        nodes += [
            helper.make_node("DequantizeLinear", ["w2q", "sw2", "zw2"], ["w2f"], name="dqw2", axis=0),
            helper.make_node("Conv", ["yf", "w2f"], ["z"], name="conv2"),
            helper.make_node("QuantizeLinear", ["z", "sz", "zz"], ["zq"], name="qz"),
            helper.make_node("DequantizeLinear", ["zq", "sz", "zz"], ["output"], name="dqz"),
        ]
    g = helper.make_graph(
        nodes,
        "tie",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 16, 16])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


X = (np.arange(256, dtype=np.float32) * np.float32(SX)).reshape(1, 1, 16, 16)


def _compile(tmp_path, second_layer: bool):
    import onnx

    path = tmp_path / "tie.onnx"
    onnx.save(_tie_model(second_layer), str(path))
    return compile_model(path, "zcu102-int8", tmp_path / "out")


def test_rounding_tie_is_bit_exact_vs_golden_and_one_step_vs_onnxruntime(tmp_path):
    res = _compile(tmp_path, second_layer=False)
    assert [la["layer"] for la in res.report.to_dict()["layers"]] == ["conv"]  # the conv is offloaded
    refs = References(res.out_dir)
    assert refs.steps == [pytest.approx(SY)]
    got = run_compiled(res.out_dir, X)[0]
    check = check_compiled(res.out_dir, X, [got], refs)
    # the csim output equals the golden integer model bit for bit
    assert np.array_equal(got, refs.golden(X)[0])
    (vs_golden,) = check.golden
    assert vs_golden.ok and vs_golden.mismatching == 0 and vs_golden.max_steps == 0
    # ... and the layer sits one step from ONNX Runtime's float reference on the tie, which passes
    conv = {c.what: c for c in check.layers}["conv"]
    assert check.ok and conv.ok and conv.max_steps == 1 and conv.off_by_one_step >= 1
    assert "conv vs onnxruntime" in conv.line() and "(ok)" in conv.line()


def test_tie_compounds_to_two_steps_end_to_end_and_passes(tmp_path):
    """Layer 1 within one step (a tie), layer 2 exact on its own input: the outputs differ by two
    steps end to end. The check passes and reports the two steps."""
    res = _compile(tmp_path, second_layer=True)
    assert [la["layer"] for la in res.report.to_dict()["layers"]] == ["conv", "conv2"]
    check = check_compiled(res.out_dir, X)
    layers = {c.what: c for c in check.layers}
    assert layers["conv"].max_steps == 1 and layers["conv2"].max_steps == 0
    (e2e,) = check.end_to_end
    assert e2e.ok is None and e2e.max_steps == 2  # reported, not asserted
    assert e2e.steps_histogram["2"] == layers["conv"].off_by_one_step
    assert check.ok and check.failing_layers == []
    assert any("reported" in line and "max 2 steps" in line for line in check.lines())


def test_two_steps_in_one_layer_fails_and_names_it(tmp_path, monkeypatch):
    """A layer whose integer output is two steps from the reference on its own input fails the
    check, and only that layer is named: the next layer, fed the same wrong tensor, is exact."""
    import codax.codegen.runtime as runtime

    res = _compile(tmp_path, second_layer=True)
    golden = runtime.golden_layer

    def off_by_two(layer, params, x, *rest):
        y = golden(layer, params, x, *rest)
        return (y.astype(np.int32) + 2).clip(0, 255).astype(y.dtype) if layer.name == "conv" else y

    monkeypatch.setattr(runtime, "golden_layer", off_by_two)
    check = check_compiled(res.out_dir, X)
    assert not check.ok and check.failing_layers == ["conv"]
    bad = {c.what: c for c in check.layers}["conv"]
    assert bad.max_steps == 2 and bad.mismatching > 200
    assert any("MISMATCH" in line and line.startswith("conv vs onnxruntime") for line in check.lines())


def test_compare_rules():
    ref = np.array([0.0, 0.5, 1.0, 1.5], np.float32)
    one = compare(ref + np.float32(0.5) * (np.arange(4) == 2), ref, 0.5, "onnxruntime", STEP_RULE, "l")
    assert (
        one.ok and one.max_steps == 1 and one.off_by_one_step == 1 and one.steps_histogram == {"0": 3, "1": 1}
    )
    two = compare(ref + np.float32(1.0) * (np.arange(4) == 2), ref, 0.5, "onnxruntime", STEP_RULE, "l")
    assert not two.ok and two.max_steps == 2 and two.mismatching == 1
    rep = compare(ref + np.float32(1.0) * (np.arange(4) == 2), ref, 0.5, "onnxruntime", REPORTED, "out")
    assert rep.ok is None and rep.max_steps == 2 and rep.mismatching == 1
    gold = compare(ref + np.float32(0.5) * (np.arange(4) == 2), ref, 0.5, "golden", EXACT_RULE, "out")
    assert not gold.ok and gold.mismatching == 1  # any difference from golden fails
    flt = compare(ref * np.float32(1 + 1e-6), ref, None, "onnxruntime", FLOAT_RULE, "out")
    assert flt.ok and flt.step is None
    assert not compare(ref * np.float32(1.01), ref, None, "onnxruntime", FLOAT_RULE, "out").ok
    assert not compare(ref[:3], ref, 0.5, "golden", EXACT_RULE, "out").ok  # a shape mismatch fails
    logits = np.array([[0.0, 1.0, 0.5], [2.0, 0.0, 1.0]])
    swapped = np.array([[0.0, 0.5, 1.0], [2.0, 0.0, 1.0]])
    assert compare(swapped, logits, 0.5, "onnxruntime", REPORTED, "out").argmax_agreement == 0.5


def test_output_steps_reads_the_dequantize_scale():
    assert output_steps(_tie_model()) == [pytest.approx(SY)]
    m = _tie_model()
    m.graph.output[0].name = "y"  # a float output not produced by DequantizeLinear
    assert output_steps(m) == [None]


def test_layer_reference_names_a_tensor_it_cannot_feed():
    """A piece whose input the pipeline did not compute is a clear error naming the tensor."""
    from codax.errors import ModelError
    from codax.verify import LayerReference, quantization_points

    m = _tie_model(second_layer=True)
    assert quantization_points(m) == ["xq", "yq", "zq"]
    ref = LayerReference(m)
    yq = np.zeros((1, 1, 16, 16), np.uint8)
    with pytest.raises(ModelError, match="'input'.*no value to feed"):
        ref.check({"yq": yq, "zq": yq, "xq": yq})  # xq's piece reads the graph input, not given
