"""The accelerator distribution: joint over the points that fit the budget; its hardware term is
unbiased for the expected cost of whole points and its gradient (local expectations over the blocks
of choices the budget couples), exact when every point's cost is cached; the summary says which
choices the derived design's cost cannot see."""

from __future__ import annotations

import itertools
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codax.search.acceldist import AccelDist, coupled_blocks, expected_term, term_at
from codax.search.config import load_config
from codax.search.cosearch import CoSearch
from codax.search.visibility import choice_visibility


def _interacting_cost(cs) -> torch.Tensor:
    """[F] a cost with interactions: cycles ~ work / (rows x cols), slower output-stationary unless
    the buffers are large, plus a small per-point term."""
    f = cs.accel_dist.feasible
    opt = lambda name: torch.tensor(cs.space.options[cs.space.names.index(name)], dtype=torch.float64)  # noqa: E731
    col = lambda name: f[:, cs.space.names.index(name)]  # noqa: E731
    pes = opt("rows")[col("rows")] * opt("cols")[col("cols")]
    big = (opt("buf_I")[col("buf_I")] > opt("buf_I").min()).double()
    os_ = (col("dataflow") == 1).double()
    return 1000.0 / pes * (1.0 + 0.5 * os_ * (1.0 - big)) + 0.01 * torch.arange(len(f), dtype=torch.float64)


def test_draws_fit_the_budget_and_the_mode_is_the_projection(tiny):
    tiny["budget"] = {"dsp": 150.0}  # rules out the 16 x 16 arrays
    cs = CoSearch(load_config(tiny))
    dist = cs.accel_dist
    assert 0 < len(dist) < len(cs.space.all_configs())
    gen = torch.Generator().manual_seed(0)
    logits = [torch.randn(k, generator=gen) for k in cs.space.sizes]
    drawn = dist.sample(logits, 500, gen)
    assert all(cs.hw.fits(dist.point(int(i))) for i in drawn.unique())
    torch.testing.assert_close(dist.log_probs(logits).exp().sum(), torch.tensor(1.0))
    probs = [torch.softmax(lg, 0) for lg in logits]
    assert dist.mode(logits) == cs.hw.project(probs)


