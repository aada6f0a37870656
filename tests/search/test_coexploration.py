"""Sample-based co-exploration baselines: random sampling and regularised evolution."""

from __future__ import annotations

import random

import pytest

from codax.search.baselines import coexploration, mutate, random_design
from codax.search.config import load_config
from codax.search.cosearch import CoSearch


def test_mutation_changes_one_gene_within_budget(tiny):
    cs = CoSearch(load_config(tiny))
    rng = random.Random(0)
    for _ in range(30):
        d = random_design(cs, rng)
        m = mutate(cs, d, rng)
        changed = (
            sum(a != b for a, b in zip(d.ops, m.ops))
            + sum(a[k] != b[k] for a, b in zip(d.bits, m.bits) for k in (0, 1))
            + sum(a != b for pa, pb in zip(d.accel, m.accel) for a, b in zip(pa, pb))
        )
        assert changed == 1
        assert all(cs.hw.fits(c) for c in m.accel)
        assert m.bits[0] == d.bits[0] and m.bits[-1] == d.bits[-1], "fixed first/last widths"


@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_unreachable_reward_runs_to_the_sample_limit(tiny, strategy):
    cs = CoSearch(load_config(tiny))
    r = coexploration(cs, strategy, 1.01, 0.0, 1e9, 1, population=3, tournament=2, max_samples=5)
    assert r["seconds_to_reach"] is None and len(r["samples"]) == 5
    assert all(s["acc"] is not None for s in r["samples"]), "every sample meets FPS >= 0"
    assert r["best_reward"] == max(s["acc"] for s in r["samples"])


def test_samples_below_the_fps_target_are_not_trained(tiny):
    cs = CoSearch(load_config(tiny))
    r = coexploration(cs, "evolution", 0.0, 1e12, 1e9, 1, population=3, tournament=2, max_samples=4)
    assert r["seconds_to_reach"] is None
    assert all(s["acc"] is None for s in r["samples"])


def test_reward_reached_stops_sampling(tiny):
    cs = CoSearch(load_config(tiny))
    r = coexploration(cs, "random", 0.0, 0.0, 1e9, 1, max_samples=50)
    assert len(r["samples"]) == 1 and r["seconds_to_reach"] == r["samples"][0]["t"]


def test_baseline_derivation_picks_the_fastest_candidate_not_significantly_worse(tiny, monkeypatch):
    from codax.search.baselines import derive_by_training
    from codax.search.ranking import not_worse

    tiny["search"].update(derive_train_seeds=2, derive_train_epochs=1)
    cs = CoSearch(load_config(tiny))
    cs.run_epoch(progress=False)
    rng = random.Random(1)
    designs = [random_design(cs, rng) for _ in range(3)]  # stand-ins for distinct argmax designs
    monkeypatch.setattr(cs, "argmax_candidates", lambda: list(enumerate(designs)))
    speed = lambda d: -cs.exact(d)["macs"]  # noqa: E731
    d, log = derive_by_training(cs, speed)
    assert len(log) == 3 and sum(c["chosen"] for c in log) == 1
    assert log[designs.index(d)]["chosen"]
    accs = [cs.trained_val_accs(c) for c in designs]  # the same seeds: the same accuracies
    assert [c["trained_val_acc"] for c in log] == [sum(a) / len(a) for a in accs]
    top = max(accs, key=sum)
    assert speed(d) == max(speed(c) for c, a in zip(designs, accs) if not_worse(a, top))


def test_baseline_derivation_of_a_single_candidate_trains_nothing(tiny, monkeypatch):
    from codax.search.baselines import derive_by_training

    cs = CoSearch(load_config(tiny))
    design = random_design(cs, random.Random(0))
    monkeypatch.setattr(cs, "argmax_candidates", lambda: [("final", design)])
    monkeypatch.setattr(cs, "trained_val_accs", lambda d: pytest.fail("trained a lone candidate"))
    d, log = derive_by_training(cs, lambda d: 1.0)
    assert d is design and len(log) == 1 and log[0]["chosen"]
