"""QONNX models in: a Brevitas network exported with export_qonnx and hand-built Quant / BipolarQuant
models compile as they are. References: QONNX's own executor (qonnx.core.onnx_exec) and the golden
integer model; integers compared exactly, requantized activations within one step of QONNX's."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from codax.errors import ModelError, UnsupportedError
from codax.flow import References, check_compiled, compile_model, run_compiled
from codax.frontend import load_onnx
from tests.frontend.qonnx_models import (
    BREVITAS_INPUT,
    QONNX,
    bipolar_model,
    conv_model,
    export_brevitas,
    qonnx_tensors,
    quant_node,
    quant_params,
    quant_steps,
    quant_steps_per_layer,
    single_node_model,
    trunc_model,
)
from tests.passes.helpers import ort_session

ACCEL = "zc706-int8"  # lists 8, 6 and 4 bits; no 1-bit widths

# numpy's reading of each QONNX rounding mode (docs/qonnx-custom-ops/intquant_v1.md), written apart
# from QONNX's code so a lowering that used the wrong function would differ from both
ROUNDING = {
    "ROUND": np.round,
    "CEIL": np.ceil,
    "FLOOR": np.floor,
    "UP": lambda v: np.sign(v) * np.ceil(np.abs(v)),
    "DOWN": np.trunc,
    "ROUND_TO_ZERO": np.trunc,
    "HALF_UP": lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5),
    "HALF_DOWN": lambda v: np.sign(v) * np.ceil(np.abs(v) - 0.5),
}


def tie_inputs(shape, seed: int, scale: float = 0.25) -> np.ndarray:
    """Inputs on a grid of half quantization steps (x / s lands on .5 ties and integers), where the
    rounding modes disagree, plus values beyond the clamp."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-20, 21, shape) * (scale / 2)).astype(np.float32)


def qonnx_name(mode: str) -> str:
    return {"ROUND_TO_ZERO": "DOWN"}.get(mode, mode)  # QONNX's executor knows round-to-zero as DOWN


@pytest.mark.parametrize("mode", list(ROUNDING))
def test_each_rounding_mode_lowers_to_equal_values(mode):
    """Weights folded with the mode equal QONNX's integers exactly and numpy's reading of the mode;
    the whole lowered QDQ model under ONNX Runtime equals QONNX's executor on the QONNX model."""
    model = conv_model(mode=mode)
    lm = load_onnx(model)
    inits = {t.name: numpy_helper.to_array(t) for t in lm.given.graph.initializer}
    w_int = inits["wq_int"]
    ref_model = conv_model(mode=qonnx_name(mode))
    x = tie_inputs((1, 3, 5, 5), seed=1)
    ref = qonnx_tensors(ref_model, x)
    s = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "qw_s"))
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w"))
    assert np.array_equal(w_int * s, ref["wq"])  # exact: the folded weights are QONNX's executor's
    assert np.array_equal(w_int, np.clip(ROUNDING[mode](np.clip(w / s, -7, 7)), -7, 7))
    # the input Quant rounds on the host in QONNX's float32 order: exactly QONNX's values
    sess_out = ort_session_of(lm.given).run(None, {"input": x})[0]
    assert np.array_equal(sess_out, ref["out"]), np.abs(sess_out - ref["out"]).max()
    assert lm.widths["wq_int"] == 4  # read from the stored integers (narrow: [-7, 7])


def test_rounding_modes_differ_on_the_test_data():
    """The data above separates the modes (the inputs' ties separate ROUND from HALF_UP): otherwise
    the tests could not tell them apart."""
    ints = {m: load_onnx(conv_model(mode=m)).given for m in ("ROUND", "CEIL", "FLOOR", "HALF_UP")}
    w = {
        m: numpy_helper.to_array(next(t for t in g.graph.initializer if t.name == "wq_int"))
        for m, g in ints.items()
    }
    assert len({w[m].tobytes() for m in ("ROUND", "CEIL", "FLOOR")}) == 3  # random weights hit no ties
    x = tie_inputs((1, 3, 5, 5), seed=1)
    outs = {m: ort_session_of(g).run(None, {"input": x})[0].tobytes() for m, g in ints.items()}
    assert len(set(outs.values())) == 4


