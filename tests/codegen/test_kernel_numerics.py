"""Per-layer C-simulation against the numpy golden model: float within rtol 1e-4, integer bit-exact,
and instrumented transfer counts equal to the cost model's."""

import numpy as np
import pytest

from codax.codegen import LayerKernel, compare_counts, golden_layer, random_params
from codax.hw import load_accelerator
from codax.hw.mapper.naive import naive_mapping
from codax.ir import Epilogue, Mapping, Precision, conv2d, dense
from tests.hw.accels import one_level

ZC706 = load_accelerator("zc706-int8")
EYERISS = load_accelerator("eyeriss-like")


def run(layer, accel, mapping, seed=0, signed_x=True, residual=False):
    rng = np.random.default_rng(seed)
    p = random_params(layer, rng, signed_x=signed_x)
    k = LayerKernel(layer, accel, mapping, count=True)
    h, w = layer.in_hw
    shape = (layer.N, layer.G * layer.C, h, w)
    if p.kind == "float":
        x = rng.standard_normal(shape).astype(np.float32)
        res = rng.standard_normal((layer.N, layer.G * layer.K, layer.P, layer.Q)).astype(np.float32)
    else:
        lo, hi = (-128, 127) if signed_x else (0, 255)
        x = rng.integers(lo, hi + 1, shape).astype(np.int8 if signed_x else np.uint8)
        res = rng.integers(-128, 128, (layer.N, layer.G * layer.K, layer.P, layer.Q)).astype(np.int8)
    res = res if residual else None
    y, counts = k(p, x, res)
    check = compare_counts(layer, accel, mapping, counts)
    assert check.ok, str(check)
    return y, golden_layer(layer, p, x, res)


def tiled(layer, accel=None):
    """A mapping with on-chip tiles, partial tiles and psum spills: K x C x P at two levels."""
    acc = accel or one_level(4, 4, ["K", "P", "G"], ["C", "Q"], float_ok=layer.precision.kind == "float")
    m = Mapping(
        layer.name,
        spatial={"rows": ("K", min(4, layer.K)), "cols": ("C", min(3, layer.C))},
        tiles={
            "DRAM": {"C": -(-layer.C // (min(3, layer.C) * 2)), "K": -(-layer.K // (min(4, layer.K) * 2)),
                     "P": -(-layer.P // 3), "R": layer.R},
            "BUF": {"C": 2, "K": 2, "P": 3, "Q": layer.Q, "S": layer.S, "N": layer.N, "G": layer.G},
        },
        order={"DRAM": ["P", "C", "K", "R"], "BUF": ["K", "Q", "C", "P", "S"]},
    )  # fmt: skip
    return acc, m


INT_LAYERS = [
    conv2d("c3x3", c_in=5, c_out=7, hw=(9, 9), kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1),
           epilogue=Epilogue(bias=True, activation="relu", requant=True)),
    conv2d("dw", c_in=8, c_out=8, hw=(7, 7), kernel=(3, 3), pads=(1, 1, 1, 1), groups=8,
           epilogue=Epilogue(bias=True, activation="relu6", requant=True)),
    conv2d("grouped_dil", c_in=4, c_out=6, hw=(10, 9), kernel=(3, 2), dilation=(2, 3), groups=2,
           pads=(2, 0, 1, 2), epilogue=Epilogue(requant=True)),
    dense("fc", n=2, c_in=19, c_out=10, epilogue=Epilogue(bias=True, requant=True)),
]  # fmt: skip


@pytest.mark.parametrize("layer", INT_LAYERS, ids=lambda layer: layer.name)
def test_int8_bit_exact_tiled(layer):
    acc, m = tiled(layer)
    y, g = run(layer, acc, m)
    assert y.dtype == g.dtype and np.array_equal(y, g)


def test_int8_naive_on_library_accelerators():
    layer = INT_LAYERS[0]
    for accel in (ZC706, EYERISS):
        y, g = run(layer, accel, naive_mapping(layer, accel), signed_x=False)
        assert np.array_equal(y, g)


def test_int_residual_and_4bit():
    layer = conv2d("res4", c_in=6, c_out=5, hw=(6, 6), kernel=(3, 3), pads=(1, 1, 1, 1),
                   precision=Precision(4, 4, 32, 4),
                   epilogue=Epilogue(bias=True, residual="skip", activation="relu",
                                     requant=True))  # fmt: skip
    acc, m = tiled(layer)
    rng = np.random.default_rng(3)
    p = random_params(layer, rng)
    k = LayerKernel(layer, acc, m)
    x = rng.integers(-8, 8, (1, 6, 6, 6)).astype(np.int8)
    res = rng.integers(-8, 8, (1, 5, 6, 6)).astype(np.int8)
    y, _ = k(p, x, res)
    g = golden_layer(layer, p, x, res)
    assert np.array_equal(y, g)
    assert y.min() >= p.y_zero_point - 8 and y.max() <= 7  # saturated to 4 bits


FLOAT_LAYERS = [
    conv2d("fconv", c_in=6, c_out=5, hw=(8, 8), kernel=(3, 3), stride=(1, 2), pads=(1, 1, 1, 1),
           precision=Precision.float32(), epilogue=Epilogue(bias=True, activation="relu")),
    conv2d("fdw", c_in=4, c_out=4, hw=(6, 6), kernel=(3, 3), groups=4, dilation=(2, 2), pads=(2, 2, 2, 2),
           precision=Precision.float32(), epilogue=Epilogue(bias=True, residual="skip")),
    dense("ffc", c_in=33, c_out=9, precision=Precision.float32(), epilogue=Epilogue(bias=True)),
]  # fmt: skip


@pytest.mark.parametrize("layer", FLOAT_LAYERS, ids=lambda layer: layer.name)
def test_float_close(layer):
    acc, m = tiled(layer)
    y, g = run(layer, acc, m, residual=bool(layer.epilogue.residual))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, g, rtol=1e-4, atol=1e-4)


def test_engine_is_built_once_per_accelerator(tmp_path, monkeypatch):
    from codax.codegen.csim import EngineSim

    monkeypatch.setenv("CODAX_CACHE", str(tmp_path))
    acc, _ = tiled(INT_LAYERS[3])
    e1 = EngineSim(acc)
    mtime = e1.path.stat().st_mtime_ns
    e2 = EngineSim(acc)
    assert e2.path == e1.path and e2.path.stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "build").glob("*.so"))) == 1
    # every layer and mapping on the accelerator runs on the same engine
    kernels = [LayerKernel(layer, *tiled(layer, acc)) for layer in INT_LAYERS]
    assert len({id(k.engine) for k in kernels}) == 1


