"""The hardware term reaches every kind of logit: network ops, bitwidths, mappings, accelerator."""

from __future__ import annotations

import torch

from codax.search.config import load_config
from codax.search.cosearch import CoSearch


def test_hw_loss_gradients_reach_all_logits(tiny):
    tiny["search"]["accel_exact"] = 1000  # the expectation over every accelerator point, exactly
    cs = CoSearch(load_config(tiny))
    a = cs.arch
    loss, est = cs.hw_term(a.op_probs(), a.bit_probs("w"), a.bit_probs("a"))  # the expected cost
    assert len(est.period_cycles) == len(cs.feasible_points())
    loss.backward()
    searchable = cs.net.searchable
    assert a.alpha.grad[searchable].abs().sum(-1).gt(0).all(), "op logits of every block"
    assert a.beta_w.grad[searchable].abs().sum(-1).gt(0).all(), "weight-bit logits of every block"
    assert a.beta_a.grad[searchable].abs().sum(-1).gt(0).all(), "activation-bit logits of every block"
    assert a.map_logits.grad.abs().sum() > 0
    for name, lg in zip(cs.space.names, a.accel_logits(0)):
        assert lg.grad is not None and lg.grad.abs().sum() > 0, f"accelerator logit {name}"


def test_expected_cost_is_exact_when_one_hot(tiny):
    """At one-hot probabilities the mixed cost equals the cost table of that single design."""
    cs = CoSearch(load_config(tiny))
    d = cs.design()
    rel = cs.estimate(None, onehot_design=d)
    ex = cs.exact(d)
    # same design, template mappings vs the exact mapper: same order of magnitude, and never zero
    assert float(rel.period_cycles) > 0
    assert 0.2 < float(rel.period_cycles) / ex["exact_cycles"] < 5
    with torch.no_grad():
        assert torch.isfinite(rel.energy_pj)
