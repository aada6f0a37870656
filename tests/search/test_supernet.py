"""The shared-weight supernet: the IR ops of a block are slices of one superkernel."""

from __future__ import annotations

import torch

from codax.search.config import load_config
from codax.search.cosearch import CoSearch


def _ops(cs, u):
    return {op.label: o for o, op in enumerate(cs.net.units[u].ops)}


def test_ops_are_slices_of_one_superkernel(tiny):
    cs = CoSearch(load_config(tiny))
    u = cs.net.searchable[0]
    ops = _ops(cs, u)
    k3e1, k5e3 = cs.supernet.op_module(u, ops["ir_k3_e1"]), cs.supernet.op_module(u, ops["ir_k5_e3"])
    c_in = cs.net.units[u].c_in
    # k3 is the centre of the k5 depthwise kernel, e1 the first channels of e3
    torch.testing.assert_close(k3e1.dw.weight, k5e3.dw.weight[:c_in, :, 1:4, 1:4])
    torch.testing.assert_close(k3e1.project.weight, k5e3.project.weight[:, :c_in])
    # one set of conv weights per block, not one per op
    conv = lambda m: sum(p.numel() for p in m.parameters() if p.dim() == 4)  # noqa: E731
    n_shared = conv(cs.supernet.shared[cs.net.units[u].name])
    n_private = sum(conv(cs.supernet.op_module(u, o)) for o in ops.values())
    assert n_shared < n_private / 2


def test_training_one_op_moves_the_others(tiny):
    cs = CoSearch(load_config(tiny))
    u = cs.net.searchable[0]
    ops = _ops(cs, u)
    before = cs.supernet.op_module(u, ops["ir_k3_e1"]).dw.weight.clone()
    U, O = cs.arch.alpha.shape
    op_w = torch.zeros(U, O)
    op_w[:, 0] = 1.0
    op_w[u] = 0.0
    op_w[u, ops["ir_k5_e3"]] = 1.0  # train only the k5_e3 path of this block
    x, y = cs.data.train[0][:16], cs.data.train[1][:16]
    loss = torch.nn.functional.cross_entropy(cs.supernet(x, op_w, None, None), y)
    loss.backward()
    cs.w_opt.step()
    after = cs.supernet.op_module(u, ops["ir_k3_e1"]).dw.weight
    assert not torch.allclose(before, after)


def test_private_weights_option(tiny):
    tiny["network"]["share_weights"] = False
    cs = CoSearch(load_config(tiny))
    assert len(cs.supernet.shared) == 0
    u = cs.net.searchable[0]
    ops = _ops(cs, u)
    a, b = cs.supernet.op_module(u, ops["ir_k3_e1"]), cs.supernet.op_module(u, ops["ir_k5_e1"])
    assert a.dw.weight.data_ptr() != b.dw.weight.data_ptr()
