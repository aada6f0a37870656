"""The architecture step runs the sampled path of each block only (memory independent of the
number of candidate ops), its gradients still reach every op and bit logit, and recomputing units
in backward (activation checkpointing) gives the same gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from codax.search.config import load_config
from codax.search.cosearch import CoSearch


def _saved_bytes(cs, x, y, tau, hard=True) -> tuple[int, dict]:
    """Bytes autograd keeps for backward in one architecture-step forward + the logits' grads."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    a = cs.arch
    a.zero_grad(set_to_none=True)
    soft = F.softmax((a.alpha + a.op_mask) / tau, -1)
    labels = [op.label for op in cs.net.units[cs.net.searchable[0]].ops]
    pick = torch.zeros_like(soft)  # every block takes ir_k3_e3: the same network in every supernet
    pick[:, 0] = 1.0
    pick[cs.net.searchable, 0] = 0.0
    pick[cs.net.searchable, labels.index("ir_k3_e3")] = 1.0
    op_w = pick - soft.detach() + soft if hard else soft  # straight-through, as a hard Gumbel sample
    bsoft = F.softmax((a.beta_w + a.bit_mask) / tau, -1)
    bw = F.one_hot(bsoft.argmax(-1), bsoft.shape[-1]).float() - bsoft.detach() + bsoft
    ba = a.bit_probs("a", tau, hard=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(cs.supernet(x, op_w, bw, ba), y)
    loss.backward()
    return total, {"alpha": a.alpha.grad.clone(), "beta_w": a.beta_w.grad.clone()}


def _search(tiny, kernels, expansions, **search):
    tiny["network"].update(kernels=kernels, expansions=expansions)
    tiny["search"].update(search)
    cs = CoSearch(load_config(tiny))
    with torch.no_grad():  # distinct logits: no tie makes a gradient vanish by symmetry
        cs.arch.alpha.copy_(torch.randn(cs.arch.alpha.shape, generator=torch.Generator().manual_seed(1)))
        cs.arch.beta_w.copy_(torch.randn(cs.arch.beta_w.shape, generator=torch.Generator().manual_seed(2)))
    return cs


def test_arch_step_memory_does_not_grow_with_candidate_ops(tiny):
    x, y = None, None
    saved = {}
    for name, ks, es in (("two", [3], [1, 3]), ("nine", [3, 5, 7], [1, 3, 6])):
        cs = _search(tiny, ks, es)
        if x is None:
            x, y = cs.data.train[0][:16], cs.data.train[1][:16]
        saved[name], grads = _saved_bytes(cs, x, y, tau=1.0)
        searchable = cs.net.searchable
        n_ops = [len(cs.net.units[u].ops) for u in searchable]
        g = grads["alpha"][searchable]
        # the sampled path's gradient reaches every candidate's logit (through the softmax)
        for row, n in zip(g, n_ops):
            assert (row[:n] != 0).all(), row
        assert (grads["beta_w"][searchable] != 0).all()
    assert saved["nine"] <= saved["two"] * 1.05, saved
    # mixing every op (FBNet soft sampling) keeps all of them: the measure tells the two apart
    soft, _ = _saved_bytes(_search(tiny, [3, 5, 7], [1, 3, 6]), x, y, tau=1.0, hard=False)
    assert soft > 3 * saved["two"], (soft, saved)


def test_arch_step_runs_one_op_per_block(tiny):
    cs = _search(tiny, [3, 5], [1, 3, 6])
    calls = []
    for unit_ops in cs.supernet.units:
        for m in unit_ops:
            if hasattr(m, "op"):
                m.register_forward_pre_hook(lambda mod, args: calls.append(mod.op.label))
    x, y = cs.data.val[0][:16], cs.data.val[1][:16]
    cs.arch_step(x, y, cs.tau(0))
    assert len(calls) == len(cs.net.searchable)
    # the weights got no gradient from the architecture step (frozen while it ran)
    assert all(p.grad is None for p in cs.supernet.parameters())
    assert all(p.requires_grad for p in cs.supernet.parameters())


def test_recompute_gives_the_same_gradients_and_running_stats(tiny):
    grads, stats, saved = [], [], []
    for recompute in (False, True):
        cs = _search(tiny, [3, 5], [1, 3], recompute=recompute)
        assert cs.supernet.recompute is recompute
        x, y = cs.data.train[0][:32], cs.data.train[1][:32]
        n, g = _saved_bytes(cs, x, y, tau=2.0)
        saved.append(n)
        cs.weight_step(x, y, 2.0)  # one weight step: its BN statistics and gradients
        grads.append((g, [p.detach().clone() for p in cs.supernet.parameters()]))
        stats.append([b.clone() for n, b in cs.supernet.named_buffers() if "running" in n])
    assert saved[1] < saved[0] / 2, saved  # only the units' inputs are kept
    (g0, p0), (g1, p1) = grads
    torch.testing.assert_close(g0["alpha"], g1["alpha"])
    torch.testing.assert_close(g0["beta_w"], g1["beta_w"])
    for a, b in zip(p0, p1):
        torch.testing.assert_close(a, b)
    # recomputation does not count a batch twice in the running statistics
    for a, b in zip(stats[0], stats[1]):
        torch.testing.assert_close(a, b)
