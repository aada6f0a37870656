"""Unsupported ops, mappings.yaml reuse and mismatch, bitwidth gating."""

from __future__ import annotations

import numpy as np
import pytest

from codax.errors import MappingError
from codax.frontend import import_onnx
from codax.ir import Mapping, save_mappings
from codax.passes import build_report, offloaded_layers, pipeline
from tests.passes.helpers import float_accel, ort_run, relax_run
from tests.passes.models import sigmoid_model


def test_unsupported_op_left_on_host_and_reported(tmp_path):
    path = sigmoid_model(tmp_path / "sig.onnx")
    accel = float_accel()
    mod = pipeline(accel)(import_onnx(path))
    rep = build_report(mod, accel)
    rows = {r.node: r for r in rep.nodes}
    assert rows["sig"].placement == "host" and "Sigmoid" in rows["sig"].reason
    assert rows["conv_a"].placement == rows["conv_b"].placement == "accelerator"
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    ref = pipeline(accel, offload=False, map_layers=False)(import_onnx(path))
    np.testing.assert_allclose(relax_run(ref, x), ort_run(path, {"x": x})[0], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def mapped(resnet_onnx):
    return pipeline(float_accel())(import_onnx(resnet_onnx))


def test_mappings_yaml_reused_exactly(resnet_onnx, mapped, tmp_path):
    offl = offloaded_layers(mapped)
    path = tmp_path / "mappings.yaml"
    save_mappings({k: o.mapping for k, o in offl.items()}, path)
    again = offloaded_layers(pipeline(float_accel(), path)(import_onnx(resnet_onnx)))
    for k, o in again.items():
        assert o.mapping_source == "mappings.yaml"
        assert o.mapping.to_dict() == offl[k].mapping.to_dict()
        assert o.cycles == pytest.approx(offl[k].cycles, rel=1e-6)


def test_mappings_yaml_for_another_shape_is_an_error(resnet_onnx, mapped):
    offl = offloaded_layers(mapped)
    a, b = "/layer1/layer1.0/conv1/Conv", "/layer4/layer4.0/conv1/Conv"
    wrong = Mapping.from_dict({**offl[b].mapping.to_dict(), "layer": a})  # layer4's tiling on layer1
    with pytest.raises(MappingError, match="layer1.0/conv1"):
        pipeline(float_accel(), {a: wrong})(import_onnx(resnet_onnx))


def test_mappings_yaml_naming_unknown_layer_is_an_error(resnet_onnx, mapped):
    m = next(iter(offloaded_layers(mapped).values())).mapping
    bogus = Mapping.from_dict({**m.to_dict(), "layer": "/not/a/Conv"})
    with pytest.raises(MappingError, match="not/a/Conv"):
        pipeline(float_accel(), {"/not/a/Conv": bogus})(import_onnx(resnet_onnx))


def test_bitwidth_gate_rejects_wide_integer_layers(digits_qdq):
    from dataclasses import replace

    from tests.passes.helpers import int8_accel

    narrow = replace(int8_accel(), name="int4-only", weight_bits=(4,), act_bits=(4,))
    mod = pipeline(narrow, map_layers=False)(import_onnx(digits_qdq))
    rep = build_report(mod, narrow)
    convs = [r for r in rep.nodes if r.op_type == "Conv"]
    assert convs and all(r.placement == "host" and "bitwidth int8" in r.reason for r in convs)
