"""Layers whose output row the core's buffers cannot hold whole, run in x-tiles (a tile: output rows x a
span of output columns, codax.codegen.core_compile): in C-simulation each equals the project's golden
layer (codax.codegen.golden.golden_layer) bit for bit and the cycle model equals the counted cycles --
a 7x7/2 stem on a wide input, a 3x3 stride-2 convolution with a wide row, a residual, a width of a few
columns, both buffering modes -- the tiling search picks x-tiles only where a whole row does not fit,
and a layer the core refuses is named in the error."""

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from codax.codegen.core import core_shape
from codax.codegen.core_compile import CoreLayer, Tiling, compile_layer, in_cols, tiling_fits, x_tiles
from codax.codegen.core_layout import Conv
from codax.codegen.core_sim import Engine
from codax.codegen.core_tiling import best_tiling
from codax.errors import UnsupportedError
from codax.hw.library import load_accelerator
from tests.codegen.test_core_engine import _case, _run_checked, reshaped_zc706


@pytest.fixture(scope="module")
def engine():
    return Engine(core_shape(load_accelerator("zc706-int8")))


# a 7x7/2 stem 48 outputs wide: its micro-op kernel for one whole row (48 pixels x 50 runs) exceeds
# zc706-int8's 2,048 micro-ops, so the search must split the row
WIDE_STEM = dict(c=3, k=24, hw=(6, 96), kernel=(7, 7), stride=(2, 2), pad=3, signed_x=False)
# a 3x3/2 convolution 210 outputs wide: 210 pixels x 10 runs exceed the micro-ops, single-buffered too
WIDE_ROW = dict(c=8, k=16, hw=(3, 420), kernel=(3, 3), stride=(2, 2), pad=1, bits=(8, 8, 6))


def test_in_cols_window():
    """A tile's input columns against the convolution's arithmetic: output column x reads padded input
    columns x * stride .. x * stride + (S - 1) * dilation, i.e. input columns minus the padding."""
    conv = Conv(1, 3, 8, 10, 20, 7, 7, (2, 2), (3, 3))  # 10 x 20 -> 5 x 10
    assert in_cols(conv, 0, 4) == (-3, 13, 3, 0)  # columns -3 .. 9: 3 of padding, none on the right
    assert in_cols(conv, 8, 2) == (13, 9, 0, 2)  # columns 13 .. 21: 20 and 21 are padding
    assert in_cols(conv, 0, 10) == (-3, 26, 3, 3)  # the whole row: the whole padded row
    assert x_tiles(conv, 4) == [(0, 4), (4, 4), (8, 2)]


def test_search_splits_rows_only_where_they_do_not_fit(engine):
    """The stem of ResNet-18 at 224 x 224 on zc706-int8: no tile of one whole output row fits in either
    buffering mode, the chosen tiling has x-tiles and fits; a 56 x 56 layer keeps whole rows."""
    stem = Conv(1, 3, 64, 224, 224, 7, 7, (2, 2), (3, 3))
    for double in (True, False):
        assert not tiling_fits(engine.shape, stem, Tiling(1, 1, 1, double))
    t = best_tiling(engine.shape, stem, 8, 8, 8)
    assert t.cols is not None and 1 <= t.cols < 112 and tiling_fits(engine.shape, stem, t)
    assert best_tiling(engine.shape, Conv(1, 64, 64, 56, 56, 3, 3, (1, 1), (1, 1)), 8, 8, 8).cols is None


@pytest.mark.parametrize(
    "case, tiling",
    [
        (WIDE_STEM, None),
        (WIDE_STEM, Tiling(blocks=2, rows=2, chunk=1, double=True, cols=5)),
        (WIDE_STEM, Tiling(blocks=2, rows=2, chunk=1, double=False, cols=16)),
        (WIDE_ROW, None),
        (WIDE_ROW, Tiling(blocks=1, rows=1, chunk=1, double=True, cols=64)),
    ],
    ids=["stem-best", "stem-double", "stem-single", "wide-row-best", "wide-row-double"],
)
def test_wide_layers(engine, case, tiling):
    layer, params, x, res, want = _case(**case, seed=7)
    prog = _run_checked(engine, CoreLayer.of(layer, params), tiling, x, res, want)
    assert prog.tiling.cols is not None and prog.tiling.cols < layer.Q


