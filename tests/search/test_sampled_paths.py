"""The architecture step runs a sampled pair of paths per block (memory independent of the number
of candidate ops); the task loss and the hardware term reach the logits through the same gates, only
the pair's logits get a gradient, and in expectation the gradient is the exact one (no drift toward
cheap ops that the task loss cannot counter); recomputing units in backward gives the same
gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codax.search.config import load_config
from codax.search.cosearch import CoSearch
from codax.search.sampling import PathSampler, pair_gates, run_mask


def _fixed_pairs(cs, first: str, second: str) -> torch.Tensor:
    """[U, 2] the same two ops in every searchable block (the same network in every supernet); a
    fixed unit's only op twice."""
    pairs = torch.zeros(len(cs.net.units), 2, dtype=torch.long)
    for u in cs.net.searchable:
        labels = [op.label for op in cs.net.units[u].ops]
        pairs[u] = torch.tensor([labels.index(first), labels.index(second)])
    return pairs


def _saved_bytes(cs, x, y, pairs, soft=False) -> tuple[int, dict]:
    """Bytes autograd keeps for backward in one architecture-step forward + the logits' grads."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    a = cs.arch
    a.zero_grad(set_to_none=True)
    logits = a.alpha + a.op_mask
    if soft:
        op_w, run = F.softmax(logits, -1), None
    else:
        op_w, run = pair_gates(logits, pairs), run_mask(pairs, logits.shape[1])
    nb = len(cs.bits)
    bit_pairs = torch.tensor([[nb - 1, 0]] * len(cs.net.units))  # 8 and 4 bits (a fixed unit: its own)
    bit_pairs[[u for u, unit in enumerate(cs.net.units) if not unit.searchable]] = nb - 1
    bw = pair_gates(a.beta_w + a.bit_mask, bit_pairs)
    ba = pair_gates(a.beta_a + a.bit_mask, bit_pairs)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(cs.supernet(x, op_w, bw, ba, run=run), y)
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
        pairs = _fixed_pairs(cs, "ir_k3_e3", "ir_k3_e1")
        saved[name], grads = _saved_bytes(cs, x, y, pairs)
        searchable = cs.net.searchable
        g = grads["alpha"][searchable]
        # the pair's two logits get opposite gradients, every other op's logit none
        inside = F.one_hot(pairs[searchable], g.shape[1]).sum(1).bool()
        assert (g[inside] != 0).all(), g
        assert (g[~inside] == 0).all(), g
        torch.testing.assert_close(g.sum(-1), torch.zeros(len(searchable)))
        assert (grads["beta_w"][searchable][:, [0, -1]] != 0).all()
    assert saved["nine"] <= saved["two"] * 1.05, saved
    # mixing every op (FBNet soft sampling) keeps all of them: the measure tells the two apart
    cs = _search(tiny, [3, 5, 7], [1, 3, 6])
    soft, _ = _saved_bytes(cs, x, y, None, soft=True)
    assert soft > 3 * saved["two"], (soft, saved)


def test_arch_step_runs_at_most_two_ops_per_block(tiny):
    cs = _search(tiny, [3, 5], [1, 3, 6])
    calls = []
    for unit_ops in cs.supernet.units:
        for m in unit_ops:
            if hasattr(m, "op"):
                m.register_forward_pre_hook(lambda mod, args: calls.append(mod.op.label))
    drawn = []
    pairs_of = cs.sampler.pairs
    cs.sampler.pairs = lambda lg: drawn.append(pairs_of(lg)) or drawn[-1]
    x, y = cs.data.val[0][:16], cs.data.val[1][:16]
    cs.arch_step(x, y, cs.tau(0))
    op_pairs = drawn[-1]  # the op logits' draw comes after the two bit draws
    distinct = sum(len(set(op_pairs[u].tolist())) for u in cs.net.searchable)
    assert len(calls) == distinct <= 2 * len(cs.net.searchable)
    # the weights got no gradient from the architecture step (frozen while it ran)
    assert all(p.grad is None for p in cs.supernet.parameters())
    assert all(p.requires_grad for p in cs.supernet.parameters())


def test_no_gradient_outside_the_sampled_pair(tiny):
    """Neither term reaches a logit outside the pair: with hardware weight 0 (task loss only) and
    with the hardware term alone (the term that used to reach every op directly)."""
    cs = _search(tiny, [3, 5], [1, 3, 6])
    x, y = cs.data.val[0][:32], cs.data.val[1][:32]
    a = cs.arch
    searchable = cs.net.searchable
    seen_pairs = 0
    for lam, task in ((0.0, True), (1.0, False)):
        for _ in range(4):
            op_w, bw, ba, run = cs.arch_gates(1.0)
            a.zero_grad(set_to_none=True)
            loss = cs.hw_value(cs.estimate(op_w, bw, ba)) * lam
            if task:
                loss = loss + F.cross_entropy(cs.supernet(x, op_w, bw, ba, run=run), y)
            loss.backward()
            g = a.alpha.grad[searchable]
            assert (g[~run[searchable]] == 0).all(), (g, run)
            for u, row in zip(searchable, g):
                if int(run[u].sum()) == 2:  # a pair of two ops: opposite gradients on the two
                    seen_pairs += 1
                    assert (row[run[u]] != 0).all()
                    assert float(row.sum()) == pytest.approx(0.0, abs=1e-6 * float(row.abs().max()))
    assert seen_pairs >= 4


@pytest.mark.parametrize("objective", ["flops", "latency"])
def test_hardware_gradient_is_unbiased(tiny, objective):
    """The mean over sampled pairs of the hardware term's gradient on the op logits is the gradient
    of the expected cost under softmax(alpha) (the cost is linear in each block's op gates at fixed
    widths), within 4.5 standard errors per logit."""
    tiny["search"]["objective"] = objective
    cs = _search(tiny, [3, 5], [1, 3, 6])
    a = cs.arch
    with torch.no_grad():
        bw, ba = a.bit_probs("w"), a.bit_probs("a")
    logits = a.alpha + a.op_mask
    a.zero_grad(set_to_none=True)
    cs.hw_value(cs.estimate(F.softmax(logits, -1), bw, ba)).backward()
    exact = a.alpha.grad.clone()
    sampler = PathSampler(7)
    grads = []
    for _ in range(3000):
        a.zero_grad(set_to_none=True)
        lg = a.alpha + a.op_mask
        cs.hw_value(cs.estimate(pair_gates(lg, sampler.pairs(lg)), bw, ba)).backward()
        grads.append(a.alpha.grad.clone())
    g = torch.stack(grads)
    s = cs.net.searchable
    mean, se = g.mean(0)[s], g.std(0)[s] / len(grads) ** 0.5
    assert exact[s].abs().max() > 10 * se.max()  # a test with power: the gradient is resolved
    assert ((mean - exact[s]).abs() <= 4.5 * se + 1e-6 * exact[s].abs().max()).all(), (mean, exact[s], se)


def test_recompute_gives_the_same_gradients_and_running_stats(tiny):
    grads, stats, saved = [], [], []
    for recompute in (False, True):
        cs = _search(tiny, [3, 5], [1, 3], recompute=recompute)
        assert cs.supernet.recompute is recompute
        x, y = cs.data.train[0][:32], cs.data.train[1][:32]
        n, g = _saved_bytes(cs, x, y, _fixed_pairs(cs, "ir_k3_e3", "ir_k5_e1"))
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


FLOPS_NET = {
    "seed": 0,
    "data": {"limit": 600},
    "network": {  # two blocks that may skip, one that may not
        "stem": {"width": 8, "stride": 1},
        "stages": [{"width": 8, "depth": 2, "stride": 1}, {"width": 16, "depth": 1, "stride": 2}],
        "kernels": [3],
        "expansions": [1, 3],
    },
    "accelerator": {
        "rows": [8],
        "cols": [8],
        "buffer_kb": {"W": [64], "I": [64], "O": [32]},
        "dataflow": ["weight-stationary"],
        "double_buffer": [True],
    },
    "search": {
        "epochs": 8,
        "warmup_epochs": 3,
        "batch_size": 32,
        "max_steps_per_epoch": 16,
        "objective": "flops",
        "relaxed_cost": "templates",
        "a_lr": 0.05,
    },
}


def test_flops_search_follows_the_task_loss_at_a_small_weight():
    """A short FLOPs-only search (no accelerator model) from uniform logits: at a small FLOPs weight
    the skip ops lose probability (the task loss wants the blocks), at a large one they gain it. A
    cost term that reached every op's logit directly while the task loss reached only the sampled op
    raised skip at any positive weight."""
    import copy

    skip = {}
    for lam in (0.05, 3.0):
        ps = []
        for seed in (0, 1, 2):
            cfg = copy.deepcopy(FLOPS_NET)
            cfg["seed"], cfg["search"]["lambda"] = seed, lam
            cs = CoSearch(load_config(cfg))
            for _ in range(cfg["search"]["epochs"]):
                cs.run_epoch(progress=False)
            with torch.no_grad():
                p = cs.arch.op_probs()
            for u in cs.net.searchable:
                labels = [op.label for op in cs.net.units[u].ops]
                if "skip" in labels:
                    ps.append(float(p[u, labels.index("skip")]))
        skip[lam] = sum(ps) / len(ps)
    assert skip[0.05] < 1 / 3 < 0.5 < skip[3.0], skip
