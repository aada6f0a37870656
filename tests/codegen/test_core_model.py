"""The core engine's cycle model (codax.codegen.core_model) against the cycles of the compiled program
under core_sim's token scheduler on zc706-int8: random layers with forced small tilings (several tiles
and reduction chunks, double- and single-buffered; x-tiles) and every layer of a QDQ ResNet-18. The
model is the scheduler's timeline in closed form, so it agrees to the cycle, with each module's busy
cycles."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from codax.codegen.core import core_shape
from codax.codegen.core_compile import CoreLayer, Tiling, choose_tiling, compile_layer, tiling_fits
from codax.codegen.core_layout import Conv
from codax.codegen.core_model import layer_cycles
from codax.codegen.core_sim import Engine
from codax.hw.library import load_accelerator


@pytest.fixture(scope="module")
def engine():
    return Engine(core_shape(load_accelerator("zc706-int8")))


def _simulated(engine, layer: CoreLayer, tiling: Tiling | None):
    return engine.run(compile_layer(engine.shape, layer, tiling))


def _modelled(engine, layer: CoreLayer, tiling: Tiling | None):
    return layer_cycles(
        engine.shape,
        layer.conv,
        layer.x_bits,
        layer.w_bits,
        layer.y_bits,
        layer.residual,
        layer.r_bits,
        tiling,
    )


def _assert_same(model, run, what: str) -> None:
    got = (model.cycles, model.load, model.gemm, model.store)
    want = (run.cycles, run.busy["load"], run.busy["gemm"], run.busy["store"])
    assert got == want, f"{what}: model (cycles, load, gemm, store) {got}, simulated {want}"


def _layer(conv: Conv, x_bits: int, w_bits: int, y_bits: int, residual: bool, r_bits: int) -> CoreLayer:
    """A layer with zero weights: its program, and so its cycles, do not depend on the values."""
    k = conv.groups * conv.kg
    return CoreLayer(
        "l", conv, x_bits, True, 0, w_bits, y_bits, np.zeros((k, conv.cg, conv.r, conv.s), np.int64),
        np.zeros(k, np.int32), True, np.ones(k, np.float32), residual, r_bits,
    )  # fmt: skip


widths = st.sampled_from([8, 6, 4])


@pytest.mark.parametrize(
    "groups, cg, kg, stride",
    [(96, 1, 1, 1), (144, 1, 1, 2), (4, 16, 8, 1), (3, 40, 20, 1)],
    ids=["depthwise", "depthwise-s2", "grouped", "grouped-across-blocks"],
)
def test_grouped_layers(engine, groups, cg, kg, stride):
    """Grouped layers reduce over each tile's channel window only (core_compile.channel_window): a tile
    opens at its window's first block, not block 0."""
    conv = Conv(groups, cg, kg, 8, 8, 3, 3, (stride, stride), (1, 1))
    layer = _layer(conv, 8, 8, 8, False, 8)
    _assert_same(_modelled(engine, layer, None), _simulated(engine, layer, None), f"{conv}")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    c=st.integers(1, 100), k=st.integers(1, 100), h=st.integers(1, 12), w=st.integers(1, 12),
    kernel=st.sampled_from([1, 3, 5]), stride=st.sampled_from([1, 2]), x_bits=widths, w_bits=widths,
    y_bits=widths, r_bits=widths, residual=st.booleans(), data=st.data(),
)  # fmt: skip
def test_random_layers(engine, c, k, h, w, kernel, stride, x_bits, w_bits, y_bits, r_bits, residual, data):
    """Layers with padding (kernel // 2, so edge tiles read padding rows) under the compiler's tiling or a
    smaller one drawn inside it, in either buffering mode."""
    conv = Conv(1, c, k, h, w, kernel, kernel, (stride, stride), (kernel // 2, kernel // 2))
    layer = _layer(conv, x_bits, w_bits, y_bits, residual, r_bits)
    best = choose_tiling(engine.shape, conv)
    tiling = data.draw(
        st.none()
        | st.builds(
            Tiling,
            st.integers(1, best.blocks),
            st.integers(1, best.rows),
            st.integers(1, best.chunk),
            st.booleans() if best.double else st.just(False),
        )
    )
    assume(tiling is None or tiling_fits(engine.shape, conv, tiling))  # the compiler refuses the others
    _assert_same(_modelled(engine, layer, tiling), _simulated(engine, layer, tiling), f"{conv} {tiling}")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    c=st.integers(1, 80), k=st.integers(1, 80), h=st.integers(1, 5), w=st.integers(2, 48),
    kernel=st.sampled_from([1, 3, 7]), stride=st.sampled_from([1, 2]), residual=st.booleans(), data=st.data(),
)  # fmt: skip
def test_random_x_tiles(engine, c, k, h, w, kernel, stride, residual, data):
    """x-tiles (output rows split into spans of columns; edge tiles read padding columns) in either
    buffering mode: the model walks the same windows, loads and stores."""
    conv = Conv(1, c, k, h, w, kernel, kernel, (stride, stride), (kernel // 2, kernel // 2))
    assume(conv.out[1] > 1)
    tiling = Tiling(
        data.draw(st.integers(1, 4)), data.draw(st.integers(1, conv.out[0])), data.draw(st.integers(1, 3)),
        data.draw(st.booleans()), data.draw(st.integers(1, conv.out[1] - 1)),
    )  # fmt: skip
    assume(tiling_fits(engine.shape, conv, tiling))
    layer = _layer(conv, 8, 8, 8, residual, 8)
    _assert_same(_modelled(engine, layer, tiling), _simulated(engine, layer, tiling), f"{conv} {tiling}")


def test_tiles_and_chunks(engine):
    """3 tiles of output channels (2 row blocks, 32 channels) x 5 of output rows x 3 reduction chunks:
    45 steps, double-buffered (a step's loads run under the previous GEMM) and single-buffered (they
    wait for it: the run is longer)."""
    conv = Conv(1, 96, 96, 10, 10, 3, 3, (1, 1), (1, 1))
    layer = _layer(conv, 8, 8, 8, True, 8)
    runs = {}
    for double in (True, False):
        tiling = Tiling(blocks=2, rows=2, chunk=1, double=double)
        model, run = _modelled(engine, layer, tiling), _simulated(engine, layer, tiling)
        _assert_same(model, run, f"double={double}")
        assert (model.steps, model.tiles) == (45, 15)
        runs[double] = run.cycles
    assert runs[False] > runs[True]


def test_qdq_resnet18_layers(tmp_path, engine):
    """Every layer of a QDQ ResNet-18 (as tests/codegen/test_core_engine.py builds it) under the
    compiler's tiling: the model equals the simulated cycles on every layer (so their geometric mean
    ratio is 1)."""
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
    layers = [CoreLayer.of(layer, from_onnx(model, layer)) for layer in graph.layers]
    assert len(layers) == 21
    ratios = []
    for layer in layers:
        got, run = _modelled(engine, layer, None), _simulated(engine, layer, None)
        _assert_same(got, run, layer.name)
        ratios.append(got.cycles / run.cycles)
    assert abs(np.exp(np.mean(np.log(ratios))) - 1) < 0.03 and max(abs(r - 1) for r in ratios) < 0.10
