"""The searched widths reach the exported model: ONNX Runtime on net.onnx computes the searched
network at its widths, the widths read back from the model are the ones the search costed, and the
compiler lowers it at them."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from codax.frontend import extract_graph, import_onnx
from codax.passes import offloaded_layers, pipeline
from codax.search.config import load_config
from codax.search.cosearch import CoSearch
from codax.search.derive import Design, build_graph, derived_module, export_onnx, export_qdq
from codax.search.finalize import retrain
from codax.search.quantized import QuantizedNet
from codax.search.supernet import fake_quant
from tests.passes.helpers import int8_accel, ort_session, relax_vm
from tests.search.conftest import TINY

# stem, b0 (a residual inverted-residual block with an expand layer), b1 (strided), fc
BITS = [(8, 6), (4, 6), (6, 4), (6, 8)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cfg = copy.deepcopy(TINY)
    cfg["data"]["limit"] = 600
    cfg["network"]["stem"]["width"] = 8  # b0: 8 -> 8 channels at stride 1, so it adds its input
    cs = CoSearch(load_config(cfg))
    ops = []
    for unit in cs.net.units:
        ir = [i for i, op in enumerate(unit.ops) if op.kind == "ir" and op.expansion == 3 and op.kernel == 3]
        ops.append(ir[0] if ir else 0)
    d0 = cs.design()
    design = Design(ops, BITS, d0.accel, d0.maps)
    torch.manual_seed(0)
    model = derived_module(cs.net, design)
    retrain(model, cs.data, 10, 0.05, 64, True, 0)
    model.quantize = False
    model.eval().fuse()
    out = tmp_path_factory.mktemp("bits")
    export_onnx(model, str(out / "float.onnx"), cs.data.shape)
    calib = cs.data.train[0][:64]
    res = export_qdq(model, str(out / "float.onnx"), str(out / "net.onnx"), calib, cs.data.test)
    return {"cs": cs, "design": design, "model": model, "calib": calib, "path": out / "net.onnx", "res": res}


def test_exported_model_computes_the_quantized_network(exported):
    """Top-1 agrees on every test image and the logits are within one quantization step."""
    cs, path = exported["cs"], exported["path"]
    qnet = QuantizedNet(exported["model"], exported["calib"])
    assert "b0.res" in qnet.points, "the fixture must exercise a residual block"
    x, y = cs.data.test
    with torch.no_grad():
        ref = qnet(x).numpy()
    got = ort_session(path).run(None, {"input": x.numpy()})[0]
    step = qnet.points["logits"].scale
    print(f"{len(x)} test images, max |ORT - PyTorch| = {np.abs(got - ref).max() / step:.2f} steps")
    # per layer on PyTorch's own integer tensors within one step; end to end a rounding tie may
    # compound across layers on some CPUs, so only a gross difference fails there
    res = exported["res"]
    assert res["onnx_qdq_layers_failing"] == [] and res["onnx_qdq_layer_max_steps"] <= 1
    assert res["onnx_qdq_layers_checked"] >= 8  # every quantization point of the four units and the logits
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9
    # the network learned something, so agreement is not agreement on noise
    assert (ref.argmax(1) == y.numpy()).mean() > 0.3


def test_widths_read_back_are_the_searched_ones(exported):
    """The widths the import reads from net.onnx (types and ranges, no metadata) are the ones the
    search's cost model charged each layer: weight, activation and output bits."""
    graph, _ = build_graph(exported["cs"].net, exported["design"])
    searched = {la.name: la.precision for la in graph.layers}
    read = {la.name: la.precision for la in extract_graph(exported["path"]).layers}
    assert read == searched
    assert {(p.weight, p.act) for p in read.values()} >= {(4, 6), (6, 4)}


def test_export_uses_int4_and_range_clips(exported):
    m = onnx.load(str(exported["path"]))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 21
    inits = {t.name: t for t in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}
    producer = {o: n for n in m.graph.node for o in n.output}
    for layer, wb in (("b0.expand", 4), ("b1.dw", 6), ("stem", 8)):
        w = inits[producer[nodes[layer].input[1]].input[0]]
        v = numpy_helper.to_array(w).astype(int)
        if wb == 4:
            assert w.data_type == TensorProto.INT4
        else:
            assert w.data_type == TensorProto.INT8
            assert -(2 ** (wb - 1)) <= v.min() and v.max() <= 2 ** (wb - 1) - 1
            assert np.abs(v).max() == 2 ** (wb - 1) - 1  # the grid's top is reached: not narrower
    clips = {}
    for n in m.graph.node:
        if n.op_type == "Clip":
            lo, hi = (int(numpy_helper.to_array(inits[i])) for i in n.input[1:])
            clips[producer[n.input[0]].input[0]] = (lo, hi)
    assert sorted(set(clips.values())) == [(-32, 31), (-8, 7)]
    clip = producer[producer[nodes["b1.dw"].input[0]].input[0]]  # Q -> Clip -> DQ -> b1.dw
    assert clip.op_type == "Clip" and clips[producer[clip.input[0]].input[0]] == (-8, 7)  # 4-bit input


