"""The mapper's oracle: a second cost model re-ranks the search's best distinct mappings."""

from __future__ import annotations

import math

import pytest

from codax.errors import ConfigError, InfeasibleError
from codax.hw import evaluate, load_accelerator
from codax.hw.mapper import map_layer
from codax.ir import conv2d, validate_mapping

LAYER = conv2d("c", c_in=32, c_out=64, hw=(14, 14), pads=(1, 1, 1, 1))


@pytest.fixture(scope="module")
def accel():
    return load_accelerator("eyeriss-like")


class Recorder:
    """An oracle scoring each candidate by `metric` of codax's own evaluation; keeps what it saw."""

    def __init__(self, accel, metric):
        self.accel, self.metric, self.seen = accel, metric, []

    def __call__(self, layer, mappings):
        self.seen = list(mappings)
        return [self.metric(evaluate(layer, self.accel, m)) for m in mappings]


def test_candidates_are_the_searchs_best_distinct_legal_mappings(accel):
    alone = map_layer(LAYER, accel, "latency")
    rec = Recorder(accel, lambda c: c.cycles)
    res = map_layer(LAYER, accel, "latency", oracle=rec, oracle_top=16)
    assert res.oracle_evaluated == len(rec.seen) == 16
    assert len({repr(m.to_dict()) for m in rec.seen}) == 16
    for m in rec.seen:
        validate_mapping(LAYER, accel, m)
    cycles = [evaluate(LAYER, accel, m).cycles for m in rec.seen]
    # best first by codax's own score; the first is what the mapper returns without an oracle
    assert cycles == sorted(cycles)
    assert rec.seen[0] == alone.mapping
    # an oracle that agrees with codax changes nothing (its ties are broken in codax's order)
    assert res.mapping == alone.mapping and res.oracle_rank == 0
    assert res.oracle_score == alone.cost.cycles and res.evaluated == alone.evaluated


def test_the_oracles_best_candidate_is_returned_with_codaxs_cost(accel):
    rec = Recorder(accel, lambda c: c.energy_pj)
    res = map_layer(LAYER, accel, "latency", oracle=rec, oracle_top=32)
    energies = [evaluate(LAYER, accel, m).energy_pj for m in rec.seen]
    best = min(range(len(energies)), key=energies.__getitem__)
    assert res.oracle_rank == best and res.mapping == rec.seen[best]
    assert res.oracle_score == pytest.approx(energies[best])
    # no worse for the oracle than the mapping codax would have returned alone
    assert res.oracle_score <= energies[0]
    # the reported cost is codax's cost of the returned mapping
    again = evaluate(LAYER, accel, res.mapping)
    assert res.cost.cycles == again.cycles and res.cost.energy_pj == again.energy_pj


def test_rejected_candidates_are_skipped(accel):
    rec = Recorder(accel, lambda c: c.cycles)

    def first_rejected(layer, mappings):
        scores = rec(layer, mappings)
        return [math.inf] + scores[1:]

    res = map_layer(LAYER, accel, "latency", oracle=first_rejected, oracle_top=8)
    assert res.mapping != rec.seen[0] and res.oracle_rank >= 1


def test_bad_oracles_are_reported(accel):
    with pytest.raises(InfeasibleError, match="rejected all 4 candidate mappings"):
        map_layer(LAYER, accel, oracle=lambda layer, ms: [math.nan] * len(ms), oracle_top=4)
    with pytest.raises(ConfigError, match="returned 1 scores for 4 candidate mappings of layer c"):
        map_layer(LAYER, accel, oracle=lambda layer, ms: [1.0], oracle_top=4)
    with pytest.raises(ConfigError, match="oracle_top must be a positive int"):
        map_layer(LAYER, accel, oracle=lambda layer, ms: [1.0] * len(ms), oracle_top=0)


def test_map_graph_passes_the_oracle_to_every_search(accel):
    from codax.hw.mapper import map_graph
    from codax.ir import Graph

    g = Graph(name="g")
    g.add(LAYER)
    g.add(conv2d("c2", c_in=32, c_out=64, hw=(14, 14), pads=(1, 1, 1, 1)))
    g.add(conv2d("d", c_in=16, c_out=16, hw=(7, 7)))
    calls = []

    def by_energy(layer, mappings):
        calls.append(layer.name)
        return [evaluate(layer, accel, m).energy_pj for m in mappings]

    res = map_graph(g, accel, "latency", oracle=by_energy, oracle_top=8)
    # one oracle call per distinct shape (c and c2 share one), each pick the oracle's best
    assert calls == ["c", "d"]
    energy = {lc.layer: lc.energy_pj for lc in res.cost.layers}
    for name, r in res.results.items():
        assert r.oracle_evaluated == 8 and r.oracle_score == pytest.approx(energy[name])
