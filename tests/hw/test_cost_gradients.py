"""The cost model as a differentiable function of relaxed choices."""

import random

import torch

from codax.hw import cost_core, encode, expected, load_accelerator, stack
from codax.hw.mapper.space import random_mapping
from codax.ir import conv2d


def _options(n=5, seed=0):
    layer = conv2d("c", c_in=32, c_out=64, hw=(14, 14), pads=(1, 1, 1, 1))
    acc = load_accelerator("zc706-int8")
    rng = random.Random(seed)
    return stack([encode(layer, acc, random_mapping(layer, acc, rng)) for _ in range(n)])


def test_expected_cost_gradcheck_and_one_hot_exactness():
    x = _options()
    out = cost_core(x)
    values = torch.stack([out.cycles, out.energy_pj / 1e3])  # two objectives, 5 options each

    def f(logits):
        p = torch.softmax(logits, dim=-1)
        return expected(p, values)

    logits = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (logits,), eps=1e-6, atol=1e-4)
    g = torch.autograd.grad(f(logits).sum(), logits)[0]
    assert (g.abs() > 0).all()
    for k in range(5):
        one_hot = torch.zeros(5, dtype=torch.float64)
        one_hot[k] = 1.0
        assert torch.equal(expected(one_hot, out.cycles), out.cycles[k])


def test_relaxed_core_gradcheck_wrt_continuous_hardware_and_tiles():
    """relaxed=True: smooth in fractional tile factors and bandwidths, with finite non-zero gradients."""
    x = _options(n=1, seed=3)

    active = x.factor > 1  # loops of trip count 1 are structural (absent), not a continuous choice

    def f(bandwidth, active_factors):
        factor = x.factor.masked_scatter(active, active_factors)
        out = cost_core(x.with_(bandwidth=bandwidth, factor=factor), relaxed=True)
        return torch.stack([out.cycles, out.energy_pj / 1e3])

    bw = x.bandwidth.clone().requires_grad_(True)
    fac = (x.factor[active] + 0.25).clone().requires_grad_(True)  # fractional, off integer kinks
    assert torch.autograd.gradcheck(f, (bw, fac), eps=1e-7, atol=1e-3, rtol=1e-3)
    cyc = f(bw, fac)[0].sum()
    gb, gf = torch.autograd.grad(cyc, (bw, fac))
    assert torch.isfinite(gf).all() and gf.abs().sum() > 0


def test_relaxed_equals_exact_where_tiles_divide():
    # make every factor product divide its bound exactly: then ceil is the identity
    layer = conv2d("c", c_in=32, c_out=64, hw=(16, 16), pads=(1, 1, 1, 1))
    acc = load_accelerator("zc706-int8")
    from codax.ir import Mapping

    m = Mapping(
        "c",
        spatial={"rows": ("K", 16), "cols": ("C", 32)},
        tiles={"DRAM": {"K": 4, "P": 4, "Q": 2}, "BUF": {"P": 4, "Q": 8, "R": 3, "S": 3}},
        order={"DRAM": ["K", "P", "Q"]},
    )
    x = encode(layer, acc, m)
    a, b = cost_core(x), cost_core(x, relaxed=True)
    assert torch.allclose(a.cycles, b.cycles) and torch.allclose(a.energy_pj, b.energy_pj)
