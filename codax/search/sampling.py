"""Sampling of architecture paths, and the gates through which both terms of the architecture loss
reach the logits.

The architecture loss is L = CE + lambda * hw. Its gradient with respect to a block's op logits
alpha is that of E_{k ~ softmax(alpha)}[L(k)], i.e. p_k (L(k) - E_p[L]) for logit k. A sampled path
gives L(k) for one k only; a one-path straight-through sample whose hardware term is the softmax
mixture sum_k p_k hw(k) hands every logit the cost's exact gradient while the task loss reaches the
sampled op alone (and without a baseline), so the cost wins and the search walks to the cheapest ops
(skip, expansion 1) whatever the task loss says.

Here both terms go through the same estimator, at two paths' memory: per block two paths i, j are
drawn independently from softmax(alpha) (`PathSampler.pairs`) and the gates `pair_gates` returns
have the value 1 at i and 0 elsewhere (the forward is the network of path i) and the gradient
d gate_i / d alpha = -d gate_j / d alpha = (e_i - e_j) / 2. With s_m = dL / d gate_m, the
per-path signal (for the hardware term the cost of path m exactly, for the task loss its
first-order change <dL/dy, o_m(x)>: ProxylessNAS's binary-gate gradient), the logits receive
    g = (s_i - s_j) (e_i - e_j) / 2,
the two-sample score-function estimator with a leave-one-out baseline:
E[g_k] = p_k (s_k - E_p[s]), unbiased, and zero on every logit outside the pair. When i = j the
block contributes nothing (and runs one path). Bitwidths use the same gates (a pair of widths per
tensor).

The random numbers come from the sampler's own `torch.Generator`, seeded from the search seed only:
every data-parallel rank draws the same paths whatever its data pipeline consumes (the global RNG
is left to the data), so the all-reduced gradients belong to the same parameters on every rank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class PathSampler:
    """Architecture samples (op pairs, bit pairs, the weight step's paths and soft bit weights)."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(int(seed))

    def draw(self, logits: torch.Tensor, n: int) -> torch.Tensor:
        """[R, n] indices drawn independently from softmax(logits) per row (Gumbel-max on the host,
        where the generator lives; the logits are small)."""
        lg = logits.detach().float().cpu()
        u = torch.rand(*lg.shape, n, generator=self.gen).clamp(1e-12, 1.0 - 1e-7)
        g = -torch.log(-torch.log(u))
        return (lg.unsqueeze(-1) + g).argmax(-2)

    def pairs(self, logits: torch.Tensor) -> torch.Tensor:
        """[R, 2] two independent draws per row."""
        return self.draw(logits, 2)

    def one(self, logits: torch.Tensor) -> torch.Tensor:
        """[R] one draw per row."""
        return self.draw(logits, 1)[:, 0]

    def gumbel_soft(self, logits: torch.Tensor, tau: float) -> torch.Tensor:
        """Soft Gumbel-softmax weights from this generator (the weight step's bit mixing, Auto-NBA;
        FBNet's op mixing), differentiable in the logits."""
        u = torch.rand(*logits.shape, generator=self.gen).clamp(1e-12, 1.0 - 1e-7)
        g = (-torch.log(-torch.log(u))).to(logits.device, logits.dtype)
        return F.softmax((logits + g) / tau, -1)

    def state(self) -> torch.Tensor:
        return self.gen.get_state()

    def load_state(self, st: torch.Tensor) -> None:
        self.gen.set_state(st)


def pair_gates(logits: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """[R, K] gates of the sampled pairs: value one-hot at pairs[:, 0]; gradient to the logits
    (e_i - e_j) / 2 through gate i and its negative through gate j (see the module docstring)."""
    i, j = (pairs[:, k].to(logits.device) for k in (0, 1))
    d = 0.5 * (logits.gather(1, i[:, None]) - logits.gather(1, j[:, None])).squeeze(1)
    d = torch.where(i == j, torch.zeros_like(d), d)  # also keeps a masked (-inf) logit out of the graph
    st = d - d.detach()  # value 0, gradient of d
    K = logits.shape[1]
    return (
        F.one_hot(i, K).to(logits.dtype) + (F.one_hot(i, K) - F.one_hot(j, K)).to(logits.dtype) * st[:, None]
    )


def run_mask(pairs: torch.Tensor, K: int) -> torch.Tensor:
    """[R, K] bool: the paths a forward must run (both of each pair: the second one's gate is 0 in
    value but its output gives the gate's gradient)."""
    return (F.one_hot(pairs[:, 0], K) + F.one_hot(pairs[:, 1], K)) > 0


def onehot(idx: torch.Tensor, K: int, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(idx.to(like.device), K).to(like.dtype)
