"""Activation checkpointing of the supernet's units (`search.recompute`): the same loss, gradients
and batch-norm statistics as keeping every activation, each batch counted once by the running
statistics, and `auto` recomputing exactly when the estimated activation memory exceeds its budget."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from codax.errors import ConfigError
from codax.search import supernet as sn_mod
from codax.search.config import load_config
from codax.search.sampling import onehot, pair_gates, run_mask
from codax.search.space import build_network_space
from codax.search.supernet import Supernet

BATCH = 16


def _nets(tiny, recompute_values=(False, True)) -> list[Supernet]:
    """Supernets over the tiny space with identical weights, one per `recompute` value."""
    cfg = load_config(tiny)
    space = build_network_space(cfg, (1, 8, 8), 10)
    torch.manual_seed(0)
    base = Supernet(space, list(cfg.bits.choices), True, False)
    nets = []
    for r in recompute_values:
        n = copy.deepcopy(base)
        n.recompute = r
        nets.append(n)
    return nets


def _inputs(net: Supernet):
    g = torch.Generator().manual_seed(3)
    U, O = net.op_activations.shape
    nb = len(net.choices)
    x = torch.randn(BATCH, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (BATCH,), generator=g)
    mask = torch.tensor(
        [[0.0 if o < len(u.ops) else -float("inf") for o in range(O)] for u in net.space.units]
    )
    logits = torch.randn(U, O, generator=g) + mask
    bit_logits = torch.randn(U, nb, generator=g)
    return x, y, logits, bit_logits


def _counting(net: Supernet) -> list[int]:
    """Counts the unit forwards `net` runs (a recomputed unit runs twice)."""
    calls = [0]
    unit = net._unit

    def counted(*a, **kw):
        calls[0] += 1
        return unit(*a, **kw)

    net._unit = counted
    return calls


def _bn_state(net: Supernet) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.named_buffers() if "running" in k or "num_batches" in k}


def test_weight_step_same_loss_gradients_and_running_stats(tiny):
    """One sampled op per unit, widths softly mixed (the weight step): recomputing each unit in
    backward changes neither the loss, nor any weight gradient, nor the running statistics."""
    results = []
    for net in _nets(tiny):
        x, y, logits, bit_logits = _inputs(net)
        op_w = onehot(logits.argmax(1), logits.shape[1], logits)
        bw = ba = F.softmax(bit_logits, -1)
        calls = _counting(net)
        loss = F.cross_entropy(net(x, op_w, bw, ba), y)
        loss.backward()
        grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads, _bn_state(net), calls[0]))
    (l0, g0, s0, c0), (l1, g1, s1, c1) = results
    n_units = len(_nets(tiny, [False])[0].units)
    assert (c0, c1) == (n_units, 2 * n_units)  # the second net did recompute every unit, once
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-7)
    assert g0.keys() == g1.keys() and len(g0) > 0
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-5, atol=1e-7, msg=k)
    for k in s0:
        torch.testing.assert_close(s1[k], s0[k], rtol=1e-5, atol=1e-7, msg=k)
    # each batch norm that ran counted this one batch once; the others none
    counts = [int(v) for k, v in s1.items() if k.endswith("num_batches_tracked")]
    assert set(counts) == {0, 1} and 1 in counts
    moved = [k for k in s1 if k.endswith("running_mean") and s1[k].abs().sum() > 0]
    assert len(moved) == counts.count(1)  # the ran batch norms' running means left their zeros


def test_arch_step_same_logit_gradients(tiny):
    """A sampled pair of ops and of widths per unit through the gates, weights frozen (the
    architecture step): the logits' gradients are the same with and without recomputation."""
    grads = []
    for net in _nets(tiny):
        x, y, logits, bit_logits = _inputs(net)
        for p in net.parameters():
            p.requires_grad_(False)
        alpha = torch.zeros_like(logits).requires_grad_(True)  # the logits' gradient lands here
        beta = torch.zeros_like(bit_logits).requires_grad_(True)
        lg, blg = logits + alpha, bit_logits + beta
        pairs = logits.topk(2, 1).indices
        single = torch.tensor([len(u.ops) == 1 for u in net.space.units])
        pairs[single, 1] = pairs[single, 0]  # a unit with one op: its only op twice
        op_w, run = pair_gates(lg, pairs), run_mask(pairs, lg.shape[1])
        bw = pair_gates(blg, bit_logits.topk(2, 1).indices)
        loss = F.cross_entropy(net(x, op_w, bw, bw, run=run), y)
        loss.backward()
        grads.append((loss.detach(), alpha.grad.clone(), beta.grad.clone()))
    (l0, a0, b0), (l1, a1, b1) = grads
    assert a0.abs().sum() > 0 and b0.abs().sum() > 0
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(a1, a0, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(b1, b0, rtol=1e-5, atol=1e-7)


def test_auto_recomputes_exactly_above_the_budget(tiny, monkeypatch):
    """auto: recompute when activation_bytes > RECOMPUTE_AUTO_BYTES; the batch at which that
    starts follows the per-image estimate, and only a forward with gradients checkpoints."""
    (net,) = _nets(tiny, ["auto"])
    x, y, logits, bit_logits = _inputs(net)
    op_w = onehot(logits.argmax(1), logits.shape[1], logits)
    per_image = net.activation_bytes(1, op_w)
    assert per_image > 0
    # a budget of 20.5 images of this network (the tiny space's own would take thousands)
    monkeypatch.setattr(sn_mod, "RECOMPUTE_AUTO_BYTES", 20.5 * per_image)
    edge = int(sn_mod.RECOMPUTE_AUTO_BYTES // per_image)  # the largest batch within the budget
    assert not net.recomputes(edge, op_w)
    assert net.recomputes(edge + 1, op_w)
    # the running ops count: a pair per unit weighs more than one op
    assert net.activation_bytes(
        8, torch.ones_like(op_w) * (op_w.sum(1, keepdim=True) > 0)
    ) > net.activation_bytes(8, op_w)
    for value, expected in ((True, True), (False, False)):
        net.recompute = value
        assert net.recomputes(1, op_w) is expected and net.recomputes(edge + 1, op_w) is expected
    # a forward with gradients above the budget runs every unit twice, one under no_grad once
    net.recompute = "auto"
    xb = x.repeat((edge + 1 + BATCH - 1) // BATCH, 1, 1, 1)[: edge + 1]
    calls = _counting(net)
    net(xb, op_w, None, None).sum().backward()
    assert calls[0] == 2 * len(net.units)
    calls[0] = 0
    with torch.no_grad():
        net(xb, op_w, None, None)
    assert calls[0] == len(net.units)


@pytest.mark.parametrize(
    "cfg, in_shape, batch, expected",
    [
        ({}, (1, 8, 8), 64, False),  # the default digits search keeps its activations
        ({"network": {"preset": "cifar22"}}, (3, 32, 32), 64, True),  # within 3 GB by recomputing
    ],
)
def test_auto_resolves_as_documented(cfg, in_shape, batch, expected):
    """The settings the config comment and the README name: digits (8x8, batch 64) does not
    recompute in either step, the 22-block cifar22 supernet at 32x32, batch 64, does in both."""
    c = load_config(cfg)
    assert c.search.recompute == "auto"  # the default
    net = Supernet(build_network_space(c, in_shape, 10), list(c.bits.choices), True, c.search.recompute)
    U, O = net.op_activations.shape
    largest = net.op_activations.argmax(1)
    one = F.one_hot(largest, O).float()  # weight step: one op per unit (the largest)
    second = torch.where(net.op_activations > 0, net.op_activations, float("inf")).argmin(1)
    pair = ((one + F.one_hot(second, O).float()) > 0).float()  # architecture step: a pair
    assert net.recomputes(batch, one) is expected
    assert net.recomputes(batch, one, run=pair.bool()) is expected


def test_estimate_is_near_the_bytes_autograd_keeps():
    """The estimate stays within a factor 1.5 of what the saved-tensor hooks count (cifar22,
    one op per unit, widths mixed), so the budget means what it says."""
    c = load_config({"network": {"preset": "cifar22"}})
    torch.manual_seed(0)
    net = Supernet(build_network_space(c, (3, 32, 32), 10), list(c.bits.choices), True, False)
    U, O = net.op_activations.shape
    op_w = F.one_hot(net.op_activations.argmax(1), O).float()
    nb = len(net.choices)
    bits = torch.full((U, nb), 1.0 / nb)
    kept: dict[int, int] = {}

    def pack(t):
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(4, 3, 32, 32)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x, op_w, bits, bits)
    ratio = net.activation_bytes(4, op_w) / sum(kept.values())
    assert 1 / 1.5 < ratio < 1.5, ratio


@pytest.mark.parametrize("value", ["yes", "Auto", 1, 0, None])
def test_unknown_recompute_values_are_rejected(value):
    with pytest.raises(ConfigError, match="search.recompute must be"):
        load_config({"search": {"recompute": value}})


@pytest.mark.parametrize("value", [True, False, "auto"])
def test_recompute_values_accepted(value):
    assert load_config({"search": {"recompute": value}}).search.recompute == value


def test_supernet_rejects_unknown_recompute(tiny):
    cfg = load_config(tiny)
    space = build_network_space(cfg, (1, 8, 8), 10)
    with pytest.raises(ValueError, match="search.recompute must be true, false or 'auto'"):
        Supernet(space, list(cfg.bits.choices), True, "sometimes")
