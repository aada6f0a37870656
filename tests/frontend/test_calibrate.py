"""Calibration data for --calibrate and the float-model check."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from codax.errors import ConfigError, ModelError
from codax.flow import compile_model
from codax.frontend import load_onnx
from codax.frontend.calibrate import load_samples, quantize, require_integer_model
from codax.hw import load_accelerator
from tests.passes.helpers import float_accel


def _conv_model(path, inputs=("x",)):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", [inputs[0], "w"], ["c"], name="conv", pads=[1, 1, 1, 1])]
    if len(inputs) > 1:
        nodes.append(helper.make_node("Add", ["c", inputs[1]], ["y"], name="add"))
    else:
        nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu"))
    g = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info(inputs[0], onnx.TensorProto.FLOAT, [1, 3, 6, 6])]
        + [helper.make_tensor_value_info(i, onnx.TensorProto.FLOAT, [1, 4, 6, 6]) for i in inputs[1:]],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 6, 6])],
        [w],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture
def model(tmp_path):
    return _conv_model(tmp_path / "m.onnx")


@pytest.mark.parametrize("shape, n", [((1, 3, 6, 6), 1), ((5, 3, 6, 6), 5), ((4, 1, 3, 6, 6), 4)])
def test_sample_layouts(model, tmp_path, shape, n):
    np.save(tmp_path / "s.npy", np.zeros(shape, np.float64))
    feeds = load_samples(tmp_path / "s.npy", load_onnx(model))
    assert len(feeds) == n and all(f["x"].shape == (1, 3, 6, 6) and f["x"].dtype == np.float32 for f in feeds)


def test_folder_and_npz_samples(tmp_path):
    path = _conv_model(tmp_path / "two.onnx", inputs=("x", "r"))
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(3):
        np.savez(folder / f"{i}.npz", x=np.zeros((2, 3, 6, 6)), r=np.ones((2, 4, 6, 6)))
    feeds = load_samples(folder, load_onnx(path))
    assert len(feeds) == 6 and set(feeds[0]) == {"x", "r"} and feeds[5]["r"].shape == (1, 4, 6, 6)
    np.save(tmp_path / "one.npy", np.zeros((1, 3, 6, 6)))
    with pytest.raises(ConfigError, match=r"inputs \['x', 'r'\]; give .npz"):
        load_samples(tmp_path / "one.npy", load_onnx(path))
    np.savez(tmp_path / "typo.npz", x=np.zeros((1, 3, 6, 6)), rr=np.zeros((1, 4, 6, 6)))
    with pytest.raises(ConfigError, match=r"\['rr'\] name no model input"):
        load_samples(tmp_path / "typo.npz", load_onnx(path))


@pytest.mark.parametrize(
    "make, fragment",
    [
        (
            lambda p: np.save(p / "s.npy", np.zeros((2, 6, 6))),
            r"shape \(2, 6, 6\), but the model takes \[1, 3, 6, 6\]",
        ),
        (lambda p: (p / "s.npy").write_bytes(b"not numpy"), "not a readable numpy file"),
        (lambda p: (p / "s.txt").write_text("1"), "expected a .npy or .npz"),
    ],
)
def test_bad_samples_name_the_problem(model, tmp_path, make, fragment):
    make(tmp_path)
    src = next(p for p in tmp_path.iterdir() if p.stem == "s")
    with pytest.raises(ConfigError, match=fragment):
        load_samples(src, load_onnx(model))
    with pytest.raises(ConfigError, match="no such file or folder"):
        load_samples(tmp_path / "missing.npy", load_onnx(model))


def test_quantize_is_per_channel_qdq_and_refuses_a_quantized_model(model, tmp_path):
    np.save(tmp_path / "s.npy", np.random.default_rng(1).standard_normal((8, 3, 6, 6)))
    q = quantize(load_onnx(model), tmp_path / "s.npy")
    ops = [n.op_type for n in q.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    w_dq = next(
        n for n in q.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
    )
    assert inits[w_dq.input[0]].dtype == np.int8 and inits[w_dq.input[1]].shape == (4,)  # one scale per K
    onnx.save(q, str(tmp_path / "q.onnx"))
    with pytest.raises(ModelError, match="already quantized"):
        quantize(load_onnx(tmp_path / "q.onnx"), tmp_path / "s.npy")
    require_integer_model(load_onnx(tmp_path / "q.onnx"), load_accelerator("zc706-int8"))  # no error


def test_float_model_on_integer_accelerator_needs_calibration(model, tmp_path):
    with pytest.raises(ModelError, match=r"float model .*zc706-int8.*--calibrate SAMPLES"):
        compile_model(model, "zc706-int8", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    require_integer_model(load_onnx(model), float_accel())  # a float datapath: fine
