"""The descriptor fetch across calls in the cost model: the network evaluator's per-call chain
(`chain_calls`) and the search's closed form (`chained_cycles`: F once plus max(own + beats, F) per
call but the last) charge the same cycles, and a call after one on another engine fetches its own."""

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codax.hw import evaluate, load_accelerator
from codax.hw.cost import chained_cycles, descriptor_beats, descriptor_fetch_cycles
from codax.hw.evaluate import chain_calls
from codax.hw.mapper import map_layer
from codax.ir import conv2d, dense
from codax.ir.descriptor import WORDS

ACCEL = load_accelerator("zcu102-int8")
SHAPES = [
    conv2d("c3", c_in=16, c_out=16, hw=(8, 8), pads=(1, 1, 1, 1)),
    conv2d("c1", c_in=32, c_out=8, hw=(4, 4), kernel=(1, 1)),
    dense("fc", c_in=4, c_out=4),
]
ALONE = {la.name: evaluate(la, ACCEL, map_layer(la, ACCEL).mapping) for la in SHAPES}


def test_one_round_trip_is_latency_and_beats():
    beats = math.ceil(WORDS * 4 / ACCEL.dram.bandwidth)
    assert descriptor_beats(ACCEL.dram.bandwidth) == beats
    assert descriptor_fetch_cycles(ACCEL.dram.latency, ACCEL.dram.bandwidth) == ACCEL.dram.latency + beats
    assert all(c.fetch_cycles == ACCEL.dram.latency + beats for c in ALONE.values())


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(order=st.lists(st.sampled_from([la.name for la in SHAPES]), min_size=1, max_size=8))
def test_the_chain_is_the_searchs_closed_form(order):
    alone = [ALONE[n] for n in order]
    chained = chain_calls(alone, ACCEL)
    f = descriptor_fetch_cycles(ACCEL.dram.latency, ACCEL.dram.bandwidth)
    beats = descriptor_beats(ACCEL.dram.bandwidth)
    own = torch.tensor([c.cycles - c.fetch_cycles for c in alone], dtype=torch.float64)
    last = torch.zeros(len(order), dtype=torch.bool)
    last[-1] = True
    closed = f + float(chained_cycles(own, f, beats, last).sum())
    assert sum(c.cycles for c in chained) == closed
    # the first call pays one round trip; the rest wait only for what outlasted the call before
    assert chained[0].fetch_cycles == f
    for prev, c in zip(chained, chained[1:]):
        assert c.fetch_cycles == max(0.0, f - (prev.cycles - prev.fetch_cycles))
    # every call moves one descriptor through the port (its own fetch or the next one's prefetch) but
    # the first, which moves two when it prefetches, and the last, which moves none
    moved = sum(c.dram_beats for c in chained) - sum(a.dram_beats - beats for a in alone)
    assert moved == beats * len(order)


def test_a_call_after_another_engines_fetches_its_own():
    a, b = ALONE["c3"], ALONE["c1"]
    other = type(b)(**{**b.__dict__, "engine": "other"})
    chained = chain_calls([a, other], ACCEL)
    assert chained[1].fetch_cycles == b.fetch_cycles
    # the first call still prefetched (the engine prefetches call + 1 whatever runs it): its beats stay
    assert (
        chained[0].cycles
        == a.cycles - a.fetch_cycles + descriptor_beats(ACCEL.dram.bandwidth) + a.fetch_cycles
    )
