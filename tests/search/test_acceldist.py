"""The accelerator distribution: joint over the points that fit the budget; its hardware term is
unbiased for the expected cost of whole points and its gradient, exact when every point's cost is
cached; the summary says which choices the derived design's cost cannot see."""

from __future__ import annotations

import torch

from codax.search.acceldist import expected_term
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


def test_expected_term_is_unbiased_with_a_partial_cache(tiny):
    """Mean value and mean logit gradient over draws equal E_P[C] and its gradient (enumeration),
    within 4.5 standard errors, with a third of the points known (cached) and the rest drawn."""
    cs = CoSearch(load_config(tiny))
    dist = cs.accel_dist
    C = _interacting_cost(cs)
    gen = torch.Generator().manual_seed(3)
    logits = [(torch.randn(k, generator=gen) * 0.7).double().requires_grad_(True) for k in cs.space.sizes]
    exact = (dist.log_probs(logits).exp() * C).sum()
    exact.backward()
    g_exact = torch.cat([lg.grad.clone() for lg in logits])
    known = list(range(0, len(dist), 3))
    vals, grads = [], []
    for _ in range(4000):
        for lg in logits:
            lg.grad = None
        term, drawn = expected_term(dist, logits, known, 2, gen, lambda ix: C[ix])
        assert len(drawn) == 2
        term.backward()
        vals.append(float(term.detach()))
        grads.append(torch.cat([lg.grad.clone() for lg in logits]))
    v, g = torch.tensor(vals, dtype=torch.float64), torch.stack(grads)
    n = len(vals)
    assert abs(float(v.mean()) - float(exact)) <= 4.5 * float(v.std()) / n**0.5
    se = g.std(0) / n**0.5
    assert g_exact.abs().max() > 10 * se.max()  # resolved: the test has power
    assert ((g.mean(0) - g_exact).abs() <= 4.5 * se + 1e-9).all(), (g.mean(0), g_exact, se)


def test_expected_term_is_exact_when_every_point_is_known(tiny):
    cs = CoSearch(load_config(tiny))
    dist = cs.accel_dist
    C = _interacting_cost(cs)
    logits = [torch.linspace(-1.0, 1.0, k, dtype=torch.float64).requires_grad_(True) for k in cs.space.sizes]
    state = torch.Generator().manual_seed(0)
    term, drawn = expected_term(dist, logits, list(range(len(dist))), 2, state, lambda ix: C[ix])
    assert drawn == []
    p = dist.log_probs(logits).exp()
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
    assert len(est.period_cycles) == 2  # the drawn points


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