@pytest.mark.parametrize("double", [True, False])
def test_residual_and_narrow_x_tiles(engine, double):
    """A residual 3x3 layer in x-tiles of 3 columns over 8 (a last tile of 2), and one 3 columns wide in
    tiles of 1 and 2 (padding on both sides of one tile), chunks and row blocks split too."""
    layer, params, x, res, want = _case(c=40, k=40, hw=(5, 8), kernel=(3, 3), stride=(1, 1), pad=1, seed=8,
                                        residual=True)  # fmt: skip
    core = CoreLayer.of(layer, params)
    _run_checked(engine, core, Tiling(blocks=2, rows=2, chunk=1, double=double, cols=3), x, res, want, False)
    layer, params, x, res, want = _case(c=20, k=8, hw=(4, 3), kernel=(3, 3), stride=(1, 1), pad=1, seed=9)
    for cols in (1, 2):
        tiling = Tiling(blocks=1, rows=3, chunk=1, double=double, cols=cols)
        _run_checked(engine, CoreLayer.of(layer, params), tiling, x, res, want)


def test_rows_over_cols_x_tiles():
    """32 x 16 (an accumulator vector stored as two output vectors): x-tiles of a residual stride-2
    layer."""
    eng = Engine(core_shape(reshaped_zc706(32, 16)))
    layer, params, x, res, want = _case(c=20, k=48, hw=(6, 13), kernel=(3, 3), stride=(2, 2), pad=1, seed=10,
                                        residual=True)  # fmt: skip
    _run_checked(eng, CoreLayer.of(layer, params), Tiling(1, 2, 1, True, 3), x, res, want)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    c=st.integers(1, 40), k=st.integers(1, 40), h=st.integers(1, 4), w=st.integers(2, 40),
    kernel=st.sampled_from([1, 3, 5, 7]), stride=st.sampled_from([1, 2]), data=st.data(),
)  # fmt: skip
def test_random_x_tiles(engine, c, k, h, w, kernel, stride, data):
    """Random layers (padding kernel // 2) in random x-tilings that fit: bit-exact, model == counted."""
    layer, params, x, res, want = _case(c, k, (h, w), (kernel, kernel), (stride, stride), kernel // 2,
                                        data.draw(st.integers(0, 2**16)))  # fmt: skip
    assume(layer.Q > 1)
    tiling = Tiling(
        data.draw(st.integers(1, 2)), data.draw(st.integers(1, layer.P)), data.draw(st.integers(1, 2)),
        data.draw(st.booleans()), data.draw(st.integers(1, layer.Q - 1)),
    )  # fmt: skip
    assume(tiling_fits(engine.shape, CoreLayer.of(layer, params).conv, tiling))
    _run_checked(engine, CoreLayer.of(layer, params), tiling, x, res, want)


def test_refused_layer_is_named(engine):
    """A 17x17 kernel: one output pixel's 289 taps of weights exceed zc706-int8's 256 weight words in
    any tiling; the error names the layer."""
    layer, params, x, res, want = _case(c=3, k=8, hw=(20, 20), kernel=(17, 17), stride=(1, 1), pad=0, seed=1)
    with pytest.raises(UnsupportedError, match=r"^layer l: .*does not fit the core's buffers"):
        compile_layer(engine.shape, CoreLayer.of(layer, params), x=x)


def test_a_given_tiling_that_does_not_fit_is_refused(engine):
    """A tiling passed in is checked as the search's are: 3 rows x 16 columns of the 7x7 stem single-
    buffered is 2,400 micro-ops, more than the core's 2,048 (its LOAD would write past uop_buf)."""
    layer, params, x, res, want = _case(**WIDE_STEM, seed=0)
    tiling = Tiling(blocks=2, rows=3, chunk=1, double=False, cols=16)
    with pytest.raises(UnsupportedError, match=r"^layer l: .*does not fit the core's buffers"):
        compile_layer(engine.shape, CoreLayer.of(layer, params), tiling, x=x)