def _exact(dist: AccelDist, logits: list[torch.Tensor], C: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(E_P[C], its gradient in the logits) by enumeration of the fitting points."""
    lg = [t.detach().clone().requires_grad_(True) for t in logits]
    e = (dist.log_probs(lg).exp() * C).sum()
    e.backward()
    return float(e.detach()), torch.cat([t.grad for t in lg])


def test_the_budget_couples_rows_and_cols_only(tiny):
    tiny["budget"] = {"dsp": 150.0}  # rules out the 16 x 16 arrays: rows and cols no longer independent
    cs = CoSearch(load_config(tiny))
    names = cs.space.names
    blocks = [[names[c] for c in B] for B in cs.accel_dist.blocks()]
    assert blocks == [["rows", "cols"]] + [[n] for n in names if n not in ("rows", "cols")]
    # a parity constraint: any two choices take every combination, the three together do not
    parity = [p for p in itertools.product(range(2), repeat=3) if sum(p) % 2 == 0]
    assert coupled_blocks(parity, 3) == [[0], [1], [2]]


@pytest.mark.parametrize("every", [0, 3])
def test_expected_term_is_unbiased(tiny, every):
    """Mean value and mean logit gradient over draws equal E_P[C] and its gradient (enumeration),
    within 4.5 standard errors, from an empty cache and with a third of the points known, on a space
    the budget restricts (rows x cols coupled)."""
    tiny["budget"] = {"dsp": 150.0}
    cs = CoSearch(load_config(tiny))
    dist = cs.accel_dist
    C = _interacting_cost(cs)
    gen = torch.Generator().manual_seed(3)
    logits = [(torch.randn(k, generator=gen) * 0.7).double().requires_grad_(True) for k in cs.space.sizes]
    exact, g_exact = _exact(dist, logits, C)
    known = list(range(0, len(dist), every)) if every else []
    vals, grads = [], []
    for _ in range(1500):
        for lg in logits:
            lg.grad = None
        term, evaluated = expected_term(dist, logits, known, 2, gen, lambda ix: C[ix])
        assert evaluated and not set(evaluated) & set(known)  # the draws' neighbours beyond the cache
        term.backward()
        vals.append(float(term.detach()))
        grads.append(torch.cat([lg.grad.clone() for lg in logits]))
    v, g = torch.tensor(vals, dtype=torch.float64), torch.stack(grads)
    n = len(vals)
    assert abs(float(v.mean()) - exact) <= 4.5 * float(v.std()) / n**0.5
    se = g.std(0) / n**0.5
    assert g_exact.abs().max() > 10 * se.max()  # resolved: the test has power
    assert ((g.mean(0) - g_exact).abs() <= 4.5 * se + 1e-9).all(), (g.mean(0), g_exact, se)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3), min_size=2, max_size=3),
    keep=st.lists(st.booleans(), min_size=27, max_size=27),
    seed=st.integers(0, 2**16),
    draws=st.integers(1, 2),
    cached=st.floats(0.0, 0.8),
    merge=st.booleans(),
)
def test_the_estimate_averaged_over_every_draw_is_exact(sizes, keep, seed, draws, cached, merge):
    """Any restriction of a small product space, any logits, costs and cache: the estimate's value
    and logit gradient, weighted over every tuple of draws by its probability, are E_P[C] and its
    gradient (enumeration) to rounding; with the coupled choices in blocks, and with every choice a
    block of its own (the budget then couples blocks: the marginals' term carries it)."""
    points = [p for p, k in zip(itertools.product(*[range(k) for k in sizes]), keep) if k]
    if not points:
        points = [tuple(0 for _ in sizes)]
    dist = AccelDist(torch.tensor(points))
    if not merge:
        with mock.patch("codax.search.acceldist.coupled_blocks", lambda pts, n: [[c] for c in range(n)]):
            dist.tables()
    gen = torch.Generator().manual_seed(seed)
    logits = [(torch.randn(k, generator=gen, dtype=torch.float64) * 1.5).requires_grad_(True) for k in sizes]
    C = torch.rand(len(points), generator=gen, dtype=torch.float64) * 10.0 + 1.0
    known = [i for i in range(len(points)) if float(torch.rand((), generator=gen)) < cached]
    exact, g_exact = _exact(dist, logits, C)
    P = dist.log_probs(logits).detach().exp()
    value, grad = 0.0, torch.zeros_like(g_exact)
    for tup in itertools.product(range(len(points)), repeat=draws):
        for lg in logits:
            lg.grad = None
        term, _ = term_at(dist, logits, known, list(tup), lambda ix: C[ix])
        term.backward()
        w = float(P[list(tup)].prod())
        value += w * float(term.detach())
        grad += w * torch.cat([lg.grad for lg in logits])
    assert value == pytest.approx(exact, rel=1e-9)
    torch.testing.assert_close(grad, g_exact, rtol=0.0, atol=1e-9 * exact)


def test_expected_term_is_exact_when_every_point_is_known(tiny):
    cs = CoSearch(load_config(tiny))
    dist = cs.accel_dist
    C = _interacting_cost(cs)
    logits = [torch.linspace(-1.0, 1.0, k, dtype=torch.float64).requires_grad_(True) for k in cs.space.sizes]
    state = torch.Generator().manual_seed(0)
    term, drawn = expected_term(dist, logits, list(range(len(dist))), 2, state, lambda ix: C[ix])
    assert drawn == []
    p = dist.log_probs(logits).exp().detach()
    torch.testing.assert_close(term, (p * C).sum())
    # the gradient: P(a_c = o) (E[C | a_c = o] - E[C]) for every choice and option
    term.backward()
    mean = float((p * C).sum())
    for c, lg in enumerate(logits):
        col = dist.feasible[:, c]
        for o in range(lg.shape[0]):
            m = col == o
            want = float(p[m].sum()) * (float((p[m] * C[m]).sum() / p[m].sum()) - mean)
            assert (
                float(lg.grad[o]) == torch.tensor(want).item() or abs(float(lg.grad[o]) - want) <= 1e-9 * mean
            )


def test_small_spaces_take_the_exact_expectation_and_big_ones_draw(tiny):
    tiny["search"]["accel_exact"] = 1000
    cs = CoSearch(load_config(tiny))
    a = cs.arch
    with torch.no_grad():
        op_w, bw, ba = a.op_probs(), a.bit_probs("w"), a.bit_probs("a")
    _, est = cs.hw_term(op_w, bw, ba)
    assert len(est.period_cycles) == len(cs.accel_dist)  # every point, nothing drawn
    tiny["search"]["accel_exact"] = 0
    cs = CoSearch(load_config(tiny))
    _, est = cs.hw_term(op_w, bw, ba)
    # the points evaluated: the two draws and their neighbours (all of them cached from now on)
    assert 2 < len(est.period_cycles) == len(cs.known_points) < len(cs.accel_dist)


def test_one_engine_searches_with_one_draw(tiny):
    """`search.accel_samples: 1` with one engine: the term costs that draw and its fitting neighbours
    and the accelerator logits get a gradient (one draw's local expectations are unbiased alone,
    test_the_estimate_averaged_over_every_draw_is_exact with draws=1)."""
    tiny["search"]["accel_exact"] = 0
    tiny["search"]["accel_samples"] = 1
    cs = CoSearch(load_config(tiny))
    a, dist = cs.arch, cs.accel_dist
    with torch.no_grad():
        op_w, bw, ba = a.op_probs(), a.bit_probs("w"), a.bit_probs("a")
    logits = [a.accel_logits(0)]
    replay = torch.Generator().manual_seed(0)
    replay.set_state(cs.sampler.gen.get_state())
    drawn = int(dist.sample(logits[0], 1, replay)[0])  # the draw hw_term is about to make
    nb = dist.tables()[3][drawn]
    neighbours = sorted(set(nb[nb >= 0].tolist()))
    term, est = cs.hw_term(op_w, bw, ba)
    assert drawn in neighbours and cs.known_points == neighbours
    assert len(est.period_cycles) == len(neighbours) < len(dist)
    term.backward()
    g = torch.cat([p.grad.flatten() for p in logits[0]])  # every choice's logits reached
    assert torch.isfinite(g).all() and g.abs().max() > 0


def test_visibility_names_the_choices_the_cost_sees(tiny):
    cs = CoSearch(load_config(tiny))
    d = cs.design()
    rows = {r["choice"]: r for r in choice_visibility(cs, d)}
    assert set(rows) == set(cs.space.names)
    # more PEs: fewer cycles for this network; the picked option is the design's
    assert "cycles" in rows["rows"]["sees"]
    assert rows["rows"]["picked"] == str(cs.space.value(d.accel[0], "rows"))
    for r in rows.values():
        costs = [c for c in r["costs"].values() if c is not None]
        hi, lo = max(c["cycles"] for c in costs), min(c["cycles"] for c in costs)
        same = hi - lo <= 1e-6 * hi
        assert ("cycles" not in r["sees"]) == same
