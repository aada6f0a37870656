"""Every layer of QDQ ResNet-18 and MobileNetV2 (random weights, reduced size, calibrated on real
digits), compiled from the mapping the pipeline chose: the instrumented C-simulation equals the
numpy integer golden model bit for bit, and its transfer and MAC counts equal the cost model's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codax.codegen import LayerKernel, compare_counts, golden_layer
from codax.codegen.params import from_onnx
from codax.frontend import export_torch, extract_graph, import_onnx, load_onnx
from codax.frontend.zoo import mobilenet_v2, resnet18
from codax.hw import load_accelerator
from codax.passes import offloaded_layers, pipeline
from tests.test_end_to_end import _quantize

ACCEL = "zc706-int8"


@pytest.mark.parametrize("net", ["resnet18", "mobilenet_v2"])
def test_every_layer_bit_exact_and_counted(tmp_path, net):
    shape = (1, 3, 16, 16)
    model = resnet18(num_classes=10, width=8) if net == "resnet18" else mobilenet_v2(10, width_mult=0.25)
    path = _quantize(export_torch(model, torch.randn(shape), tmp_path / "f.onnx"), tmp_path / "q.onnx", shape)
    accel = load_accelerator(ACCEL)
    mod = pipeline(accel)(import_onnx(path))
    offl = offloaded_layers(mod)
    graph = extract_graph(mod, accel=accel)
    lm = load_onnx(path)
    rng = np.random.default_rng(0)
    checked = 0
    for layer in graph.layers:
        mapping = offl[layer.name].mapping
        params = from_onnx(lm.model, layer)
        assert layer.precision.kind == "int"
        kernel = LayerKernel(layer, accel, mapping, count=True)
        c, (h, w) = layer.G * layer.C, layer.in_hw
        x_shape = (layer.N, c) if layer.op == "matmul" else (layer.N, c, h, w)
        lo, hi = (0, 255) if not params.x_signed else (-128, 127)
        x = rng.integers(lo, hi + 1, size=x_shape).astype(np.uint8 if lo == 0 else np.int8)
        res = None
        if layer.epilogue.residual:
            res = rng.integers(lo, hi + 1, size=(layer.N, layer.G * layer.K, layer.P, layer.Q)).astype(
                x.dtype
            )
        y, counts = kernel(params, x, res)
        assert np.array_equal(y, golden_layer(layer, params, x, res)), layer.name
        check = compare_counts(layer, accel, mapping, counts)
        assert check.ok, f"{layer.name}: {check}"
        checked += 1
    assert checked == len(graph.layers) >= (20 if net == "resnet18" else 50)
