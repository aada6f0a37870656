"""Mapper constraints (divisors only, resident, no double buffering) and the search's building blocks:
tight factors, vectorised capacity checks, neighbourhoods and the score memo."""

from __future__ import annotations

import math

import numpy as np
import pytest

from codax.errors import ConfigError, InfeasibleError
from codax.hw import evaluate, load_accelerator
from codax.hw.mapper import map_graph, map_layer
from codax.hw.mapper.api import _options
from codax.hw.mapper.batch import Evaluator, Points
from codax.hw.mapper.constraints import Constraints
from codax.hw.mapper.exhaustive import order_levels
from codax.hw.mapper.fast import stationary_rank
from codax.hw.mapper.memo import ScoreMemo
from codax.hw.mapper.neighbours import Neighbourhood
from codax.hw.mapper.tiling import LevelModel, sample_tilings
from codax.ir import DIMS, Accelerator, Graph, Precision, conv2d, dense, validate_mapping
from tests.hw.accels import split_buffers, two_level

CONV = conv2d("conv", c_in=4, c_out=8, hw=(6, 6), kernel=(3, 3), pads=(1, 1, 1, 1))
# 10 output channels on a 4-wide axis: 3 temporal steps, a partial last one unless tiles are exact
ODD = dense("fc", c_in=12, c_out=10)


def temporal_products(layer, mapping) -> dict[str, int]:
    return {
        d: math.prod(mapping.factor(lv, d) for lv in mapping.tiles) for d in DIMS if getattr(layer, d) > 1
    }


def remaining(layer, mapping) -> dict[str, int]:
    return {
        d: math.ceil(getattr(layer, d) / mapping.spatial_factor(d)) for d in DIMS if getattr(layer, d) > 1
    }


def four_by_four() -> Accelerator:
    d = two_level().to_dict()
    d["engines"][0]["pe_array"].update(rows=4, cols=4)
    return Accelerator.from_dict(d)


@pytest.mark.parametrize("method", ["fast", "exhaustive"])
@pytest.mark.parametrize("layer", [CONV, ODD], ids=lambda x: x.name)
def test_divisors_only_gives_perfect_factorisations(method, layer):
    accel = four_by_four()
    res = map_layer(layer, accel, "latency", method=method, constraints={"divisors_only": True})
    assert temporal_products(layer, res.mapping) == remaining(layer, res.mapping)


@pytest.mark.parametrize("name", ["tpu-like", "nvdla-small", "eyeriss-like"])
def test_mappings_are_tight(name):
    # no level iterates only past a bound: walking the levels innermost first, each factor is at most
    # what the inner ones leave of the dim (a memory-bound layer's ties used to end on such waste)
    accel = load_accelerator(name)
    for layer in (dense("fc", c_in=512, c_out=1000), CONV):
        m = map_layer(layer, accel, "latency").mapping
        names = accel.engine(None).level_names
        for d, rem in remaining(layer, m).items():
            inner = 1
            for lv in reversed(names):
                assert m.factor(lv, d) <= math.ceil(rem / inner), (name, layer.name, d, lv)
                inner *= m.factor(lv, d)


@pytest.mark.parametrize("method", ["fast", "exhaustive"])
def test_resident_keeps_the_layer_on_chip(method):
    accel = split_buffers()
    free = map_layer(CONV, accel, "latency", method=method)
    res = map_layer(CONV, accel, "latency", method=method, constraints={"resident": True})
    assert all(f == 1 for f in res.mapping.tiles.get("DRAM", {}).values())
    validate_mapping(CONV, accel, res.mapping)
    cost = evaluate(CONV, accel, res.mapping)
    # every operand crosses the DRAM boundary exactly once: the compulsory traffic
    assert cost.dram_bytes == pytest.approx(cost.compulsory_dram_bytes, rel=1e-9)
    assert res.cost.cycles >= free.cost.cycles * (1 - 1e-9)  # a constraint can only cost latency


OBJECTIVE_VALUE = {"latency": lambda c: c.cycles, "energy": lambda c: c.energy_pj, "edp": lambda c: c.edp}


@pytest.mark.parametrize(
    "case, constraint, objectives",
    [("odd", "divisors_only", ("latency", "energy")), ("conv", "resident", ("latency", "edp"))],
)
def test_constrained_fast_matches_exhaustive(case, constraint, objectives):
    layer, accel = (ODD, four_by_four()) if case == "odd" else (CONV, split_buffers())
    for objective in objectives:
        fast = map_layer(layer, accel, objective, constraints={constraint: True})
        exh = map_layer(layer, accel, objective, method="exhaustive", constraints={constraint: True})
        key = OBJECTIVE_VALUE[objective]
        assert key(fast.cost) <= key(exh.cost) * 1.02


def test_resident_infeasible_names_the_constraint():
    layer = conv2d("big", c_in=64, c_out=64, hw=(32, 32), pads=(1, 1, 1, 1))  # 64 KB of input alone
    with pytest.raises(InfeasibleError, match=r"resident.*GLB|GLB.*resident"):
        map_layer(layer, two_level(), constraints={"resident": True})


@pytest.mark.parametrize("method", ["fast", "exhaustive"])
def test_no_double_buffering_constraint(method):
    accel = load_accelerator("nvdla-small")
    res = map_layer(CONV, accel, "latency", method=method, constraints={"double_buffer": False})
    assert not any(res.mapping.double_buffer.values())
    validate_mapping(CONV, accel, res.mapping)


