"""Derivation: the derived network computes what the supernet evaluated, retraining is seeded, and
the widths fitted to a target FPS meet it exactly."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from codax.search.config import load_config
from codax.search.cosearch import CoSearch
from codax.search.derive import derived_module
from codax.search.finalize import train_from_scratch
from codax.search.refine import fit_to_target


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


def test_fit_spends_slack_on_widths(tiny):
    cs = CoSearch(load_config(tiny))
    d = _design(cs, (4, 4))
    fps = cs.exact(d)["exact_fps"]
    target = 0.8 * fps
    got, log = fit_to_target(cs, d, target)
    assert log["meets_target"] and cs.exact(got)["exact_fps"] >= target
    assert all(g[0] >= s[0] and g[1] >= s[1] for g, s in zip(got.bits, d.bits))
    assert got.bits != d.bits, "20% slack buys at least one wider layer"
    assert log["spend_steps"] >= 1


def test_derive_without_target_is_the_argmax(tiny):
    cs = CoSearch(load_config(tiny))
    d, fit = cs.derive()
    assert fit is None and d == cs.design()
