"""The accelerator distribution: a joint distribution over the points that fit the budget, and the
gradient of the expected hardware cost under it.

Each engine's choices (rows, cols, buffers, dataflow, double buffering) keep one logit vector per
choice, and a point a = (a_1, ..., a_n) has probability
    P(a) = exp(sum_c theta_c[a_c]) / Z,   a in F (the points that fit the budget),
the product of the per-choice softmaxes restricted to F. So points over the budget are never
drawn (they are rejected, as Auto-NBA rejects them, instead of penalised), and the cost that the
logits descend is E_P[C(a)] over whole points: interactions between choices (rows x cols,
dataflow x buffers) are in it, where a linearisation around the most likely point, one choice at a
time, has none.

Its gradient: d E_P[C] / d theta_c[o] = Cov_P(C, [a_c = o]) = P(a_c = o) (E[C | a_c = o] - E[C]).
`expected_term` estimates E_P[C] and this gradient without bias, splitting the space into the points
whose cost is known already (K: the points drawn so far, whose tables are cached) and the rest:
    E_P[C] = sum_{a in K} P(a) C(a) + b (1 - P(K)) + E_P[(C(a) - b) [a not in K]],
with b the known points' mean cost under P: the first two parts exactly (differentiable in the
logits through P), the last through S points drawn from P (their mean, and the score-function
estimator with a leave-one-out baseline for the logits; a draw that falls in K contributes 0).
Only draws outside K need new tables, and the more of P's mass K holds, the smaller the sampled
part's variance; when K holds every fitting point (a space of at most `search.accel_exact` points
is tabulated up front) the term is the exact expectation and nothing is drawn.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class AccelDist:
    """P over the fitting points `feasible` [F, n] (option indices) of one engine."""

    def __init__(self, feasible: torch.Tensor):
        self.feasible = feasible.long()
        self.index = {self.point(i): i for i in range(len(self))}

    def __len__(self) -> int:
        return self.feasible.shape[0]

    def log_probs(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """[F] log P of every fitting point (differentiable in the logits)."""
        dev = logits[0].device
        f = self.feasible.to(dev)
        s = sum(lg[f[:, c]] for c, lg in enumerate(logits))
        return torch.log_softmax(s, 0)

    def sample(self, logits: list[torch.Tensor], n: int, gen: torch.Generator) -> torch.Tensor:
        """[n] indices into `feasible` drawn independently from P (Gumbel-max, on the host)."""
        lp = self.log_probs([lg.detach().float().cpu() for lg in logits])
        u = torch.rand(len(lp), n, generator=gen).clamp(1e-12, 1.0 - 1e-7)
        return (lp.unsqueeze(1) - torch.log(-torch.log(u))).argmax(0)

    def point(self, i: int) -> tuple[int, ...]:
        return tuple(int(v) for v in self.feasible[i])

    def mode(self, logits: list[torch.Tensor]) -> tuple[int, ...]:
        """The most probable fitting point (the first of equals, in `feasible` order)."""
        return self.point(int(torch.argmax(self.log_probs([lg.detach().double().cpu() for lg in logits]))))


def score_loss(values: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """A term whose gradient is the S-sample score-function estimate of d E[value] with a
    leave-one-out baseline: sum_s (v_s - mean of the others) d log P(a_s) / S; value 0. `values`
    [S] (their gradients are not followed here), `log_p` [S] log P of the samples."""
    S = values.shape[0]
    if S < 2:
        raise ValueError("the leave-one-out baseline needs at least two samples")
    v = values.detach()
    adv = v - (v.sum() - v) / (S - 1)
    t = (adv * log_p).sum() / S
    return t - t.detach()


def expected_term(
    dist: AccelDist,
    logits: list[torch.Tensor],
    known: list[int],
    n: int,
    gen: torch.Generator,
    cost: Callable[[list[int]], torch.Tensor],
) -> tuple[torch.Tensor, list[int]]:
    """(E_P[cost] estimate whose gradient estimates d E_P[cost], the points drawn). `known`: indices
    of the points whose cost is cheap (cached tables), fixed before the draw; `cost(indices)` the
    [len] costs of points (differentiable in whatever else they depend on)."""
    log_p = dist.log_probs(logits)
    if len(known) == len(dist):
        return (log_p.exp() * cost(list(range(len(dist))))).sum(), []
    drawn = dist.sample(logits, n, gen).tolist()
    v = cost(list(known) + drawn)
    vk, vs = v[: len(known)], v[len(known) :]
    pk = log_p[torch.tensor(known, dtype=torch.long, device=log_p.device)].exp()
    # control variate: the rest's mass at the known points' mean cost exactly, the draws only for
    # their difference from it (a draw inside K contributes 0 either way)
    b = (pk * vk).sum().detach() / pk.sum().detach() if known else torch.zeros((), dtype=v.dtype)
    inside = set(known)
    outside = torch.tensor([float(i not in inside) for i in drawn], dtype=v.dtype, device=v.device)
    f = (vs - b.to(v.device)) * outside
    at = torch.tensor(drawn, device=log_p.device)
    exact = (pk * vk).sum() + b.to(v.device) * (1.0 - pk.sum())
    return exact + f.mean() + score_loss(f, log_p[at]), drawn
