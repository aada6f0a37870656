"""The core engine end to end in C-simulation: a layer compiled to LOAD / GEMM / STORE instructions
(codax.codegen.core_compile), run by the generated IPs under the token scheduler (core_sim), equals the
project's golden layer (codax.codegen.golden.golden_layer: numpy, ONNX Runtime's float32
requantization) bit for bit -- zero points, padding, strides, residuals, unsigned outputs, tilings that
split the output channels, rows and the reduction, arrays with more rows than columns (an accumulator
vector stored as several output vectors), and layers with more output channels than param_buf holds
(parameters reloaded per window of channels) -- and the cycle model equals the counted cycles."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codax.codegen.core import core_shape
from codax.codegen.core_compile import CoreLayer, Tiling, compile_layer, param_windows
from codax.codegen.core_model import layer_cycles
from codax.codegen.core_sim import Engine, output
from codax.codegen.golden import golden_layer
from codax.codegen.params import random_params
from codax.hw import library
from codax.hw.library import load_accelerator
from codax.ir import Epilogue, Precision, conv2d, load_accelerator_yaml


def reshaped_zc706(rows: int, cols: int):
    """zc706-int8 with a rows x cols array and its buffers' bytes unchanged."""
    d = yaml.safe_load((Path(library.__file__).parent / "accelerators" / "zc706-int8.yaml").read_text())
    d["name"] = f"zc706-int8-{rows}x{cols}"
    d["pe_array"].update(rows=rows, cols=cols)
    return load_accelerator_yaml(yaml.safe_dump(d))


@pytest.fixture(scope="module")
def engine():
    return Engine(core_shape(load_accelerator("zc706-int8")))


@pytest.fixture(scope="module")
def tall_engine():
    """32 x 16: more rows than columns, each ROWS-lane accumulator vector two COLS-lane output vectors."""
    return Engine(core_shape(reshaped_zc706(32, 16)))


def _run_checked(engine, core_layer, tiling, x, res, want, upstream_first=True):
    """Run the compiled layer; assert it bit-exact and its counted cycles equal to the cycle model's."""
    prog = compile_layer(engine.shape, core_layer, tiling, x=x, residual=res)
    run = engine.run(prog, upstream_first=upstream_first)
    np.testing.assert_array_equal(output(prog, run), want)
    model = layer_cycles(engine.shape, core_layer.conv, core_layer.x_bits, core_layer.w_bits,
                         core_layer.y_bits, core_layer.residual, core_layer.r_bits, prog.tiling)  # fmt: skip
    assert run.cycles == model.cycles
    return prog


def _case(c, k, hw, kernel, stride, pad, seed, act="relu", residual=False, bits=(8, 8, 8), signed_x=True,
          groups=1):  # fmt: skip
    w_bits, x_bits, y_bits = bits
    prec = Precision(weight=w_bits, act=x_bits, out=y_bits)
    layer = conv2d(
        "l", c_in=c, c_out=k, hw=hw, kernel=kernel, stride=stride, pads=(pad, pad, pad, pad), precision=prec,
        groups=groups,
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
    "3x3 depthwise": dict(c=48, k=48, hw=(7, 7), kernel=(3, 3), stride=(1, 1), pad=1, groups=48),
    "3x3 s2 depthwise, unsigned": dict(
        c=40, k=40, hw=(9, 9), kernel=(3, 3), stride=(2, 2), pad=1, groups=40, signed_x=False
    ),
    "grouped 4, 2 outputs a group": dict(c=64, k=8, hw=(5, 5), kernel=(3, 3), stride=(1, 1), pad=1, groups=4),
}


@pytest.mark.parametrize("name", list(CASES))
def test_layer_matches_golden(engine, name):
    layer, params, x, res, want = _case(**CASES[name], seed=1)
    prog = compile_layer(engine.shape, CoreLayer.of(layer, params), x=x, residual=res)
    got = output(prog, engine.run(prog))
    np.testing.assert_array_equal(got, want)


def test_tiled_layer_any_schedule(engine):
    """Several tiles (2 channel blocks of rows, 3 row tiles) and reduction chunks, double- and
    single-buffered: the dependence tokens keep every buffer's writer and readers ordered whichever
    module the scheduler favours, and a run leaves nothing a later run reads."""
    layer, params, x, res, want = _case(c=80, k=64, hw=(10, 10), kernel=(3, 3), stride=(1, 1), pad=1, seed=2)
    for double in (True, False):
        tiling = Tiling(blocks=2, rows=4, chunk=1, double=double)
        prog = compile_layer(engine.shape, CoreLayer.of(layer, params), tiling, x=x)
        for upstream_first in (True, False, True):
            got = output(prog, engine.run(prog, upstream_first=upstream_first))
            np.testing.assert_array_equal(got, want, err_msg=f"double={double} upstream={upstream_first}")


# 48 channels on 32 rows: the second row block's second output vector is past the channels (not stored)
TALL_CASES = [
    "3x3 s1, partial blocks",
    "7x7 s2 stem, unsigned input",
    "3x3 residual",
    "dense",
    "3x3 depthwise",
]


@pytest.mark.parametrize("name", TALL_CASES)
def test_rows_over_cols_layer_matches_golden(tall_engine, name):
    layer, params, x, res, want = _case(**CASES[name], seed=1)
    _run_checked(tall_engine, CoreLayer.of(layer, params), None, x, res, want)


