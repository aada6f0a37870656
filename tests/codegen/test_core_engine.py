"""The core engine end to end in C-simulation: a layer compiled to LOAD / GEMM / STORE instructions
(codax.codegen.core_compile), run by the generated IPs under the token scheduler (core_sim), equals the
project's golden layer (codax.codegen.golden.golden_layer: numpy, ONNX Runtime's float32
requantization) bit for bit -- zero points, padding, strides, residuals, unsigned outputs, tilings that
split the output channels, rows and the reduction."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codax.codegen.core import core_shape
from codax.codegen.core_compile import CoreLayer, Tiling, compile_layer
from codax.codegen.core_sim import Engine, output
from codax.codegen.golden import golden_layer
from codax.codegen.params import random_params
from codax.hw.library import load_accelerator
from codax.ir import Epilogue, Precision, conv2d


@pytest.fixture(scope="module")
def engine():
    return Engine(core_shape(load_accelerator("zc706-int8")))


def _case(c, k, hw, kernel, stride, pad, seed, act="relu", residual=False, bits=(8, 8, 8), signed_x=True):
    w_bits, x_bits, y_bits = bits
    prec = Precision(weight=w_bits, act=x_bits, out=y_bits)
    layer = conv2d(
        "l", c_in=c, c_out=k, hw=hw, kernel=kernel, stride=stride, pads=(pad, pad, pad, pad), precision=prec,
        epilogue=Epilogue(bias=True, activation=act, residual="r" if residual else None, requant=True),
        inputs=("x",), outputs=("y",),
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    params = random_params(layer, rng, signed_x=signed_x)
    lo, hi = (-(1 << (x_bits - 1)), (1 << (x_bits - 1)) - 1) if signed_x else (0, (1 << x_bits) - 1)
    x = rng.integers(lo, hi + 1, (c, *hw))
    res = rng.integers(-(1 << (x_bits - 1)), 1 << (x_bits - 1), (k, layer.P, layer.Q)) if residual else None
    want = golden_layer(layer, params, x[None], None if res is None else res[None])[0]
    return layer, params, x, res, want


CASES = {
    "3x3 s1, partial blocks": dict(c=40, k=48, hw=(9, 7), kernel=(3, 3), stride=(1, 1), pad=1),
    "1x1 s2 downsample": dict(c=64, k=32, hw=(8, 8), kernel=(1, 1), stride=(2, 2), pad=0, act=None),
    "7x7 s2 stem, unsigned input": dict(
        c=3, k=20, hw=(16, 16), kernel=(7, 7), stride=(2, 2), pad=3, signed_x=False
    ),
    "3x3 residual": dict(c=32, k=32, hw=(6, 6), kernel=(3, 3), stride=(1, 1), pad=1, residual=True),
    "dense": dict(c=100, k=10, hw=(1, 1), kernel=(1, 1), stride=(1, 1), pad=0, act=None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_layer_matches_golden(engine, name):
    layer, params, x, res, want = _case(**CASES[name], seed=1)
    prog = compile_layer(engine.shape, CoreLayer.of(layer, params), x=x, residual=res)
    got = output(prog, engine.run(prog))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("upstream_first", [True, False])
def test_tiled_layer_any_schedule(engine, upstream_first):
    """Several tiles (2 channel blocks of rows, 3 row tiles) and reduction chunks: the dependence tokens
    keep every buffer's writer and readers ordered whichever module the scheduler favours."""
    layer, params, x, res, want = _case(c=80, k=64, hw=(10, 10), kernel=(3, 3), stride=(1, 1), pad=1, seed=2)
    prog = compile_layer(engine.shape, CoreLayer.of(layer, params), Tiling(blocks=2, rows=4, chunk=1), x=x)
    got = output(prog, engine.run(prog, upstream_first=upstream_first))
    np.testing.assert_array_equal(got, want)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    c=st.integers(1, 70), k=st.integers(1, 40), h=st.integers(1, 9), w=st.integers(1, 9),
    kernel=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]), bits=st.sampled_from([(8, 8, 8), (4, 4, 4),
    (6, 6, 8)]), signed_x=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_random_layers(engine, c, k, h, w, kernel, stride, bits, signed_x, seed):
    pad = kernel // 2
    layer, params, x, res, want = _case(c, k, (h, w), (kernel, kernel), (stride, stride), pad, seed, bits=bits,
                                        signed_x=signed_x)  # fmt: skip
    prog = compile_layer(engine.shape, CoreLayer.of(layer, params), x=x)
    np.testing.assert_array_equal(output(prog, engine.run(prog)), want)


def test_qdq_resnet18_layers(tmp_path, engine):
    """Every layer of a QDQ ResNet-18 (ONNX Runtime's quantize_static: uint8 activations with zero points,
    per-channel int8 weights) runs on the core bit-exact against the golden layer."""
    import torch

    from codax.codegen.params import from_onnx
    from codax.frontend import export_torch, extract_graph, import_onnx, load_onnx
    from codax.frontend.zoo import resnet18
    from codax.passes import pipeline
    from tests.test_end_to_end import _quantize

    shape = (1, 3, 16, 16)
    path = _quantize(export_torch(resnet18(num_classes=10, width=8), torch.randn(shape), tmp_path / "f.onnx"),
                     tmp_path / "q.onnx", shape)  # fmt: skip
    accel = load_accelerator("zc706-int8")
    graph = extract_graph(pipeline(accel)(import_onnx(path)), accel=accel)
    model = load_onnx(path).model
    rng = np.random.default_rng(0)
    for layer in graph.layers:
        params = from_onnx(model, layer)
        lo, hi = (0, 255) if not params.x_signed else (-128, 127)
        x = rng.integers(lo, hi + 1, (layer.C, *layer.in_hw))
        rlo, rhi = (0, 255) if not params.r_signed else (-128, 127)
        res = rng.integers(rlo, rhi + 1, (layer.K, layer.P, layer.Q)) if layer.epilogue.residual else None
        xin = x.reshape(1, layer.C) if layer.op == "matmul" else x[None]
        want = golden_layer(layer, params, xin, None if res is None else res[None])
        prog = compile_layer(engine.shape, CoreLayer.of(layer, params), x=x, residual=res)
        got = output(prog, engine.run(prog))
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=layer.name)
