"""Derivation: the derived network computes what the supernet evaluated, retraining is seeded, the
design fitted to a target FPS meets it exactly (closing a deficit with a step sized to it, spending
slack on measured supernet gains, then capacity), and target-meeting candidates are ranked after training."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from codax.search.config import load_config
from codax.search.cosearch import CoSearch
from codax.search.derive import derived_module
from codax.search.finalize import train_from_scratch
from codax.search.ranking import not_worse, one_se_pick, standard_error
from codax.search.refine import TargetFit, fit_to_target


def _design(cs, bits, op: str = "ir_k3_e1"):
    """Every searchable unit at op `op` and (weight, activation) widths `bits`."""
    d = cs.design()
    ops = [[o.label for o in u.ops].index(op) if u.searchable else 0 for u in cs.net.units]
    widths = [bits if u.searchable else b for u, b in zip(cs.net.units, d.bits)]
    return replace(d, ops=ops, bits=widths)


def test_derived_net_quantises_like_the_supernet(tiny):
    """Weights at 8 bits, activations at 4: every layer input inside a block is 4-bit too."""
    tiny["network"]["expansions"] = [3]
    cs = CoSearch(load_config(tiny))
    d = _design(cs, (8, 4), "ir_k3_e3")
    net = derived_module(cs.net, d)
    for u, (unit, o) in enumerate(zip(cs.net.units, d.ops)):
        if unit.ops[o].kind != "skip":
            getattr(net, unit.name).load_state_dict(cs.supernet.op_module(u, o).state_dict())
    U, O = cs.arch.alpha.shape
    bi = {b: i for i, b in enumerate(cs.bits)}
    onehot = lambda idx, n: F.one_hot(torch.tensor(idx), n).float()  # noqa: E731
    bw = onehot([bi[b[0]] for b in d.bits], len(cs.bits))
    ba = onehot([bi[b[1]] for b in d.bits], len(cs.bits))
    x = cs.data.val[0][:32]
    cs.supernet.eval()
    net.eval().quantize = True
    with torch.no_grad():
        ref = cs.supernet(x, onehot(d.ops, O), bw, ba)
        got = net(x)
        net.quantize = False
        unquantised = net(x)
    torch.testing.assert_close(got, ref)
    assert not torch.allclose(got, unquantised, atol=1e-3), "4-bit activations must change the output"


def test_train_from_scratch_depends_on_the_seed_only(tiny):
    cs = CoSearch(load_config(tiny))
    d = cs.design()
    a = train_from_scratch(cs.net, d, cs.data, 1, 0.05, 64, True, seed=7)
    torch.rand(100)  # other work in between must not change the run
    b = train_from_scratch(cs.net, d, cs.data, 1, 0.05, 64, True, seed=7)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_fit_closes_a_deficit(tiny):
    cs = CoSearch(load_config(tiny))
    d = _design(cs, (8, 8), "ir_k5_e3")  # the slowest op: faster ones exist
    fps = cs.exact(d)["exact_fps"]
    target = 1.2 * fps
    got, log = fit_to_target(cs, d, target)
    assert log["meets_target"]
    assert cs.exact(got)["exact_fps"] >= target
    assert log["exact_fps"] == cs.exact(got)["exact_fps"]


def test_fit_spends_slack_on_widths_with_the_noise_prior(tiny):
    tiny["search"]["spend_widths"] = "noise"
    cs = CoSearch(load_config(tiny))
    d = _design(cs, (4, 4))
    fps = cs.exact(d)["exact_fps"]
    target = 0.8 * fps
    got, log = fit_to_target(cs, d, target)
    assert log["meets_target"] and cs.exact(got)["exact_fps"] >= target
    assert all(g[0] >= s[0] and g[1] >= s[1] for g, s in zip(got.bits, d.bits))
    assert got.bits != d.bits, "20% slack buys at least one wider layer"
    assert log["spend_steps"] >= 1


def test_fit_keeps_the_searched_widths_when_asked(tiny):
    """spend_widths: searched -- the same 20% slack that buys wider layers under the noise prior
    goes to ops and capacity, and no width rises above where the search put it."""
    tiny["search"]["spend_widths"] = "searched"
    cs = CoSearch(load_config(tiny))
    d = _design(cs, (4, 4))
    got, log = fit_to_target(cs, d, 0.8 * cs.exact(d)["exact_fps"])
    assert log["meets_target"]
    assert all(g[0] <= s[0] and g[1] <= s[1] for g, s in zip(got.bits, d.bits))
    fit = TargetFit(cs, d)
    assert fit.width_moves(d, up=True), "wider layers exist: keeping the widths is a choice"
    assert all(m.bits == d.bits for m in fit.spend(d, 0.8 * fit.fps(d)))


def test_spend_raises_widths_on_supernet_evidence_by_default(tiny):
    """spend_widths: supernet -- every step of the spend before capacity gains at least one more
    correct `val` image inside the supernet, whether it widens a layer or changes an op, and keeps
    the target."""
    cs = CoSearch(load_config(tiny))
    assert cs.cfg.search.spend_widths == "supernet"
    d = _design(cs, (4, 4))
    fit = TargetFit(cs, d)
    target = 0.5 * fit.fps(d)
    path = fit.spend(d, target)
    pruned = len(fit._prune(d))
    end = fit.capacity_at[0] if fit.capacity_at else len(path)
    steps = list(zip(path[pruned:end], path[pruned + 1 : end]))
    assert steps, "half the throughput as slack buys at least one measured gain"
    for prev, m in steps:
        assert fit.acc(m) - fit.acc(prev) >= fit.one_image - 1e-9
        assert fit.fps(m) >= target
    wider = [(p, m) for p, m in steps if m.bits != p.bits]
    assert all(m.ops == p.ops for p, m in wider), "a step changes widths or ops, not both"


def test_derive_without_target_is_the_argmax(tiny):
    cs = CoSearch(load_config(tiny))
    d, fit = cs.derive()
    assert fit is None and d == cs.design()


def test_close_takes_the_smallest_sufficient_last_step(tiny):
    """A small deficit is closed by the change that saves the fewest cycles among those that reach
    the target and that the supernet does not find worse than the most accurate of them."""
    cs = CoSearch(load_config(tiny))
    d = _design(cs, (8, 8), "ir_k5_e3")
    fit = TargetFit(cs, d)
    target = 1.02 * fit.fps(d)
    path = fit.close(d, target)
    assert len(path) == 2 and fit.fps(path[-1]) >= target
    c0 = fit.relaxed_cycles(d)
    closers = [m for m in fit.op_moves(d) + fit.width_moves(d, up=False) if fit.fps(m) >= target]
    top = max(closers, key=lambda m: (fit.acc(m), fit.relaxed_cycles(m)))
    fair = [m for m in closers if fit.not_worse(m, top)]
    assert path[-1] in fair
    saved = c0 - fit.relaxed_cycles(path[-1])
    assert saved == min(c0 - fit.relaxed_cycles(m) for m in fair)


def test_spend_fills_slack_with_capacity(tiny):
    """Widths already at the top: three quarters of the throughput as slack, once the ops the
    supernet finds more accurate are taken, buy larger ops (more MACs) that it does not find worse
    (the spend path, priced by the calibrated relaxed cost); the fitted design, checked exactly along
    that path, spends slack on more MACs and still meets the target exactly."""
    cs = CoSearch(load_config(tiny))
    d = _design(cs, (8, 8), "ir_k3_e1")
    fps = cs.exact(d)["exact_fps"]
    fit = TargetFit(cs, d)
    path = fit.spend(d, 0.25 * fps)
    assert fit.capacity_at and fit.macs(path[-1]) > fit.macs(path[fit.capacity_at[0] - 1])
    got, log = fit_to_target(cs, d, 0.25 * fps)
    assert log["meets_target"] and cs.exact(got)["exact_fps"] >= 0.25 * fps
    assert fit.macs(got) > fit.macs(d)
    assert cs.exact(got)["exact_fps"] < fps


def test_capacity_steps_are_not_worse_and_change_the_function(tiny):
    cs = CoSearch(load_config(tiny))
    d = _design(cs, (8, 8), "ir_k3_e1")
    fit = TargetFit(cs, d)
    path = fit.spend(d, 0.3 * fit.fps(d))
    ref = path[0]  # the design the fitting started from, not one picked on `val` (see refine.py)
    for i in fit.capacity_at:
        m, prev = path[i], path[i - 1]
        assert fit.macs(m) > fit.macs(prev)
        assert fit.not_worse(m, ref) and not fit.same_function(m, prev)
        assert fit.fps(m) >= 0.3 * fit.fps(d)
    assert fit.same_function(d, d)


def test_not_worse_is_one_standard_error_of_the_paired_difference():
    assert not_worse([0.90, 0.91, 0.92], [0.90, 0.91, 0.92])
    assert not not_worse([0.90, 0.90, 0.90], [0.92, 0.93, 0.92]), "consistently 2 points below"
    assert not_worse([0.90, 0.95, 0.88], [0.91, 0.93, 0.90]), "within the noise"
    assert abs(standard_error([1.0, 3.0]) - 1.0) < 1e-12


def test_one_se_pick_takes_the_fastest_candidate_inside_the_noise_of_the_best():
    pick = lambda cands: one_se_pick(cands, lambda c: c[1], lambda c: c[2])[0]  # noqa: E731
    best = ("best", [0.97, 0.98, 0.97], 90.0)
    tied_fast = ("tied, faster", [0.98, 0.96, 0.97], 95.0)
    worse_fastest = ("2 points below, fastest", [0.95, 0.96, 0.95], 120.0)
    assert pick([best, tied_fast, worse_fastest]) == "tied, faster"
    assert pick([best, worse_fastest]) == "best", "a significant loss is not traded for throughput"
    assert pick([best]) == "best"
    same_fps = ("tied, same FPS, less accurate", [0.97, 0.97, 0.96], 90.0)
    assert pick([same_fps, best]) == "best", "at equal FPS the more accurate"


def test_derive_ranks_target_meeting_candidates_by_trained_accuracy(tiny, monkeypatch):
    import random

    from codax.search import refine
    from codax.search.baselines import random_design

    tiny["search"].update(target_fps=1.0, derive_train_seeds=2, derive_train_epochs=1)
    cs = CoSearch(load_config(tiny))
    cs.run_epoch(progress=False)
    # several distinct target-meeting candidates; the fitting (tested above) left out: identity
    rng = random.Random(0)
    designs = [random_design(cs, rng) for _ in range(3)]
    monkeypatch.setattr(cs, "argmax_candidates", lambda: list(enumerate(designs)))

    def identity_fit(cs_, d, target):
        units = d.to_dict(cs_.net, cs_.space)["units"]
        return d, {"design": units, "exact_fps": cs_.exact(d)["exact_fps"], "meets_target": True}

    monkeypatch.setattr(refine, "fit_to_target", identity_fit)
    d, log = cs.derive()
    cands = log["candidates"]
    assert log["rank"] == "trained" and len(cands) == 3
    for c, cand in zip(cands, designs):
        assert c["trained_val_accs"] == cs.trained_val_accs(cand), "the same seeds: the same evidence"
    rule = one_se_pick(cands, lambda c: c["trained_val_accs"], lambda c: c["exact_fps"])
    assert log["design"] == rule["design"] and d in designs
    assert log["exact_fps"] == cs.exact(d)["exact_fps"]


def test_derive_rank_is_validated(tiny):
    from codax.errors import ConfigError

    tiny["search"]["derive_rank"] = "brief"
    with pytest.raises(ConfigError, match="derive_rank"):
        load_config(tiny)
    tiny["search"].update(derive_rank="trained", derive_train_epochs=0)
    with pytest.raises(ConfigError, match="derive_train_epochs"):
        load_config(tiny)
    tiny["search"].update(derive_train_epochs=None, spend_widths="prior")
    with pytest.raises(ConfigError, match="spend_widths.*'supernet', 'searched' or 'noise'"):
        load_config(tiny)
