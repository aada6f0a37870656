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

Its gradient: d E_P[C] / d theta_c[o] = E_P[C(a) ([a_c = o] - P(a_c = o))] = Cov_P(C, [a_c = o]).

`expected_term` estimates it by local expectations (Titsias and Lazaro-Gredilla 2015) over blocks
of choices. The budget couples some choices (the DSPs: rows x cols): the blocks are the choices
grouped until the fitting points take every combination of any two blocks' values
(`coupled_blocks`; the default spaces: {rows, cols} and each other choice alone). S points a^s are
drawn from P, and for each block B the cost is evaluated at every option m of B (a combination of
its choices' options) with the other choices held at a^s, where that point fits. Given the others, P's block B
is the softmax of its logits theta_B[m] = sum_{c in B} theta_c[m_c] over those fitting options,
    q_B(m | a_-B) = exp theta_B[m] [(a_-B, m) in F] / sum_m' exp theta_B[m'] [(a_-B, m') in F],
C_B(a_-B) = sum_m q_B(m | a_-B) C(a_-B, m) the cost averaged over B alone, and
    G_B[m] = mean_s  q_B(m | a^s_-B) (C(a^s_-B, m) - beta) - P(a_B = m) (C_B(a^s_-B) - beta),
    d E_P[C] / d theta_c[o] ~ sum over m with m_c = o of G_B[m],
with P(a_B = m) the exact marginal (a sum over F) and beta the other draws' mean of C_B (0 with
one draw). Unbiased for the restricted product: write P(a) = P(a_-B) q_B(a_B | a_-B); the
covariance is sum_{m: m_c = o} (E[[a_B = m] C] - P(a_B = m) E[C]), and
E[[a_B = m] C] = E[q_B(m | a_-B) C(a_-B, m)], E[C] = E[C_B(a_-B)], E[q_B(m | a_-B)] = P(a_B = m) (so
beta, independent of the draw, adds nothing in expectation). When F is the product of the blocks'
fitting values (the blocks' purpose), q_B(m | a_-B) = P(a_B = m) and G_B[m] is the plain local
expectation gradient q_B(m) (C(a_-B, m) - C_B(a_-B)): differences of the cost along one block at
the same values of the others, so the others' variation, the main noise of the score function of
whole points, is not in it. (A coupling of three or more choices that no two of them show, a
parity, leaves F no product of the blocks: G keeps its second term, unbiased still, noisier.)
Interactions stay: within a block every fitting combination is costed, and each block's options
at the other choices' jointly drawn values.

The value estimates E_P[C] (its gradient in the network's weights is the term's) from the points
whose cost is known already (K: the points evaluated so far, whose tables are cached) and the draws:
    E_P[C] = sum_{a in K} P(a) C(a) + b (1 - P(K)) + E_P[(C(a) - b) [a not in K]],
with b the known points' mean cost under P: the first two parts exactly, the last as the mean over
draws and blocks of its block averages (each unbiased). The logits' gradient does not take this
split: (C - b) [a not in K] jumps between a block's options (0 on K, C - b elsewhere), differences
that are not the cost's, which make its local expectations noisier than the cost's own. The
draws' neighbours are evaluated (and their tables cached) with the draws, a bounded number per
draw (the sum over blocks of their options), so K grows by them too; when K holds every fitting
point (a space of at most `search.accel_exact` points is tabulated up front) the term is the exact
expectation, gradient included, and nothing is drawn. A neighbour differs from its draw in one
block, so with the mapper's tables most of its layers pose the mapper a search already run
(codax/search/mappertable.py shares them): the neighbours' costs stay exact and cost little more
than the draws'.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch


class AccelDist:
    """P over the fitting points `feasible` [F, n] (option indices) of one engine."""

    def __init__(self, feasible: torch.Tensor):
        self.feasible = feasible.long()
        self._points = [tuple(int(v) for v in row) for row in self.feasible.tolist()]  # host tuples
        self.index = {p: i for i, p in enumerate(self._points)}
        self._tables: tuple | None = None

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
        return self._points[i]

    def mode(self, logits: list[torch.Tensor]) -> tuple[int, ...]:
        """The most probable fitting point (the first of equals, in `feasible` order)."""
        return self.point(int(torch.argmax(self.log_probs([lg.detach().double().cpu() for lg in logits]))))

    def blocks(self) -> list[list[int]]:
        """The choices grouped so that the budget couples no two groups (module docstring)."""
        return self.tables()[0]

    def tables(self) -> tuple[list[list[int]], list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(blocks, per block its options [M_B, |B|] (the values the fitting points give it), [F, nB]
        each point's option of each block, [F, nB, M] the point with block B at option m, -1 where
        that does not fit or m >= M_B); built once."""
        if self._tables is None:
            pts = [self.point(i) for i in range(len(self))]
            blocks = coupled_blocks(pts, self.feasible.shape[1])
            opts = [sorted({tuple(p[c] for c in B) for p in pts}) for B in blocks]
            M = max(len(o) for o in opts)
            at = torch.tensor([[o.index(tuple(p[c] for c in B)) for B, o in zip(blocks, opts)] for p in pts])
            nb = torch.full((len(pts), len(blocks), M), -1, dtype=torch.long)
            for i, p in enumerate(pts):
                for b, (B, o) in enumerate(zip(blocks, opts)):
                    for m, vals in enumerate(o):
                        q = list(p)
                        for c, v in zip(B, vals):
                            q[c] = v
                        nb[i, b, m] = self.index.get(tuple(q), -1)
            self._tables = (blocks, [torch.tensor(o, dtype=torch.long) for o in opts], at, nb)
        return self._tables

    def block_logits(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """[nB, M] sum over the block's choices of theta_c at each of its options (differentiable;
        -inf past its options)."""
        blocks, opts, _, nb = self.tables()
        rows = []
        for B, o in zip(blocks, opts):
            o = o.to(logits[0].device)
            t = sum(logits[c][o[:, j]] for j, c in enumerate(B))
            rows.append(torch.nn.functional.pad(t, (0, nb.shape[2] - len(t)), value=float("-inf")))
        return torch.stack(rows)

    def conditionals(self, logits: list[torch.Tensor], drawn: list[int]) -> torch.Tensor:
        """[S, nB, M] q_B(m | a_-B) at the draws, detached: the block's softmax over the options with
        which the draw still fits."""
        nb = self.tables()[3][drawn]
        th = self.block_logits([lg.detach().double().cpu() for lg in logits])
        th = th.unsqueeze(0).expand(len(drawn), -1, -1)
        return torch.softmax(th.masked_fill(nb < 0, float("-inf")), -1)

    def block_marginals(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """[nB, M] P(a_B = m), detached."""
        _, _, at, nb = self.tables()
        p = self.log_probs([lg.detach().double().cpu() for lg in logits]).exp()
        return torch.stack([torch.zeros(nb.shape[2], dtype=p.dtype).index_add(0, col, p) for col in at.T])


def coupled_blocks(points: list[tuple], n: int) -> list[list[int]]:
    """Choices merged, pair of groups by pair, while the fitting points' values of two groups are not
    every combination of each group's values (the budget couples them: rows x cols for the DSPs)."""
    blocks = [[c] for c in range(n)]
    values = lambda B: {tuple(p[c] for c in B) for p in points}  # noqa: E731
    merged = True
    while merged:
        merged = False
        for i, j in itertools.combinations(range(len(blocks)), 2):
            if len(values(blocks[i] + blocks[j])) != len(values(blocks[i])) * len(values(blocks[j])):
                blocks[i] = sorted(blocks[i] + blocks[j])
                del blocks[j]
                merged = True
                break
    return blocks


def score_loss(values: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """A term whose gradient is the S-sample score-function estimate of d E[value] with a
    leave-one-out baseline: sum_s (v_s - mean of the others) d log P(a_s) / S; value 0. `values`
    [S] (their gradients are not followed here), `log_p` [S] log P of the samples. The pipeline of
    several engines (one point per engine drawn jointly) still takes its gradient so."""
    S = values.shape[0]
    if S < 2:
        raise ValueError("the leave-one-out baseline needs at least two samples")
    v = values.detach()
    adv = v - (v.sum() - v) / (S - 1)
    t = (adv * log_p).sum() / S
    return t - t.detach()


def local_grads(q: torch.Tensor, f: torch.Tensor, marg: torch.Tensor) -> torch.Tensor:
    """[nB, M] the estimate G of d E_P[f] / d theta_B (module docstring) from S draws: `q` [S, nB, M]
    their conditionals, `f` [S, nB, M] the cost at their neighbours (0 where they do not fit),
    `marg` [nB, M] the block marginals P(a_B = m)."""
    S = q.shape[0]
    fb = (q * f).sum(-1)  # [S, nB] f averaged over block B alone
    beta = (fb.sum(0) - fb) / (S - 1) if S > 1 else torch.zeros_like(fb)
    g = q * (f - beta.unsqueeze(-1)) - marg.unsqueeze(0) * (fb - beta).unsqueeze(-1)
    return g.mean(0)


def expected_term(
    dist: AccelDist,
    logits: list[torch.Tensor],
    known: list[int],
    n: int,
    gen: torch.Generator,
    cost: Callable[[list[int]], torch.Tensor],
) -> tuple[torch.Tensor, list[int]]:
    """(E_P[cost] estimate whose gradient estimates d E_P[cost], the points evaluated beyond `known`:
    the draws first, then their fitting neighbours). `known`: indices of the points whose cost is
    cheap (cached tables), fixed before the draw; `cost(indices)` the [len] costs of points
    (differentiable in whatever else they depend on), called once, with `known` + the evaluated."""
    if len(known) == len(dist):
        return (dist.log_probs(logits).exp() * cost(list(range(len(dist))))).sum(), []
    return term_at(dist, logits, known, dist.sample(logits, n, gen).tolist(), cost)


def term_at(
    dist: AccelDist,
    logits: list[torch.Tensor],
    known: list[int],
    drawn: list[int],
    cost: Callable[[list[int]], torch.Tensor],
) -> tuple[torch.Tensor, list[int]]:
    """`expected_term` at given draws (indices into `feasible`, drawn from P)."""
    nb = dist.tables()[3][drawn]  # [S, nB, M]; each draw is among its own neighbours
    inside = set(known)
    new = [i for i in dict.fromkeys(drawn + nb[nb >= 0].tolist()) if i not in inside]
    v = cost(list(known) + new)
    dev, dt, nk = v.device, v.dtype, len(known)
    kt = torch.tensor(known, dtype=torch.long, device=dev)
    nt = torch.tensor(new, dtype=torch.long, device=dev)
    idx, fits = nb.clamp(min=0).to(dev), (nb >= 0).to(dev, dt)
    q = dist.conditionals(logits, drawn).to(dev, dt)
    # the value: the known points exactly, the rest's mass at their mean cost b, the draws' local
    # expectations only for the difference from it (0 on K); P is a constant here, the logits'
    # gradient is the surrogate's
    pk = dist.log_probs(logits).detach().to(dev, dt)[kt].exp()
    b = (pk * v[:nk]).sum().detach() / pk.sum() if known else v.new_zeros(())
    rest = torch.zeros(len(dist), dtype=dt, device=dev).index_put((nt,), v[nk:] - b)
    value = (pk * v[:nk]).sum() + b * (1.0 - pk.sum()) + (q * rest[idx] * fits).sum(-1).mean()
    c = torch.zeros(len(dist), dtype=dt, device=dev).index_put((kt,), v[:nk]).index_put((nt,), v[nk:])
    g = local_grads(q.double().cpu(), (c[idx] * fits).detach().double().cpu(), dist.block_marginals(logits))
    bl = dist.block_logits(logits)
    surrogate = (g.to(bl.device, bl.dtype) * bl.masked_fill(bl.isinf(), 0.0)).sum()
    return value + surrogate - surrogate.detach(), new