def ort_session_of(model: onnx.ModelProto):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "m.onnx"
        onnx.save(model, str(p))
        return ort_session(p)


@pytest.mark.parametrize(
    "case",
    [
        dict(mode="FLOOR", x_signed=True, w_per_channel=True, y_signed=False),
        dict(mode="ROUND", x_signed=False, x_zero=3.0, w_per_channel=False, w_narrow=False, y_bits=5),
        dict(mode="CEIL", x_bits=3, w_bits=2, w_narrow=True, y_signed=True, y_narrow=True, relu=False),
    ],
    ids=["floor-signed-perchannel", "round-unsigned-zeropoint-5bit", "ceil-3bit-2bit-narrow"],
)
def test_compiled_matches_golden_and_qonnx(tmp_path, case):
    """Compiled and run: bit-exact against the golden model, the input's integers exactly QONNX's,
    the layer's output within one step of QONNX's executor; widths in report.json, the ones zc706-int8
    does not list (2, 3, 5) at the next wider width it lists."""
    model = conv_model(**case)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    res = compile_model(path, ACCEL, tmp_path / "out")
    x = tie_inputs((1, 3, 5, 5), seed=2)
    chk = check_compiled(res.out_dir, x)
    assert chk.ok and all(c.mismatching == 0 for c in chk.golden), chk.lines()
    env = References(res.out_dir).golden_tensors(x)
    ref = qonnx_tensors(model, x)
    steps, total = quant_steps(model, env, ref)
    print(case["mode"], "steps vs QONNX per Quant:", steps)
    assert len(steps) == total == 2
    assert steps["qx"] == 0  # host quantization: QONNX's float32 formula, exactly
    assert steps["qy"] <= 1
    (layer,) = json.loads((res.out_dir / "report.json").read_text())["layers"]
    stated = (case.get("w_bits", 4), case.get("x_bits", 4), case.get("y_bits", 4))
    up = {2: 4, 3: 4, 5: 6}
    runs = tuple(up.get(b, b) for b in stated)
    assert layer["precision"] == f"w{runs[0]}a{runs[1]}acc32"
    want = f"w{stated[0]}a{stated[1]}o{stated[2]}" if runs != stated else None
    assert layer["model_precision"] == want


def test_non_round_quant_after_a_layer_is_an_error_naming_it():
    model = conv_model()
    (mode,) = [
        a for n in model.graph.node if n.name == "qy" for a in n.attribute if a.name == "rounding_mode"
    ]
    mode.s = b"FLOOR"
    with pytest.raises(
        UnsupportedError, match=r"Quant node 'qy' \(output 'out'\) rounds FLOOR the output of layer 'conv'"
    ):
        load_onnx(model)


