"""Invariants of the cost model over random layers and mappings."""

import math
import random
from dataclasses import fields

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codax.hw import compulsory_words, cost_core, encode, stack
from codax.hw.mapper.space import random_mapping
from codax.ir import DIMS, OPERANDS, Accelerator

from .strategies import points

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(layer, accel, mapping):
    return cost_core(encode(layer, accel, mapping))


@SETTINGS
@given(points())
def test_macs_conserved_and_compute_bound(p):
    layer, accel, mapping = p
    out = run(*p)
    pes = accel.engine(mapping.engine).pe_array.pes
    assert out.macs.item() == layer.macs
    # the array steps cover the MACs, and there are no more of them than temporal loop iterations
    assert out.compute_cycles.item() * pes >= layer.macs
    names = accel.engine(mapping.engine).level_names
    padded = math.prod(mapping.factor(lv, d) for lv in names for d in DIMS)
    assert out.compute_cycles.item() <= padded


@SETTINGS
@given(points())
def test_dram_traffic_and_cycles_respect_lower_bounds(p):
    layer, accel, mapping = p
    out = run(*p)
    comp = compulsory_words(layer)
    prec = layer.precision
    comp_bits = comp["W"] * prec.weight + comp["I"] * prec.act + comp["O"] * prec.out
    dram_bits = out.dram_bits.item()
    assert dram_bits >= comp_bits
    pes = accel.engine(mapping.engine).pe_array.pes
    assert out.cycles.item() >= layer.macs / pes
    assert out.cycles.item() >= comp_bits / 8 / accel.dram.bandwidth - 1e-9


@SETTINGS
@given(points())
def test_streamed_weights_only_shorten_the_fill(p):
    """Streaming weights moves their first tiles' load from the fill phase into the overlapped
    traffic, and lets the last tile compute while it loads: never slower, never shorter by more than
    the fill and one outer tile's compute, never under the compute or DRAM bounds, and the same
    traffic and energy."""
    layer, accel, mapping = p
    d = accel.to_dict()
    d["dram"]["stream_weights"] = True
    streamed = Accelerator.from_dict(d)
    base, out = run(*p), run(layer, streamed, mapping)
    assert out.cycles.item() <= base.cycles.item() + 1e-9
    # one outer tile's compute task is at most all of it: its steps plus a pipeline fill per run of
    # steps (at most one run per step)
    depth = accel.engine(mapping.engine).pe_array.pipeline_depth
    tail_max = base.compute_cycles.item() * (1 + depth)
    assert out.cycles.item() >= base.cycles.item() - base.fill_cycles.item() - tail_max - 1e-9
    assert torch.equal(out.energy_pj, base.energy_pj) and torch.equal(out.words_in, base.words_in)
    comp = compulsory_words(layer)
    prec = layer.precision
    comp_bits = comp["W"] * prec.weight + comp["I"] * prec.act + comp["O"] * prec.out
    assert out.cycles.item() >= comp_bits / 8 / accel.dram.bandwidth - 1e-9
    assert out.cycles.item() >= layer.macs / accel.engine(mapping.engine).pe_array.pes


@SETTINGS
@given(points(), st.integers(0, 7), st.integers(2, 4))
def test_larger_on_chip_tile_never_increases_dram_traffic(p, dim_i, k):
    """Moving a factor from the DRAM loops into the first on-chip level (a larger tile, which needs a
    larger buffer) never increases the DRAM traffic of the operands that level holds. (An operand
    that bypasses the level can lose: the level's loops then sit outside its own tile.)"""
    layer, accel, mapping = p
    d = DIMS[dim_i]
    f = mapping.factor("DRAM", d)
    if f == 1:
        return
    level = accel.engine(mapping.engine).levels[0]
    held = [i for i, op in enumerate(OPERANDS) if op in level.operands]
    before = run(layer, accel, mapping)
    mapping.tiles.setdefault("DRAM", {})[d] = math.ceil(f / k)
    mapping.tiles.setdefault(level.name, {})[d] = mapping.factor(level.name, d) * k
    after = run(layer, accel, mapping)
    for i in held:
        assert after.words_in[0, 1, i] <= before.words_in[0, 1, i]
        assert after.words_out[0, 1, i] <= before.words_out[0, 1, i]
    if len(held) == 3:
        assert after.dram_bits.item() <= before.dram_bits.item()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(points(), min_size=2, max_size=12))
def test_batched_equals_one_at_a_time(pts):
    by_levels = {}
    for p in pts:
        by_levels.setdefault(len(p[1].engine(p[2].engine).levels), []).append(p)
    for group in by_levels.values():
        batch = cost_core(stack([encode(*p) for p in group]))
        for i, p in enumerate(group):
            one = run(*p)
            for name in (
                "macs",
                "cycles",
                "energy_pj",
                "words_in",
                "words_out",
                "reads_bits",
                "writes_bits",
                "tile_bytes",
                "overflow_bytes",
                "compute_cycles",
            ):
                assert torch.equal(getattr(batch, name)[i], getattr(one, name)[0]), name


MAPPING_FIELDS = ("factor", "rank", "db", "spatial")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points(), st.integers(0, 2**31))
def test_shared_layer_and_hardware_equal_repeated_ones(p, seed):
    """Many mappings of one layer on one engine: layer and hardware tensors given once (batch 1,
    broadcast) cost exactly what the same tensors repeated per point cost, in either memory layout
    of the mapping tensors."""
    layer, accel, _ = p
    rng = random.Random(seed)
    maps = [random_mapping(layer, accel, rng) for _ in range(6)]
    repeated = stack([encode(layer, accel, m) for m in maps])
    shared = encode(layer, accel, maps[0]).with_(**{k: getattr(repeated, k) for k in MAPPING_FIELDS})
    assert shared.bound.shape[0] == 1 and shared.batch == 6
    inner = shared.batch_innermost()
    assert inner.factor.shape == shared.factor.shape and inner.factor.stride()[0] == 1
    a, b, c = cost_core(repeated), cost_core(shared), cost_core(inner)
    for f in fields(a):
        assert torch.equal(getattr(a, f.name), getattr(b, f.name)), f.name
        assert torch.equal(getattr(a, f.name), getattr(c, f.name)), f.name


@SETTINGS
@given(points())
def test_normalized_mapping_costs_the_same(p):
    """Capping factors that only reach past a bound leaves the executed nest, and so every count, alone."""
    layer, accel, mapping = p
    norm = mapping.normalized(layer, accel.engine(mapping.engine))
    a, b = run(layer, accel, mapping), run(layer, accel, norm)
    for name in ("cycles", "energy_pj", "words_in", "words_out", "compute_cycles"):
        assert torch.allclose(getattr(a, name), getattr(b, name)), name
    names = accel.engine(mapping.engine).level_names
    assert all(norm.coverage(d, names) >= getattr(layer, d) for d in DIMS)
    assert norm.normalized(layer, accel.engine(mapping.engine)).to_dict() == norm.to_dict()