@pytest.mark.parametrize(
    "given, fragment",
    [
        ({"divisor_only": True}, "'divisor_only'.*'divisors_only'"),
        ({"resident": "yes"}, "'resident' must be true or false"),
        ({"max_points": 0}, "'max_points' must be a positive int"),
        ({"spatial": "rows"}, "'spatial' must be one option"),
    ],
)
def test_bad_constraint_is_an_error_naming_it(given, fragment):
    with pytest.raises(ConfigError, match=fragment):
        map_layer(CONV, load_accelerator("nvdla-small"), constraints=given)


def test_typed_constraints_equal_their_dict():
    accel = four_by_four()
    typed = map_layer(ODD, accel, constraints=Constraints(divisors_only=True, double_buffer=False))
    plain = map_layer(ODD, accel, constraints={"divisors_only": True, "double_buffer": False})
    assert typed.mapping == plain.mapping
    assert temporal_products(ODD, typed.mapping) == remaining(ODD, typed.mapping)
    assert not any(typed.mapping.double_buffer.values())


def test_float_layer_on_integer_accelerator_mapped_at_its_precision():
    # tpu-like's per-PE weight register holds one int8 weight: an fp32 weight tile does not fit, yet
    # a float model is costed as it would run there, quantized to the accelerator's int8
    accel = load_accelerator("tpu-like")
    fp32 = conv2d("c", c_in=16, c_out=16, hw=(8, 8), pads=(1, 1, 1, 1), precision=Precision.float32())
    int8 = fp32.with_(precision=Precision())
    got, want = map_layer(fp32, accel), map_layer(int8, accel)
    assert got.mapping == want.mapping and got.cost.cycles == want.cost.cycles
    g = Graph(name="g")
    g.add(fp32)
    assert map_graph(g, accel).cost.cycles == want.cost.cycles


def _search_parts(layer, accel):
    model = LevelModel(layer, accel)
    ev = Evaluator(layer, accel, None, "latency", _options(layer, accel, None, model, Constraints()))
    return model, ev


def test_level_overflow_matches_each_level():
    rng = np.random.default_rng(0)
    for accel in (load_accelerator("eyeriss-like"), load_accelerator("nvdla-small"), split_buffers()):
        model, ev = _search_parts(CONV, accel)
        for s in ev.spatial:
            fac = rng.integers(1, 5, size=(40, model.L, 8)).astype(np.float64)
            copies = rng.integers(1, 3, size=(40, model.L - 1)).astype(np.float64)
            each = np.stack(
                [model.overflow(fac, s, lv, copies[:, lv - 1]) for lv in range(1, model.L)], axis=1
            )
            assert np.allclose(model.level_overflow(fac, s, copies), each)
            assert np.allclose(
                model.level_overflow(fac, np.tile(s, (40, 1)), 2), model.level_overflow(fac, s, 2)
            )


def test_sampled_tilings_fit_and_cover():
    rng = np.random.default_rng(1)
    model, ev = _search_parts(CONV, load_accelerator("eyeriss-like"))
    spatial = np.repeat(ev.spatial, 16, axis=0)
    fac, ok = sample_tilings(model, spatial, rng)
    assert ok.all()
    assert model.fits(fac, spatial).all()
    covered = fac.prod(axis=1) * spatial
    assert (covered >= model.bound).all()


def test_neighbours_are_tight_and_owned():
    layer = CONV
    model, ev = _search_parts(layer, four_by_four())
    nb = Neighbourhood(model, ev.spatial, order_levels(model))
    rng = np.random.default_rng(2)
    sp = np.zeros(4, dtype=np.int64)
    fac, _ = sample_tilings(model, ev.spatial[sp], rng)
    pts = Points(
        sp, fac.astype(np.float64), np.tile(stationary_rank(model.L, "W"), (4, 1, 1)), np.zeros((4, model.L))
    )
    out, owner = nb.all(pts)
    assert len(out) == len(owner) > 0 and set(owner.tolist()) == set(range(4))
    rem0 = nb.rem0[out.sp]
    again, ok = model.complete(out.factor.copy(), rem0)
    assert ok.all() and np.array_equal(again, out.factor)  # already tight: completing changes nothing
    assert (out.factor.prod(axis=1) >= rem0).all()


def test_memo_keys_ignore_inactive_loops_only():
    model, ev = _search_parts(CONV, two_level())
    memo = ScoreMemo(ev, model, [lv for lv, _ in order_levels(model)])
    fac = np.ones((1, model.L, 8))
    fac[0, 0, DIMS.index("K")] = 4
    fac[0, 0, DIMS.index("P")] = 6
    base = np.tile(np.arange(8, dtype=np.float64), (model.L, 1))[None]
    swapped_inactive = base.copy()
    swapped_inactive[0, 0, [DIMS.index("N"), DIMS.index("G")]] = swapped_inactive[
        0, 0, [DIMS.index("G"), DIMS.index("N")]
    ]
    swapped_active = base.copy()
    swapped_active[0, 0, [DIMS.index("K"), DIMS.index("P")]] = swapped_active[
        0, 0, [DIMS.index("P"), DIMS.index("K")]
    ]
    keys = [
        memo.keys(Points(np.zeros(1, dtype=np.int64), fac, r, np.zeros((1, model.L))))[0]
        for r in (base, swapped_inactive, swapped_active)
    ]
    assert keys[0] == keys[1] and keys[0] != keys[2]
    # the memo scores each distinct key once
    pts = Points(
        np.zeros(3, dtype=np.int64),
        np.repeat(fac, 3, 0),
        np.concatenate([base, swapped_inactive, swapped_active]),
        np.zeros((3, model.L)),
    )
    before = ev.evaluated
    s = memo.score(pts)
    assert ev.evaluated - before == 2 and s[0] == s[1]
    memo.score(pts)
    assert ev.evaluated - before == 2
