"""The shared-weight supernet: the IR ops of a block are slices of a superkernel, one for the ops
that expand and one for those that do not."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from codax.search.config import load_config
from codax.search.cosearch import CoSearch, batch_stats


def _ops(cs, u):
    return {op.label: o for o, op in enumerate(cs.net.units[u].ops)}


def test_ops_are_slices_of_their_groups_superkernel(tiny):
    tiny["network"]["expansions"] = [1, 3, 6]
    cs = CoSearch(load_config(tiny))
    u = cs.net.searchable[0]
    ops = _ops(cs, u)
    m = {label: cs.supernet.op_module(u, o) for label, o in ops.items() if label.startswith("ir_")}
    c_in = cs.net.units[u].c_in
    # expanded ops: k3 is the centre of the k5 depthwise kernel, e3 the first channels of e6
    torch.testing.assert_close(m["ir_k3_e3"].dw.weight, m["ir_k5_e6"].dw.weight[: 3 * c_in, :, 1:4, 1:4])
    torch.testing.assert_close(m["ir_k3_e3"].expand.weight, m["ir_k5_e6"].expand.weight[: 3 * c_in])
    torch.testing.assert_close(m["ir_k3_e3"].project.weight, m["ir_k5_e6"].project.weight[:, : 3 * c_in])
    # unexpanded ops share their own kernel: k3_e1 is the centre of k5_e1
    torch.testing.assert_close(m["ir_k3_e1"].dw.weight, m["ir_k5_e1"].dw.weight[:, :, 1:4, 1:4])
    torch.testing.assert_close(m["ir_k3_e1"].project.weight, m["ir_k5_e1"].project.weight)
    # ... and not the expanded ops' (its depthwise kernel sees the block input, theirs the expansion)
    assert not torch.allclose(m["ir_k3_e1"].dw.weight, m["ir_k3_e3"].dw.weight[:c_in])
    # one set of conv weights per group, not one per op
    conv = lambda mod: sum(p.numel() for p in mod.parameters() if p.dim() == 4)  # noqa: E731
    n_shared = conv(cs.supernet.shared[cs.net.units[u].name])
    n_private = sum(conv(b) for b in m.values())
    assert n_shared < n_private / 2


def test_training_one_op_moves_its_group_only(tiny):
    tiny["network"]["expansions"] = [1, 3, 6]
    cs = CoSearch(load_config(tiny))
    u = cs.net.searchable[0]
    ops = _ops(cs, u)
    same_group = cs.supernet.op_module(u, ops["ir_k3_e3"]).dw.weight.clone()
    other_group = cs.supernet.op_module(u, ops["ir_k3_e1"]).dw.weight.clone()
    U, O = cs.arch.alpha.shape
    op_w = torch.zeros(U, O)
    op_w[:, 0] = 1.0
    op_w[u] = 0.0
    op_w[u, ops["ir_k5_e6"]] = 1.0  # train only the k5_e6 path of this block
    x, y = cs.data.train[0][:16], cs.data.train[1][:16]
    loss = torch.nn.functional.cross_entropy(cs.supernet(x, op_w, None, None), y)
    loss.backward()
    cs.w_opt.step()
    assert not torch.allclose(same_group, cs.supernet.op_module(u, ops["ir_k3_e3"]).dw.weight)
    torch.testing.assert_close(other_group, cs.supernet.op_module(u, ops["ir_k3_e1"]).dw.weight)


def test_private_weights_option(tiny):
    tiny["network"]["share_weights"] = False
    cs = CoSearch(load_config(tiny))
    assert len(cs.supernet.shared) == 0
    u = cs.net.searchable[0]
    ops = _ops(cs, u)
    a, b = cs.supernet.op_module(u, ops["ir_k3_e1"]), cs.supernet.op_module(u, ops["ir_k5_e1"])
    assert a.dw.weight.data_ptr() != b.dw.weight.data_ptr()


def test_prefix_cached_logits_equal_a_full_forward(tiny):
    """Designs that share their first units reuse those units' outputs from the cache; every
    design's logits are exactly a full forward's, and a shared prefix is not recomputed."""
    cs = CoSearch(load_config(tiny))
    d = cs.design()
    units = [u for u, unit in enumerate(cs.net.units) if unit.searchable]
    last = units[-1]
    moves = [
        replace(
            d, ops=[(o + 1) % len(cs.net.units[last].ops) if u == last else o for u, o in enumerate(d.ops)]
        )
    ]
    moves.append(replace(d, bits=[(4, 4) if u == units[0] else b for u, b in enumerate(d.bits)]))
    bi = {b: i for i, b in enumerate(cs.bits)}

    def full_forward(m):
        """One call over every unit, batch statistics: what the cache must reproduce."""
        onehot = lambda idx, n: F.one_hot(torch.tensor(idx), n).float()  # noqa: E731
        bw = onehot([bi[b[0]] for b in m.bits], len(cs.bits))
        ba = onehot([bi[b[1]] for b in m.bits], len(cs.bits))
        with batch_stats(cs.supernet):
            return cs.supernet(cs.data.val[0], onehot(m.ops, cs.arch.alpha.shape[1]), bw, ba)

    cache: dict = {}
    for m in [d, *moves, d]:
        torch.testing.assert_close(cs.supernet_logits(m, prefix_cache=cache), full_forward(m), rtol=0, atol=0)
    calls = []
    hook = cs.supernet.register_forward_pre_hook(
        lambda mod, args, kw: calls.append(kw["units"]), with_kwargs=True
    )
    try:
        cs.supernet_logits(replace(d, ops=list(moves[0].ops), bits=list(d.bits)), prefix_cache=cache)
        cs.supernet_logits(
            replace(moves[0], bits=[(6, 6) if u == last else b for u, b in enumerate(d.bits)]),
            prefix_cache=cache,
        )
    finally:
        hook.remove()
    # a cached design runs nothing; a change at the last searchable unit runs the units from it on
    assert calls == [range(u, u + 1) for u in range(last, len(cs.net.units))]
    assert len(calls) < len(cs.net.units)
