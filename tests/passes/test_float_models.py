"""Float ResNet-18 / MobileNetV2: partitioned modules compute what ONNX Runtime computes, every
conv/dense is offloaded, and layer shapes and MACs equal an independent count from the ONNX graph."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codax.frontend import extract_graph, import_onnx
from codax.ir import Layer
from codax.passes import build_report, offloaded_layers, pipeline, write_report
from tests.passes.helpers import float_accel, int8_accel, ort_run, relax_run
from tests.passes.onnx_count import count


@pytest.mark.parametrize("model", ["resnet_onnx", "mobilenet_onnx"])
def test_partitioned_reference_matches_ort(model, request):
    path = request.getfixturevalue(model)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    ref = pipeline(float_accel(), offload=False, map_layers=False)(import_onnx(path))
    got = relax_run(ref, x)
    want = ort_run(path, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["resnet_onnx", "mobilenet_onnx"])
def test_every_mac_node_offloaded_with_onnx_shapes(model, request):
    path = request.getfixturevalue(model)
    mod = pipeline(float_accel(), map_layers=False)(import_onnx(path))
    rep = build_report(mod, float_accel())
    expected = count(path)
    layers = {r.node: r for r in rep.nodes if r.op_type in ("Conv", "Gemm", "MatMul")}
    assert set(layers) == set(expected)
    assert all(r.placement == "accelerator" for r in layers.values())
    graph = extract_graph(path)
    assert {layer.name: layer.macs for layer in graph.layers} == {k: v["macs"] for k, v in expected.items()}
    for layer in graph.layers:
        ys = expected[layer.name]["out"]
        assert layer.N * layer.G * layer.K == ys[0] * ys[1] if layer.op == "conv" else layer.K == ys[1]
    # every ONNX node is accounted for exactly once
    assert len(rep.nodes) == len({r.node for r in rep.nodes})


def test_resnet_epilogues_bias_vs_residual(resnet_onnx):
    mod = pipeline(float_accel(), map_layers=False)(import_onnx(resnet_onnx))
    g = extract_graph(mod)
    conv2 = g.nodes["/layer2/layer2.0/conv2/Conv"]
    down = g.nodes["/layer2/layer2.0/downsample/downsample.0/Conv"]
    assert isinstance(conv2, Layer) and isinstance(down, Layer)
    # the block's Add joins two conv chains: exactly one of them takes it (and the Relu) as its
    # residual epilogue, naming the other's output; both keep their own (folded BN) bias
    with_res, other = (conv2, down) if conv2.epilogue.residual else (down, conv2)
    assert with_res.epilogue.residual == other.outputs[0] and with_res.epilogue.activation == "relu"
    assert other.epilogue.residual is None and other.epilogue.activation is None
    assert conv2.epilogue.bias and down.epilogue.bias
    assert down.stride == (2, 2) and down.R == 1


def test_mobilenet_depthwise_and_relu6(mobilenet_onnx):
    g = extract_graph(pipeline(float_accel(), map_layers=False)(import_onnx(mobilenet_onnx)))
    dws = [layer for layer in g.layers if layer.kind == "depthwise"]
    assert dws and all(d.epilogue.activation == "relu6" for d in dws)
    assert any(d.stride == (2, 2) for d in dws)


def test_mapped_and_annotated_resnet(resnet_onnx, tmp_path):
    accel = float_accel()
    mod = pipeline(accel)(import_onnx(resnet_onnx))
    text = mod.script()
    assert '"Codegen": "codax"' in text and "codax.mapping_summary" in text and "codax.cycles" in text
    offl = offloaded_layers(mod)
    assert len(offl) == 21
    for o in offl.values():
        assert o.mapping is not None and o.mapping.layer == o.layer.name
        assert o.cycles > 0 and o.energy_pj > 0 and o.mapping_source == "mapper"
    rep = write_report(mod, accel, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["totals"]["offloaded_layers"] == 21
    assert data["totals"]["cycles"] == pytest.approx(sum(o.cycles for o in offl.values()))
    table = rep.table()
    print(table)
    assert "/layer1/layer1.0/conv1/Conv" in table and "totals:" in table


def test_float_model_on_int_only_accelerator_stays_on_host(resnet_onnx):
    accel = int8_accel()
    mod = pipeline(accel, map_layers=False)(import_onnx(resnet_onnx))
    rep = build_report(mod, accel)
    convs = [r for r in rep.nodes if r.op_type == "Conv"]
    assert convs and all(r.placement == "host" and "no float datapath" in r.reason for r in convs)
    g = extract_graph(mod)
    assert not g.layers and g.nodes["/conv1/Conv"].reason.startswith("fp32 layer")
