"""Widths read from a QDQ model itself: ONNX Runtime's INT4 models, int8 tensors clipped to a
narrower range; the rewrite that makes them importable keeps ONNX Runtime's values."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from codax.errors import ModelError
from codax.flow import References
from codax.frontend import extract_graph, import_onnx, load_onnx
from codax.frontend.widths import integer_range, read_widths, width_of_range
from codax.passes import offloaded_layers, pipeline
from tests.passes.helpers import int8_accel, ort_session, relax_vm
from tests.passes.models import digits, train_digits_net


@pytest.fixture(scope="module")
def digits_float_opset21(tmp_path_factory):
    path = tmp_path_factory.mktemp("widths") / "digits_float.onnx"
    torch.onnx.export(
        train_digits_net(30),
        torch.from_numpy(digits(1)),
        str(path),
        opset_version=17,
        input_names=["input"],
        output_names=["out"],
        dynamo=False,
    )
    # INT4 QuantizeLinear / DequantizeLinear need opset 21
    onnx.save(onnx.version_converter.convert_version(onnx.load(str(path)), 21), str(path))
    return path


def _ort_quantize(float_path, out_path, weight_type: str, activation_type: str):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"input": digits(64)[i : i + 1]} for i in range(0, 64, 4))

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        str(float_path),
        str(out_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType[weight_type],
        activation_type=QuantType[activation_type],
    )
    return out_path


def _layers_match_ort(path, xs: np.ndarray) -> None:
    """The integer pipeline (the golden model, which the engine computes bit for bit) layer by layer
    against ONNX Runtime on the model as written, each layer fed the pipeline's own input: within one
    step (codax.verify; end to end a rounding tie may compound across layers, so no bound holds)."""
    refs = References.of_model(path, int8_accel())
    for x in xs:
        checks = refs.layers.check(refs.golden_tensors(x[None]))
        assert len(checks) >= len(refs.graph.layers) and all(c.ok for c in checks), [c.line() for c in checks]


def _compiled_matches_ort(path, step: float, xs: np.ndarray) -> None:
    """The lowered integer model of one layer on the Relax VM against ONNX Runtime on the model as
    written: within one output quantization step (the float rounding of the reference's accumulation;
    one layer, so no tie compounds)."""
    run = relax_vm(pipeline(int8_accel(), offload=False, map_layers=False)(import_onnx(path)))
    sess = ort_session(path)
    for x in xs:
        got, want = run(x[None]), sess.run(None, {"input": x[None]})[0]
        np.testing.assert_allclose(got, want, atol=step * 1.01, rtol=0)


@pytest.mark.parametrize(
    "weight_type, activation_type, bits",
    [("QInt4", "QInt8", (4, 8)), ("QInt4", "QInt4", (4, 4)), ("QInt4", "QUInt4", (4, 4))],
)
def test_ort_int4_model_imports_at_4_bits(digits_float_opset21, tmp_path, weight_type, activation_type, bits):
    """A user's model quantized by ONNX Runtime to INT4 / UINT4 imports with 4-bit precisions, every
    layer offloaded, and computes what ONNX Runtime computes."""
    path = _ort_quantize(digits_float_opset21, tmp_path / "q.onnx", weight_type, activation_type)
    m = onnx.load(str(path))
    assert any(t.data_type == TensorProto.INT4 for t in m.graph.initializer)
    layers = extract_graph(path).layers
    assert len(layers) == 5
    for layer in layers:
        assert (layer.precision.weight, layer.precision.act) == bits, layer.name
    offl = offloaded_layers(pipeline(int8_accel())(import_onnx(path)))
    assert {o.layer.name for o in offl.values()} == {la.name for la in layers}
    for o in offl.values():
        assert (o.layer.precision.weight, o.layer.precision.act) == bits
    _layers_match_ort(path, digits(40)[::4])


def _clipped_conv(bits_w: int, bits_a: tuple[int, int], seed: int = 0) -> onnx.ModelProto:
    """input -> Q -> Clip -> DQ -> Conv(int8 weights within bits_w) -> Relu -> Q -> Clip -> DQ."""
    rng = np.random.default_rng(seed)
    lo_w, hi_w = integer_range(bits_w, True)
    w = rng.integers(lo_w + 1, hi_w + 1, (4, 2, 3, 3)).astype(np.int8)
    w.flat[0] = hi_w  # the values span the width
    inits = [
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.array(0.05, np.float32), "w_s"),
        numpy_helper.from_array(np.array(0.1, np.float32), "x_s"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
        numpy_helper.from_array(np.array(0.4, np.float32), "y_s"),
    ]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_s", "zp"], ["w"], name="w_dq")]
    for tag, src, bits in (("x", "input", bits_a[0]), ("y", "r", bits_a[1])):
        lo, hi = integer_range(bits, True)
        inits += [
            numpy_helper.from_array(np.array(lo, np.int8), f"{tag}_lo"),
            numpy_helper.from_array(np.array(hi, np.int8), f"{tag}_hi"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", [src, f"{tag}_s", "zp"], [f"{tag}_q8"], name=f"{tag}_q"),
            helper.make_node(
                "Clip", [f"{tag}_q8", f"{tag}_lo", f"{tag}_hi"], [f"{tag}_q"], name=f"{tag}_clip"
            ),
            helper.make_node(
                "DequantizeLinear",
                [f"{tag}_q", f"{tag}_s", "zp"],
                ["out" if tag == "y" else "xd"],
                name=f"{tag}_dq",
            ),
        ]
        if tag == "x":
            nodes += [
                helper.make_node("Conv", ["xd", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                helper.make_node("Relu", ["c"], ["r"], name="relu"),
            ]
    g = helper.make_graph(
        nodes,
        "clipped",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 6, 6])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("bits", [(6, (6, 6)), (6, (4, 5)), (3, (8, 6))])
def test_int8_clipped_to_a_narrower_range_reads_as_that_width(tmp_path, bits):
    """An int8 tensor clipped between QuantizeLinear and DequantizeLinear holds the clip's width;
    int8 weights holding only narrow values hold that width; the compiled model matches ORT."""
    bw, (ba, bo) = bits
    path = tmp_path / "clipped.onnx"
    onnx.save(_clipped_conv(bw, (ba, bo)), str(path))
    (layer,) = extract_graph(path).layers
    assert (layer.precision.weight, layer.precision.act, layer.precision.out) == (bw, ba, bo)
    (o,) = offloaded_layers(pipeline(int8_accel())(import_onnx(path))).values()
    up = {3: 4, 5: 6}  # widths zc706-int8 (8, 6, 4) does not list run at the next wider one it lists
    runs = tuple(up.get(b, b) for b in (bw, ba, bo))
    assert (o.layer.precision.weight, o.layer.precision.act, o.layer.precision.out) == runs
    # the output range became the layer's clip activation (merged with the ReLU): nothing on the host
    ep = o.layer.epilogue
    upper = 6.0 if ep.activation == "relu6" else ep.clip_max  # [0, 6] is read as relu6
    assert ep.activation in ("clip", "relu6") and ep.clip_min in (0.0, None)
    assert upper == pytest.approx(integer_range(bo, True)[1] * 0.4)
    xs = np.random.default_rng(1).normal(0, 3, (8, 2, 6, 6)).astype(np.float32)
    _compiled_matches_ort(path, 0.4, xs)
    _layers_match_ort(path, xs)


def test_plain_int8_model_stays_8_bit(digits_float_opset21, tmp_path):
    """Widths are only narrowed by what the model states: ORT's int8 model reads as 8 bits."""
    path = _ort_quantize(digits_float_opset21, tmp_path / "q8.onnx", "QInt8", "QUInt8")
    for layer in extract_graph(path).layers:
        assert (layer.precision.weight, layer.precision.act, layer.precision.out) == (8, 8, 8)


