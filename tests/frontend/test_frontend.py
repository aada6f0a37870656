"""Export, import, shape-only models and bad inputs."""

from __future__ import annotations

import onnx
import pytest
import torch

from codax.errors import ModelError, UnsupportedError
from codax.frontend import WeightsMissingError, export_torch, extract_graph, import_onnx, load_onnx
from codax.frontend.zoo import resnet18
from codax.ir import HostOp
from codax.passes import build_report, pipeline
from tests.passes.helpers import ZIGZAG, float_accel
from tests.passes.onnx_count import count


def test_export_folds_batchnorm_with_stable_names(tmp_path):
    m = resnet18(10, 8)
    x = torch.randn(1, 3, 32, 32)
    a = onnx.load(str(export_torch(m, x, tmp_path / "a.onnx")))
    b = onnx.load(str(export_torch(m, x, tmp_path / "b.onnx")))
    assert not [n for n in a.graph.node if n.op_type == "BatchNormalization"]
    assert [n.name for n in a.graph.node] == [n.name for n in b.graph.node]
    assert a.opset_import[0].version >= 17
    assert "/layer1/layer1.0/conv1/Conv" in {n.name for n in a.graph.node}


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "alexnet"])
def test_zigzag_shape_only_models(name):
    path = ZIGZAG / f"{name}.onnx"
    lm = load_onnx(path)
    assert lm.shape_only
    with pytest.raises(WeightsMissingError, match="missing"):
        lm.require_weights("compiling")
    g = extract_graph(lm)
    expected = count(path)
    assert {layer.name: layer.macs for layer in g.layers} == {k: v["macs"] for k, v in expected.items()}
    mod = pipeline(float_accel(), map_layers=False)(import_onnx(lm))
    rep = build_report(mod, float_accel())
    assert {r.node for r in rep.nodes if r.placement == "accelerator"} == set(expected)
    assert len(rep.nodes) == len(lm.model.graph.node)
    assert all(r.reason for r in rep.nodes)
    if name == "alexnet":
        lrn = [r for r in rep.nodes if r.op_type == "LRN"]
        assert lrn and all(r.placement == "host" for r in lrn)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ModelError, match="corrupt"):
        import_onnx(bad)
    with pytest.raises(ModelError, match="does not exist"):
        import_onnx(tmp_path / "nope.onnx")


def test_dynamic_batch_is_one_other_dynamic_dims_need_shape(tmp_path, capsys):
    from codax.frontend import load_onnx

    p = export_torch(resnet18(10, 8), torch.randn(1, 3, 32, 32), tmp_path / "r.onnx")
    m = onnx.load(str(p))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(m, str(tmp_path / "dyn.onnx"))
    # a dynamic leading batch dim: compiled for batch 1, said in one line
    assert load_onnx(tmp_path / "dyn.onnx").input_shapes == {"input": (1, 3, 32, 32)}
    note = [ln for ln in capsys.readouterr().err.splitlines() if "dynamic batch" in ln]
    assert len(note) == 1 and "'input'" in note[0] and "batch 1" in note[0]
    assert load_onnx(tmp_path / "dyn.onnx", {"input": [2, 3, 32, 32]}).input_shapes["input"] == (2, 3, 32, 32)
    # any other unknown dim still stops, naming the input and the --shape flag
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    onnx.save(m, str(tmp_path / "dyn_hw.onnx"))
    with pytest.raises(ModelError, match=r"'input'.*--shape input:1x3x1x32"):
        import_onnx(tmp_path / "dyn_hw.onnx")
    mod = import_onnx(tmp_path / "dyn_hw.onnx", shapes={"input": [1, 3, 32, 32]})
    assert "main" in [gv.name_hint for gv in mod.get_global_vars()]
    with pytest.raises(ModelError, match="model's inputs"):
        import_onnx(tmp_path / "dyn.onnx", shapes={"x": [1, 3, 32, 32]})


def test_op_tvm_cannot_import_is_reported(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example")
    g = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    m = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    with pytest.raises(UnsupportedError, match="fancy"):
        import_onnx(m)
    graph = extract_graph(m)
    assert isinstance(graph.nodes["fancy"], HostOp) and "FancyOp" in graph.nodes["fancy"].reason