def test_strided_per_pe_tiles_are_refused():
    """Two per-PE levels with a loop of an unrolled dim at the outer one would make the inner level's
    array tile strided; neither the code nor the cost model handles that, so it is refused."""
    from codax.errors import UnsupportedError
    from codax.ir import Accelerator

    acc = Accelerator.from_dict({
        "name": "pe2", "target": "asic", "precision": {"weight": 8, "act": 8, "acc": 32},
        "pe_array": {"rows": 4, "cols": 1, "row_dims": ["K"], "col_dims": ["C"]},
        "levels": [{"name": "GLB", "operands": ["W", "I", "O"], "size": 1 << 20},
                   {"name": "RF1", "operands": ["W", "O"], "sizes": {"W": 64, "O": 64}, "per_pe": True},
                   {"name": "RF2", "operands": ["W", "O"], "sizes": {"W": 64, "O": 64}, "per_pe": True}],
    })  # fmt: skip
    layer = dense("fc2", c_in=3, c_out=5, epilogue=Epilogue(requant=True))
    m = Mapping("fc2", spatial={"rows": ("K", 4)}, tiles={"RF1": {"K": 2}, "DRAM": {"C": 3}})
    with pytest.raises(UnsupportedError, match="strided"):
        LayerKernel(layer, acc, m)
    m.tiles = {"RF2": {"K": 2}, "DRAM": {"C": 3}}  # the same factor at the innermost per-PE level is fine
    y, g = run(layer, acc, m)
    assert np.array_equal(y, g)


def test_float_layer_needs_an_fp32_mac():
    from codax.errors import UnsupportedError

    layer = FLOAT_LAYERS[0]
    acc, m = tiled(layer, one_level(4, 4, ["K", "P", "G"], ["C", "Q"]))  # integer MACs only
    with pytest.raises(UnsupportedError, match="no fp32 MAC.*precision.float"):
        LayerKernel(layer, acc, m)