@given(lo=st.integers(-300, 300), span=st.integers(0, 600), signed=st.booleans())
def test_width_of_range_is_the_narrowest_that_holds_it(lo, span, signed):
    lo = lo if signed else abs(lo)
    hi = lo + span
    b = width_of_range(lo, hi, signed)
    tlo, thi = integer_range(b, signed)
    assert tlo <= lo and hi <= thi
    if b > 1:
        plo, phi = integer_range(b - 1, signed)
        assert lo < plo or hi > phi


@settings(max_examples=25, deadline=None)
@given(
    scale=st.floats(1e-3, 1.0),
    zp=st.integers(-20, 20),
    lo=st.integers(-128, 0),
    span=st.integers(1, 127),
    relu=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_folded_clip_equals_the_integer_clip_in_ort(scale, zp, lo, span, relu, seed):
    """`Q -> Clip(lo, hi) -> DQ` and its rewrite `Clip(float) -> Q -> DQ` give ONNX Runtime the same
    values, a preceding ReLU merged in or not."""
    hi = min(127, lo + span)
    inits = [
        numpy_helper.from_array(np.array(scale, np.float32), "s"),
        numpy_helper.from_array(np.array(zp, np.int8), "z"),
        numpy_helper.from_array(np.array(lo, np.int8), "lo"),
        numpy_helper.from_array(np.array(hi, np.int8), "hi"),
    ]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu")] if relu else []
    nodes += [
        helper.make_node("QuantizeLinear", ["r" if relu else "x", "s", "z"], ["q"], name="q"),
        helper.make_node("Clip", ["q", "lo", "hi"], ["c"], name="clip"),
        helper.make_node("DequantizeLinear", ["c", "s", "z"], ["y"], name="dq"),
    ]
    g = helper.make_graph(
        nodes,
        "fold",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [257])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [257])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    folded, widths = read_widths(m)
    assert [n.op_type for n in folded.graph.node] == ["Clip", "QuantizeLinear", "DequantizeLinear"]
    assert widths["c"] == width_of_range(lo, hi, True)
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 200 * scale, 200), (np.arange(-28, 29) + 0.5) * scale]).astype(
        np.float32
    )
    import onnxruntime as ort

    def run(model):
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )[0]

    np.testing.assert_array_equal(run(folded), run(m))


def test_four_bit_graph_input_is_an_error(tmp_path):
    g = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["x", "s"], ["y"], name="dq")],
        "int4_input",
        [helper.make_tensor_value_info("x", TensorProto.INT4, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "s")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(ModelError, match="graph input/output 'x' is a 4-bit tensor"):
        load_onnx(m)
