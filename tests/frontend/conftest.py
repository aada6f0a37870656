"""Test fixtures for the passes: a stand-in mapper while codax.hw.mapper.map_layer is being written.

The passes call `codax.hw.mapper.map_layer(layer, accel, objective=...)` -> object with `.mapping` and
`.cost.cycles` / `.cost.energy_pj`. Until that function exists this fixture provides one built from
the naive mapping and the cost model, with exactly that signature.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import codax.hw.mapper as mapper_pkg


def _naive_map_layer(layer, accel, objective="latency"):
    from codax.hw.evaluate import evaluate
    from codax.hw.mapper.naive import naive_mapping

    m = naive_mapping(layer, accel)
    c = evaluate(layer, accel, m)
    return SimpleNamespace(
        mapping=m, cost=SimpleNamespace(cycles=float(c.cycles), energy_pj=float(c.energy_pj))
    )


@pytest.fixture(autouse=True)
def _mapper(monkeypatch):
    if not hasattr(mapper_pkg, "map_layer"):
        monkeypatch.setattr(mapper_pkg, "map_layer", _naive_map_layer, raising=False)
    yield
