"""The search reports the cost it computed: shared layer/hardware tensors score like fully encoded
points, the winner's kept outputs give exactly `evaluate`'s LayerCost, and the exhaustive space is
counted before anything is scored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codax.hw import evaluate, load_accelerator
from codax.hw.cost import cost_core
from codax.hw.encode import encode, stack
from codax.hw.evaluate import evaluate_core, layer_cost
from codax.hw.mapper import map_layer
from codax.hw.mapper.api import _options, _rows
from codax.hw.mapper.batch import Evaluator, Points
from codax.hw.mapper.constraints import Constraints
from codax.hw.mapper.exhaustive import exhaustive_points, search_exhaustive, space_size
from codax.hw.mapper.fast import stationary_rank
from codax.hw.mapper.space import spatial_options
from codax.hw.mapper.tiling import LevelModel, sample_tilings, smallest_fits, smallest_overflow
from codax.ir import Accelerator, conv2d, dense
from tests.hw.accels import split_buffers, two_level

LAYERS = [
    conv2d("conv", c_in=8, c_out=8, hw=(8, 8), pads=(1, 1, 1, 1)),
    conv2d("dw_s2", c_in=16, c_out=16, hw=(10, 10), stride=(2, 2), pads=(1, 1, 1, 1), groups=16),
    dense("fc", n=2, c_in=48, c_out=20),
]
ACCELS = ["eyeriss-like", "nvdla-small", "shidiannao-like"]


def _parts(layer, accel, objective="edp"):
    model = LevelModel(layer, accel)
    return model, Evaluator(layer, accel, None, objective, _options(layer, accel, None, model, Constraints()))


def _random_points(model, ev, n_per_option, seed=0):
    rng = np.random.default_rng(seed)
    sp = np.repeat(np.arange(len(ev.options)), n_per_option)
    fac, ok = sample_tilings(model, ev.spatial[sp], rng)
    n = int(ok.sum())
    rank = np.stack([stationary_rank(model.L, "WIO"[i % 3]) for i in range(n)])
    db = (rng.random((n, model.L)) < 0.5).astype(np.float64)
    db[:, 0] = 0.0
    return Points(sp[ok], fac[ok].astype(np.float64), rank, db)


@pytest.mark.parametrize("name", ACCELS)
def test_shared_tensors_score_like_encoded_points(name):
    # the evaluator passes the layer and hardware once (batch size one); the cost model must give
    # every point what a full per-point encoding of its mapping gives
    accel = load_accelerator(name)
    for layer in LAYERS:
        model, ev = _parts(layer, accel)
        pts = _random_points(model, ev, 8)
        out = ev.outputs(pts)
        ref = cost_core(stack([encode(layer, accel, ev.to_mapping(pts, i)) for i in range(len(pts))]))
        for field in ("cycles", "energy_pj", "words_in", "words_out", "tile_bytes", "overflow_bytes"):
            assert torch.equal(getattr(out, field), getattr(ref, field)), field
        assert torch.equal(out.legal, ref.legal)
        assert ev.evaluated == len(pts)


@pytest.mark.parametrize("name", ACCELS)
def test_fast_reports_evaluate_of_its_mapping(name):
    accel = load_accelerator(name)
    for layer in LAYERS:
        for objective in ("latency", "energy", "edp"):
            res = map_layer(layer, accel, objective)
            assert res.cost == evaluate(layer, accel, res.mapping)


def test_exhaustive_reports_evaluate_of_its_mapping():
    layer = dense("fc", c_in=16, c_out=12)
    for accel in (two_level(), split_buffers(), load_accelerator("shidiannao-like")):
        for objective in ("latency", "edp"):
            res = map_layer(layer, accel, objective, method="exhaustive")
            assert res.cost == evaluate(layer, accel, res.mapping)


def test_layer_cost_from_outputs_equals_evaluate():
    for accel in (load_accelerator("nvdla-small"), two_level(), split_buffers()):
        layer = LAYERS[0]
        mapping = map_layer(layer, accel, "latency").mapping
        _, out = evaluate_core(layer, accel, mapping)
        assert layer_cost(layer, accel, mapping, out) == evaluate(layer, accel, mapping)


def test_evaluator_keeps_the_first_best_point():
    model, ev = _parts(LAYERS[0], load_accelerator("eyeriss-like"))
    pts = _random_points(model, ev, 6, seed=3)
    s = np.concatenate([ev.score(pts.take(slice(0, 10))), ev.score(pts.take(slice(10, None)))])
    i = int(np.argmin(s))  # the first of equal minima
    assert ev.best.score == s[i]
    best = pts.take(slice(i, i + 1))
    assert ev.to_mapping(ev.best.point) == ev.to_mapping(best)
    assert ev.outputs_of(best) is ev.best.outputs
    # any other point is evaluated afresh, without counting it again
    j = int(np.argmax(np.where(np.isfinite(s), s, -np.inf)))
    counted = ev.evaluated
    other = ev.outputs_of(pts.take(slice(j, j + 1)))
    assert ev.evaluated == counted
    assert float(other.cycles[0]) * float(other.energy_pj[0]) == s[j]


def test_exhaustive_cap_refuses_before_scoring():
    model, ev = _parts(LAYERS[2], load_accelerator("nvdla-small"))
    size = space_size(ev, model)
    assert size > 1000
    with pytest.raises(MemoryError):
        search_exhaustive(ev, model, max_points=size - 1)
    assert ev.evaluated == 0
    score, best = search_exhaustive(ev, model, max_points=size)
    assert ev.evaluated == size and np.isfinite(score)


def test_exhaustive_blocks_stream_the_same_points():
    model, ev = _parts(LAYERS[2], two_level())
    whole = Points.concat(list(exhaustive_points(ev, model)))
    small = list(exhaustive_points(ev, model, block=7))
    assert max(len(p) for p in small) < len(whole)
    again = Points.concat(small)
    for f in ("sp", "factor", "rank", "db"):
        assert np.array_equal(getattr(whole, f), getattr(again, f))


def _small_glb():
    d = two_level().to_dict()
    d["engines"][0]["levels"][0] = {"name": "GLB", "operands": ["W", "I", "O"], "size": 48, "bandwidth": 16}
    return Accelerator.from_dict(d)


@pytest.mark.parametrize("name", ACCELS + ["small-glb"])
def test_smallest_fits_agrees_with_smallest_overflow(name):
    accel = _small_glb() if name == "small-glb" else load_accelerator(name)
    for layer in (
        conv2d("big", c_in=64, c_out=64, hw=(32, 32), pads=(1, 1, 1, 1)),
        dense("fc", c_in=4, c_out=4),
    ):
        for resident in (False, True):
            model = LevelModel(layer, accel)
            model.resident = resident
            options = spatial_options(layer, accel) + [{}]
            fits = smallest_fits(model, _rows(options))
            assert fits.tolist() == [smallest_overflow(model, row)[0] < 0 for row in _rows(options)]