def test_compiled_export_matches_ort(exported):
    """The compiler lowers every layer to an integer layer at its widths; the lowered model on the
    Relax VM is within one step of ONNX Runtime."""
    path = exported["path"]
    offl = offloaded_layers(pipeline(int8_accel())(import_onnx(path, {"input": [1, 1, 8, 8]})))
    assert set(offl) == set(exported["model"].layer_names())
    run = relax_vm(
        pipeline(int8_accel(), offload=False, map_layers=False)(import_onnx(path, {"input": [1, 1, 8, 8]}))
    )
    sess = ort_session(path)
    step = QuantizedNet(exported["model"], exported["calib"]).points["logits"].scale
    for x in exported["cs"].data.test[0][:20].numpy():
        got, want = run(x[None]), sess.run(None, {"input": x[None]})[0]
        assert np.abs(got - want).max() <= step * 1.0001


def _qdq(bits: int, amax: float) -> onnx.ModelProto:
    """x -> QuantizeLinear -> (Clip) -> DequantizeLinear at fake_quant's scale: INT4 at 4 bits, INT8
    restricted by a Clip at 6, INT8 at 8."""
    qmax = 2 ** (bits - 1) - 1
    scale = float(torch.tensor(amax, dtype=torch.float32) / qmax)
    ztype = TensorProto.INT4 if bits == 4 else TensorProto.INT8
    inits = [
        numpy_helper.from_array(np.array(scale, np.float32), "s"),
        helper.make_tensor("z", ztype, [], [0]),
        numpy_helper.from_array(np.array(-qmax - 1, np.int8), "lo"),
        numpy_helper.from_array(np.array(qmax, np.int8), "hi"),
    ]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])]
    if bits == 6:
        nodes.append(helper.make_node("Clip", ["q", "lo", "hi"], ["qc"]))
    nodes.append(helper.make_node("DequantizeLinear", ["qc" if bits == 6 else "q", "s", "z"], ["y"]))
    g = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [300])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [300])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


@settings(max_examples=30, deadline=None)
@given(bits=st.sampled_from([4, 6, 8]), amax=st.floats(0.01, 10.0), seed=st.integers(0, 2**16))
def test_fake_quant_is_quantize_dequantize_linear(bits, amax, seed):
    """The search's fake_quant with a static range equals ONNX Runtime's QuantizeLinear ->
    DequantizeLinear at the same scale: rounding (ties to even), saturation at the grid's ends."""
    qmax = 2 ** (bits - 1) - 1
    scale = float(torch.tensor(amax, dtype=torch.float32) / qmax)
    rng = np.random.default_rng(seed)
    ties = (rng.integers(-qmax - 3, qmax + 3, 100) + 0.5) * scale  # exactly half-way and beyond the ends
    x = np.concatenate([rng.normal(0, amax, 200), ties]).astype(np.float32)
    want = ort.InferenceSession(_qdq(bits, amax).SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    got = fake_quant(torch.from_numpy(x), bits, torch.tensor(amax, dtype=torch.float32)).numpy()
    np.testing.assert_array_equal(got, want)


@settings(max_examples=6, deadline=None)
@given(
    bits=st.lists(st.tuples(st.sampled_from([4, 6, 8]), st.sampled_from([4, 6, 8])), min_size=4, max_size=4)
)
def test_any_widths_export_exactly(exported, tmp_path_factory, bits):
    """For any per-unit widths (an untrained network with non-trivial batch-norm statistics), ONNX
    Runtime on the export equals QuantizedNet within one logit step and reads back the widths."""
    cs, d = exported["cs"], exported["design"]
    design = Design(d.ops, bits, d.accel, d.maps)
    torch.manual_seed(1)
    model = derived_module(cs.net, design)
    model.train()
    with torch.no_grad():
        model(cs.data.train[0][:64])
    model.eval().fuse()
    out = tmp_path_factory.mktemp("any")
    export_onnx(model, str(out / "float.onnx"), cs.data.shape)
    res = export_qdq(
        model, str(out / "float.onnx"), str(out / "net.onnx"), cs.data.train[0][:64], cs.data.test
    )
    assert res["onnx_qdq_layers_failing"] == [] and res["onnx_qdq_layer_max_steps"] <= 1
    graph, _ = build_graph(cs.net, design)
    assert {la.name: la.precision for la in extract_graph(out / "net.onnx").layers} == {
        la.name: la.precision for la in graph.layers
    }