def test_rows_over_cols_tiled_layer(tall_engine):
    """Several row-block tiles, row tiles and reduction chunks on 32 x 16, both buffering modes, both
    scheduler preferences."""
    layer, params, x, res, want = _case(c=40, k=72, hw=(6, 5), kernel=(3, 3), stride=(1, 1), pad=1, seed=4,
                                        residual=True, bits=(8, 8, 6))  # fmt: skip
    for tiling in (
        Tiling(blocks=1, rows=2, chunk=1, double=True),
        Tiling(blocks=2, rows=3, chunk=2, double=False),
    ):
        for upstream_first in (True, False):
            _run_checked(tall_engine, CoreLayer.of(layer, params), tiling, x, res, want, upstream_first)


# 1,280 output channels (MobileNetV2's last 1x1 convolution) exceed param_buf's 1,023 channel entries
WIDE = dict(c=40, k=1280, hw=(2, 3), kernel=(1, 1), stride=(1, 1), pad=0, residual=True)


@pytest.mark.parametrize(
    "tiling", [None, Tiling(blocks=40, rows=1, chunk=1, double=True), Tiling(24, 2, 2, double=False)],
    ids=["best", "two-equal-windows", "single-buffered"],
)  # fmt: skip
def test_more_output_channels_than_param_buf(engine, tiling):
    """The compiler splits the channels into windows of whole tiles and reloads the parameters per
    window. With two windows of 640 channels the second's load overwrites entries the first's last
    stores read: upstream-first scheduling runs every load as early as its tokens allow, so only the
    barrier before the reload keeps those stores' parameters."""
    layer, params, x, res, want = _case(**WIDE, seed=3)
    core_layer = CoreLayer.of(layer, params)
    for upstream_first in (True, False):
        prog = _run_checked(engine, core_layer, tiling, x, res, want, upstream_first)
        assert len(param_windows(engine.shape, core_layer.k, prog.tiling.blocks)) == 2


def test_more_output_channels_than_param_buf_rows_over_cols(tall_engine):
    layer, params, x, res, want = _case(**WIDE, seed=5)
    core_layer = CoreLayer.of(layer, params)
    for tiling in (None, Tiling(blocks=20, rows=2, chunk=2, double=True)):
        _run_checked(tall_engine, core_layer, tiling, x, res, want)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    g=st.integers(1, 8), cg=st.integers(1, 12), kg=st.integers(1, 6), h=st.integers(1, 7),
    kernel=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_random_grouped_layers(engine, g, cg, kg, h, kernel, stride, seed):
    layer, params, x, res, want = _case(g * cg, g * kg, (h, h + 1), (kernel, kernel), (stride, stride),
                                        kernel // 2, seed, groups=g)  # fmt: skip
    prog = compile_layer(engine.shape, CoreLayer.of(layer, params), x=x)
    np.testing.assert_array_equal(output(prog, engine.run(prog)), want)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    c=st.integers(1, 70), k=st.integers(1, 40), h=st.integers(1, 9), w=st.integers(1, 9),
    kernel=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]),
    bits=st.sampled_from([(8, 8, 8), (4, 4, 4), (6, 6, 8)]), signed_x=st.booleans(),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_random_layers(engine, c, k, h, w, kernel, stride, bits, signed_x, seed):
    pad = kernel // 2
    layer, params, x, res, want = _case(c, k, (h, w), (kernel, kernel), (stride, stride), pad, seed,
                                        bits=bits, signed_x=signed_x)  # fmt: skip
    prog = compile_layer(engine.shape, CoreLayer.of(layer, params), x=x)
    np.testing.assert_array_equal(output(prog, engine.run(prog)), want)


@pytest.mark.parametrize(
    "net, array", [("resnet18", None), ("mobilenet_v2", None), ("mobilenet_v2", (32, 16))],
    ids=["resnet18", "mobilenet_v2", "mobilenet_v2-32x16"],
)  # fmt: skip
def test_qdq_network(tmp_path, net, array):
    """A whole QDQ network (ONNX Runtime's quantize_static: uint8 activations with zero points,
    per-channel int8 weights; MobileNetV2's depthwise layers grouped) with every layer on the core and
    the host ops (quantize, pooling, adds) between them equals the golden network (numpy layers, ONNX's
    reference evaluator for host ops) on every tensor, and every layer ran (cycles counted); on
    zc706-int8, and on its buffers reshaped to a 32 x 16 array (`array`)."""
    import torch

    from codax.codegen.core_runner import CoreLayerRunner
    from codax.codegen.golden_net import golden_network
    from codax.codegen.params import from_onnx
    from codax.frontend import export_torch, extract_graph, import_onnx, load_onnx
    from codax.frontend.zoo import mobilenet_v2, resnet18
    from codax.passes import pipeline
    from tests.test_end_to_end import _quantize

    shape = (1, 3, 16, 16)
    model = resnet18(num_classes=10, width=8) if net == "resnet18" else mobilenet_v2(10, width_mult=0.25)
    path = _quantize(export_torch(model, torch.randn(shape), tmp_path / "f.onnx"), tmp_path / "q.onnx", shape)
    accel = load_accelerator("zc706-int8") if array is None else reshaped_zc706(*array)
    graph = extract_graph(pipeline(accel)(import_onnx(path)), accel=accel)
    model = load_onnx(path).model
    params = {layer.name: from_onnx(model, layer) for layer in graph.layers}
    x = {model.graph.input[0].name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    runner = CoreLayerRunner(core_shape(accel))
    got = golden_network(model, graph, params, x, layer_runner=runner)
    want = golden_network(model, graph, params, x)
    assert set(runner.cycles) == {layer.name for layer in graph.layers}
    assert len(runner.cycles) >= (20 if net == "resnet18" else 50)
    for name in want:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)