def test_bipolar_model_on_an_accelerator_without_1_bit_widths_fails_naming_the_node(tmp_path):
    path = tmp_path / "bipolar.onnx"
    onnx.save(bipolar_model(), str(path))
    out = tmp_path / "out"
    p = subprocess.run(
        [sys.executable, "-m", "codax.cli", "compile", str(path), "--accel", ACCEL, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "BipolarQuant node 'qw_bipolar'" in p.stderr and "1 bit" in p.stderr and ACCEL in p.stderr
    assert "weight" in p.stderr
    assert not out.exists()


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "float-bias"])
def test_brevitas_network_round_trip(tmp_path, bias):
    """A Brevitas network (QuantConv2d / QuantReLU / QuantLinear, 4-bit, one 2-bit layer, a residual
    add, a max pool; with Brevitas's default float biases or none), exported with export_qonnx, compiled
    with `codax compile` and run with `--check`: every MAC on the engine, bit-exact against golden, each
    quantized tensor within one step of QONNX's executor run on the compiled network's own inputs to it;
    without biases (power-of-two scales) QONNX's integers end to end, the output within one step of the
    output Quant."""
    pytest.importorskip("brevitas")
    path = export_brevitas(tmp_path / "brevitas.onnx", bias=bias)
    model = onnx.load(str(path))
    assert {n.op_type for n in model.graph.node} >= {"Quant", "Conv", "Gemm", "Add", "Relu", "MaxPool"}
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "codax.cli"]
    p = subprocess.run([*cli, "compile", str(path), "--accel", ACCEL, "-o", str(out)], capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr
    x = np.random.default_rng(5).standard_normal(BREVITAS_INPUT).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    p = subprocess.run([*cli, "run", str(out), "--input", str(tmp_path / "x.npy"), "--check"],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["offloaded_mac_share"] == 1.0 and report["totals"]["offloaded_layers"] == 3
    layers = {r["layer"]: r for r in report["layers"]}
    assert sorted(r["precision"] for r in layers.values()) == ["w4a4acc32"] * 3
    assert [r["model_precision"] for r in layers.values()].count("w2a4o4") == 1  # the 2-bit layer
    got = run_compiled(out, x)[0]
    env = References(out).golden_tensors(x)
    ref = qonnx_tensors(model, x)
    steps, total = quant_steps(model, env, ref)
    per_layer = quant_steps_per_layer(model, env, x)
    print("Brevitas network, steps vs QONNX per Quant, end to end:", steps, "per layer:", per_layer)
    assert len(steps) == total == len(per_layer) == 5 and max(per_layer.values()) <= 1
    if bias:  # the int32 bias moves a tie by a step now and then, which later layers carry
        return
    assert max(steps.values()) == 0  # power-of-two scales, no bias: QONNX's integers, end to end
    y = model.graph.output[0].name
    (q_out,) = [n for n in model.graph.node if n.output[0] == y and n.op_type == "Quant"]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out_step = float(inits[q_out.input[1]].reshape(()))  # the output Quant's scale
    assert np.abs(got - ref[y]).max() <= out_step * (1 + 1e-6)


def test_qdq_hand_off_exported_as_qonnx(tmp_path):
    """`codax search --format qonnx`'s export: the QDQ network as QONNX Quant nodes, whose QONNX
    execution equals ONNX Runtime's of the QDQ model and whose widths codax reads back."""
    from codax.cli import build_parser
    from codax.frontend import extract_graph
    from codax.frontend.qonnx_export import export_qonnx
    from tests.frontend.qonnx_models import qdq_model

    qdq = qdq_model()
    for vi in (qdq.graph.input[0], qdq.graph.output[0]):  # a dynamic batch, as the search exports it
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(qdq, str(tmp_path / "net.onnx"))
    path = export_qonnx(tmp_path / "net.onnx", tmp_path / "net.qonnx.onnx")
    q = onnx.load(str(path))
    assert {n.op_type for n in q.graph.node} == {"Quant", "Conv", "Relu"}
    assert [d.dim_value for d in q.graph.input[0].type.tensor_type.shape.dim] == [1, 2, 5, 5]
    x = np.random.default_rng(3).normal(0, 2, (1, 2, 5, 5)).astype(np.float32)
    want = ort_session(tmp_path / "net.onnx").run(None, {"input": x})[0]
    assert np.array_equal(qonnx_tensors(q, x)["out"], want)
    (a,), (b,) = extract_graph(qdq).layers, extract_graph(q).layers
    assert (a.precision.weight, a.precision.act) == (b.precision.weight, b.precision.act) == (4, 6)
    assert b.precision.out == 3  # the ReLU's [0, 7] as unsigned 3 bits (the QDQ model's int8 reads as 4)
    assert build_parser().parse_args(["search", "--format", "qonnx"]).format == "qonnx"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--format", "finn"])


@pytest.mark.parametrize("version,mode", [(1, "FLOOR"), (2, "FLOOR"), (2, "ROUND")])
def test_trunc_lowers_to_equal_values(version, mode):
    """Trunc (Brevitas's average-pool output) on the host: ONNX Runtime on the lowered model equals
    QONNX's executor, the truncated tensor an integer tensor of the output width."""
    model = trunc_model(version, mode)
    lm = load_onnx(model)
    x = np.random.default_rng(4).normal(0, 4, (1, 4, 4, 4)).astype(np.float32)
    want = qonnx_tensors(model, x)["out"]
    got = ort_session_of(lm.given).run(None, {"input": x})[0]
    assert np.array_equal(got, want)
    assert len(np.unique(want)) > 8  # the data reaches most of the 4-bit range
    ints = want * (16 if version == 1 else 1)  # QONNX's integers (v1 keeps the input scale 1/16)
    assert np.array_equal(ints, np.round(ints))
    assert lm.widths["out_qc"] == 4 and ints.min() >= -8 and ints.max() <= 7


def test_float_bias_becomes_an_int32_bias_of_the_integer_layer():
    """A float bias between quantized operands (Brevitas's default) is folded as int32 at s_x * s_w:
    the conv is an integer layer with a bias, and its output stays within one step of QONNX's."""
    from codax.frontend import extract_graph

    model = conv_model(bias=True, mode="ROUND")
    lm = load_onnx(model)
    (layer,) = extract_graph(lm).layers
    assert layer.precision.kind == "int" and layer.epilogue.bias
    x = tie_inputs((1, 3, 5, 5), seed=6)
    want = qonnx_tensors(model, x)["out"]
    got = ort_session_of(lm.given).run(None, {"input": x})[0]
    assert np.abs(got - want).max() <= 0.375 * (1 + 1e-6)  # one step of the output Quant


def test_bipolar_weights_run_where_the_accelerator_lists_1_bit(tmp_path):
    """On an accelerator that lists 1-bit weights, BipolarQuant's +-1 weights (two's complement: 2 bits)
    run at its next listed width; bit-exact against golden, QONNX's values at the output."""
    from codax.hw import load_accelerator
    from codax.ir import Accelerator

    d = load_accelerator(ACCEL).to_dict()
    d["precision"]["weight"] = [8, 6, 4, 1]
    model = bipolar_model()
    path = tmp_path / "bipolar.onnx"
    onnx.save(model, str(path))
    res = compile_model(path, Accelerator.from_dict(d), tmp_path / "out")
    x = tie_inputs((1, 3, 5, 5), seed=7)
    chk = check_compiled(res.out_dir, x)
    assert chk.ok and all(c.mismatching == 0 for c in chk.golden), chk.lines()
    steps, _ = quant_steps(model, References(res.out_dir).golden_tensors(x), qonnx_tensors(model, x))
    assert steps["qy"] <= 1
    (layer,) = res.report.layers
    assert layer.precision == "w4a4acc32" and layer.model_precision == "w2a4o4"


def test_width_wider_than_any_listed_fails_naming_the_node(tmp_path):
    """An 8-bit output Quant on an accelerator whose widest width is 4: an error naming the node and
    the width, raised before anything is written."""
    from codax.hw import load_accelerator
    from codax.ir import Accelerator

    d = load_accelerator(ACCEL).to_dict()
    d["precision"]["weight"], d["precision"]["act"] = [4], [4]
    path = tmp_path / "m.onnx"
    onnx.save(conv_model(y_bits=8), str(path))
    with pytest.raises(
        UnsupportedError,
        match=r"Quant node 'qy' quantizes an activation to 8 bits, wider than any activation width",
    ):
        compile_model(path, Accelerator.from_dict(d), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_trunc_v1_of_an_unsigned_tensor_is_not_clamped_to_a_signed_range():
    """QONNX's Trunc v1 neither clamps nor states a signedness: an unsigned 8-bit input truncated to 4
    bits keeps its unsigned integers (ROUND carries 255 / 16 up to 16, a 5-bit value), exactly QONNX's
    executor; the width codax reads is that of QONNX's integers."""
    from codax.frontend.widths import width_of_range

    x = np.random.default_rng(8).uniform(-1, 17, (1, 4, 4, 4)).astype(np.float32)
    for mode in ("FLOOR", "ROUND"):
        model = trunc_model(1, mode, signed=False)
        lm = load_onnx(model)
        want = qonnx_tensors(model, x)["out"]
        got = ort_session_of(lm.given).run(None, {"input": x})[0]
        assert np.array_equal(got, want), (mode, int((got != want).sum()))
        ints = (want * 16).astype(np.int64)
        assert ints.max() >= 12  # the data reaches the top of the unsigned range
        assert lm.widths["out_qc"] == max(width_of_range(0, int(ints.max()), False), 4)


def test_trunc_v1_without_a_quant_before_it_fails_naming_the_node():
    """A Trunc v1 of a tensor no Quant produces has no known range or signedness."""
    inits = [*quant_params("t", 1 / 16, 0.0, 8), numpy_helper.from_array(np.float32(4), "t_o")]
    model = single_node_model(
        [helper.make_node("Trunc", ["input", "t_s", "t_z", "t_b", "t_o"], ["out"], name="tr", domain=QONNX)],
        inits,
    )
    with pytest.raises(UnsupportedError, match=r"Trunc node 'tr' \(output 'out'\).*not a Quant's output"):
        load_onnx(model)


@pytest.mark.parametrize("version,opset", [(2, 1), (1, 2)])
def test_trunc_version_follows_the_domain_opset(version, opset):
    """QONNX's executor picks Trunc v1 / v2 from the model's opset for its domain; a node whose inputs
    are the other version's is an error naming it."""
    with pytest.raises(ModelError, match=r"Trunc node 'trunc' \(output 'out'\) has \d inputs.*opset"):
        load_onnx(trunc_model(version, opset=opset))


def test_signed_1_bit_quant_with_a_zero_point_fails_naming_the_node():
    """QONNX's signed 1-bit Quant returns (+-1 - z) * s, no bipolar tensor where z != 0; with z = 0 it is
    QONNX's +-s exactly."""
    x = tie_inputs((1, 4, 4, 4), seed=9)
    ok = single_node_model([quant_node("q1", "input", "out", 1)], quant_params("q1", 0.25, 0.0, 1))
    got = ort_session_of(load_onnx(ok).given).run(None, {"input": x})[0]
    assert np.array_equal(got, qonnx_tensors(ok, x)["out"])
    bad = single_node_model([quant_node("q1", "input", "out", 1)], quant_params("q1", 0.25, 1.0, 1))
    with pytest.raises(UnsupportedError, match=r"Quant node 'q1' \(output 'out'\): a signed 1-bit Quant"):
        load_onnx(bad)


def test_float_bias_beyond_int32_fails_naming_the_layer():
    """A float bias whose integer at s_x * s_w does not fit int32 is an error naming the Conv (it would
    wrap around)."""
    model = conv_model(bias=True)
    (b,) = [t for t in model.graph.initializer if t.name == "b"]
    b.CopyFrom(numpy_helper.from_array(np.full(6, 1e8, np.float32), "b"))
    with pytest.raises(UnsupportedError, match=r"Conv node 'conv' \(output 'c'\).*beyond int32"):
        load_onnx(model)


def test_float_bias_with_a_per_input_channel_weight_scale_fails_naming_the_layer():
    """With C_in == C_out, a weight scale per input channel has as many values as the bias: the bias
    scale must come from the DequantizeLinear's axis, not from the sizes."""
    model = conv_model(bias=True, channels_in=6, w_axis=1)
    with pytest.raises(UnsupportedError, match=r"Conv node 'conv' \(output 'c'\).*runs along axis 1"):
        load_onnx(model)


def test_float_bias_per_output_channel_matches_qonnx():
    """The int32 bias at s_x * s_w per output channel: the layer's output within one step of QONNX's."""
    model = conv_model(bias=True, mode="ROUND", channels_in=6, w_axis=0)
    lm = load_onnx(model)
    x = tie_inputs((1, 6, 5, 5), seed=10)
    got = ort_session_of(lm.given).run(None, {"input": x})[0]
    assert np.abs(got - qonnx_tensors(model, x)["out"]).max() <= 0.375 * (1 + 1e-6)


def _accel_yaml(tmp_path, weight, act):
    """A copy of the library's zc706-int8 with other weight / activation widths."""
    import yaml

    from codax.hw import load_accelerator

    src = load_accelerator(ACCEL)
    d = src.to_dict()
    d["precision"]["weight"], d["precision"]["act"] = weight, act
    d["name"] = "zc706-split"
    path = tmp_path / "zc706-split.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_weight_and_activation_widths_checked_against_their_own_lists(tmp_path):
    """On an accelerator listing 4-bit weights and 8-bit activations, an 8-bit weight Quant fails naming
    it (the activation list holds 8 but weights cannot run at 8), and bipolar weights fail where only the
    activation list holds 1 bit."""
    accel = _accel_yaml(tmp_path, [4], [8])
    path = tmp_path / "w8.onnx"
    onnx.save(conv_model(w_bits=8, y_bits=8, x_bits=8), str(path))
    with pytest.raises(UnsupportedError, match=r"Quant node 'qw' quantizes a weight to 8 bits.*\[4\]"):
        compile_model(path, accel, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    accel = _accel_yaml(tmp_path, [8, 6, 4], [8, 6, 4, 1])
    onnx.save(bipolar_model(), str(path))
    with pytest.raises(UnsupportedError, match=r"BipolarQuant node 'qw_bipolar' quantizes a weight to 1 bit"):
        compile_model(path, accel, tmp_path / "out")


def test_widths_pass_on_their_own_lists(tmp_path):
    """4-bit weights and 8-bit activations on that accelerator run (each on its own list)."""
    from codax.frontend.qonnx_lower import check_widths_on
    from codax.hw import load_accelerator

    accel = load_accelerator(_accel_yaml(tmp_path, [4], [8]))
    check_widths_on(load_onnx(conv_model(w_bits=4, x_bits=8, y_bits=8)).qonnx, accel)
    with pytest.raises(UnsupportedError, match=r"Quant node 'qy' quantizes an activation to 8 bits"):
        check_widths_on(load_onnx(conv_model(w_bits=4, x_bits=4, y_bits=8)).qonnx, _swap(accel))


def _swap(accel):
    from dataclasses import replace

    return replace(accel, weight_bits=accel.act_bits, act_bits=accel.weight_bits)


def test_per_channel_zero_point_with_a_per_tensor_scale_matches_qonnx():
    """The axis comes from the scale and the zero point together: a per-channel zero point beside a
    per-tensor scale rounds on the host exactly as QONNX's executor."""
    x = tie_inputs((1, 4, 4, 4), seed=11)
    for mode in ("ROUND", "FLOOR"):
        z = np.array([0, 1, 2, 3], np.float32).reshape(1, 4, 1, 1)
        model = single_node_model([quant_node("qp", "input", "out", 4, signed=False, mode=mode)],
                                  quant_params("qp", 0.25, z, 4))  # fmt: skip
        got = ort_session_of(load_onnx(model).given).run(None, {"input": x})[0]
        assert np.array_equal(got, qonnx_tensors(model, x)["out"]), mode


@pytest.mark.parametrize("case", ["trunc-per-channel-output-scale", "trunc-bit-width-vector",
                                  "quant-bit-width-vector", "quant-without-signed"])  # fmt: skip
def test_unsupported_node_options_fail_naming_the_node(case):
    """Options codax does not compile are errors naming the node and its output, not tracebacks."""
    q8 = [quant_node("q8", "input", "x8", 8)]
    inits = [*quant_params("q8", 1 / 16, 0.0, 8), numpy_helper.from_array(np.float32(8), "ib"),
             numpy_helper.from_array(np.float32(4), "ob"), numpy_helper.from_array(np.float32(1), "os"),
             numpy_helper.from_array(np.ones((1, 4, 1, 1), np.float32), "os_c"),
             numpy_helper.from_array(np.array([4, 4], np.float32), "ob_v")]  # fmt: skip

    def trunc(*ins):
        return helper.make_node("Trunc", ["x8", "q8_s", "q8_z", *ins], ["out"], name="t", domain=QONNX)

    node, err = {
        "trunc-per-channel-output-scale": (trunc("ib", "os_c", "ob"), r"Trunc node 't' \(output 'out'\)"),
        "trunc-bit-width-vector": (trunc("ib", "os", "ob_v"), r"Trunc node 't' \(output 'out'\)"),
        "quant-bit-width-vector": (quant_node("qv", "x8", "out", 4), r"Quant node 'qv' \(output 'out'\)"),
        "quant-without-signed": (quant_node("qn", "x8", "out", 4), r"Quant node 'qn' \(output 'out'\)"),
    }[case]
    extra = []
    if case == "quant-bit-width-vector":
        extra = quant_params("qv", 0.25, 0.0, [4, 4])
    if case == "quant-without-signed":
        extra = quant_params("qn", 0.25, 0.0, 4)
        del node.attribute[:]
    with pytest.raises((UnsupportedError, ModelError), match=err):
        load_onnx(single_node_model([*q8, node], inits + extra, qonnx_opset=2))


def test_any_qonnx_domain_node_is_detected():
    """A model whose only QONNX node is one codax does not read gets the unsupported-node message."""
    node = helper.make_node("QuantAvgPool2d", ["input"], ["out"], name="qap", domain="finn.custom_op.general",
                            kernel=1, stride=1, ibits=8, obits=8, signed=1, data_layout="NCHW")  # fmt: skip
    with pytest.raises(UnsupportedError, match=r"node 'qap' is a QuantAvgPool2d"):
        load_onnx(single_node_model([node], []))


def test_load_leaves_the_callers_model_as_it_is():
    """Naming unnamed nodes (for the errors) happens on a copy."""
    model = conv_model()
    model.graph.node[0].name = ""
    before = model.SerializeToString()
    load_onnx(model)
    assert model.SerializeToString() == before


def test_search_qonnx_export_failure_is_reported_in_the_summary(tmp_path, monkeypatch, capsys):
    """`codax search --format qonnx` exports after the search wrote its outputs: an export that fails
    (here a float net.onnx, which has no QONNX form) leaves them, says why in the summary, exits 1."""
    import types

    import codax.search
    from codax.cli import main

    out = tmp_path / "run"

    def fake_search(config, out_dir, resume=False, progress=True):
        out_dir.mkdir(parents=True)
        m = conv_model()
        del m.graph.node[:]
        m.graph.node.append(helper.make_node("Relu", ["input"], ["out"], name="relu"))
        onnx.save(m, str(out_dir / "net.onnx"))
        return types.SimpleNamespace(summary={"net": str(out_dir / "net.onnx")})

    monkeypatch.setattr(codax.search, "run_search", fake_search)
    rc = main(["search", "-o", str(out), "--format", "qonnx"])
    captured = capsys.readouterr()
    assert rc == 1 and "qonnx: not written:" in captured.out and "no QuantizeLinear" in captured.out
    assert (out / "net.onnx").exists() and not (out / "net.qonnx.onnx").exists()
