"""DANCE mode: the learned surrogate is accurate on held-out points, the hardware term is its exact
expectation over the accelerator distribution at the points it was trained on, and the search
lowers the oracle's cost."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from codax.ir import DIMS
from codax.search.config import load_config
from codax.search.cosearch import CoSearch
from codax.search.derive import Design


@pytest.fixture(scope="module")
def surrogate_search():
    """A tiny surrogate-mode search (the fastest-template oracle) with random op, bit and accelerator
    logits."""
    import copy

    from tests.search.conftest import TINY

    cfg = copy.deepcopy(TINY)
    cfg["search"].update(cost="surrogate", objective="latency")
    cs = CoSearch(load_config(cfg))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in (cs.arch.alpha, cs.arch.beta_w, cs.arch.beta_a, *cs.arch.accel):
            p.copy_(torch.randn(p.shape, generator=g))
    return cs


NUMERIC_CHOICES = ("rows", "cols", "buf_W", "buf_I", "buf_O")


def _fitting_points(cs: CoSearch) -> tuple[list[tuple], torch.Tensor]:
    """(every point of the space that fits the budget, its P): the per-choice softmaxes' product
    restricted to those points, from the logits directly."""
    logits = [lg.detach().double() for lg in cs.arch.accel_logits(0)]
    points = [c for c in itertools.product(*[range(k) for k in cs.space.sizes]) if cs.hw.fits(c)]
    w = torch.tensor([sum(float(logits[i][o]) for i, o in enumerate(c)) for c in points])
    return points, torch.softmax(w, 0)


def test_surrogate_layer_costs_are_the_mlp_at_points(surrogate_search):
    """The per-layer costs the search reads are the MLP fed a one-hot accelerator point (features
    built here from the layers' own attributes and the option values), all points in one pass."""
    cs = surrogate_search
    a, space, lt = cs.arch, cs.space, cs.lt
    points, _ = _fitting_points(cs)
    pw, pa = a.bit_probs("w").detach(), a.bit_probs("a").detach()
    units = list(range(len(cs.net.units)))
    with torch.no_grad():
        got = cs.hw.surrogate(units, pw, pa, points)  # [V, U, O, S, 2]
    bits = torch.tensor([float(b) for b in cs.bits])
    for v in (0, len(points) // 2, len(points) - 1):
        c = points[v]
        onehot = [float(i == o) for o, k in zip(c, space.sizes) for i in range(k)]
        logs = [math.log2(space.options[i][o]) for i, o in enumerate(c) if space.names[i] in NUMERIC_CHOICES]
        for u in units:
            width = [float((pw[u] * bits).sum()) / 8, float((pa[u] * bits).sum()) / 8]
            for o in range(lt.index.shape[1]):
                for s in range(lt.index.shape[2]):
                    i = int(lt.index[u, o, s])
                    if i < 0:
                        assert got[v, u, o, s].abs().sum() == 0  # no such sub-layer
                        continue
                    layer = lt.layers[i]
                    f = [math.log2(getattr(layer, d)) for d in DIMS] + [float(layer.stride[0])]
                    with torch.no_grad():
                        want = cs.surrogate_model(torch.tensor(f + width + onehot + logs))
                    torch.testing.assert_close(got[v, u, o, s], want, rtol=1e-5, atol=0.0)


def test_surrogate_term_is_its_exact_expectation(surrogate_search):
    """The hardware term is E_P[f(a)] over every fitting point, f(a) the surrogate's cost of the
    mixed network on point a alone, and its gradient w.r.t. each accelerator logit is
    P(a_c = o) (E[f | a_c = o] - E[f]): the descent moves each choice the way the surrogate's
    conditional cost says."""
    cs = surrogate_search
    a = cs.arch
    points, P = _fitting_points(cs)
    assert len(points) == len(cs.accel_dist) >= 8
    op, pw, pa = a.op_probs().detach(), a.bit_probs("w").detach(), a.bit_probs("a").detach()
    cost = []
    for c in points:  # one point at a time: no enumeration, no distribution
        with torch.no_grad():
            est = cs.hw(op, pw, pa, a.map_probs(), [(c,)])
        cost.append(float(cs.hw_value(est)[0] + est.penalty[0]))
    cost = torch.tensor(cost, dtype=torch.float64)
    a.zero_grad()
    term, est = cs.hw_term(a.op_probs(), a.bit_probs("w"), a.bit_probs("a"))
    assert len(est.period_cycles) == len(points)  # every fitting point, none drawn
    mean = (P * cost).sum()
    assert float(term.detach()) == pytest.approx(float(mean), rel=1e-5)
    term.backward()
    checked = 0
    for c, lg in enumerate(a.accel_logits(0)):
        for o in range(lg.shape[0]):
            m = torch.tensor([pt[c] == o for pt in points])
            p_o = P[m].sum()
            change = (P[m] * cost[m]).sum() / p_o - mean if p_o > 0 else torch.tensor(0.0)
            assert float(lg.grad[o]) == pytest.approx(float(p_o * change), rel=1e-3, abs=1e-7)
            if abs(float(change)) > 1e-4 * float(mean):
                assert (float(lg.grad[o]) > 0) == (float(change) > 0)
                checked += 1
    assert checked >= 4  # the surrogate sees several of the choices


def test_surrogate_term_samples_beyond_exact_points(surrogate_search, monkeypatch):
    """A space of more fitting points than the surrogate enumerates: the term is the known points
    exactly plus points drawn from P (an unbiased estimate: its mean over draws is the exact
    expectation)."""
    cs = surrogate_search
    a = cs.arch
    with torch.no_grad():
        exact = float(cs.hw_term(a.op_probs(), a.bit_probs("w"), a.bit_probs("a"))[0])
    monkeypatch.setattr(cs.hw.surrogate, "exact_points", 4)
    cs.known_points = []
    draws = []
    with torch.no_grad():
        for _ in range(300):
            draws.append(float(cs.hw_term(a.op_probs(), a.bit_probs("w"), a.bit_probs("a"))[0]))
    assert len(cs.known_points) > 4  # points were drawn; only the first 4 of them enter exactly
    assert sum(draws) / len(draws) == pytest.approx(exact, rel=0.03)
    cs.known_points = []


def test_surrogate_search_lowers_oracle_cost(tiny, tmp_path):
    """DANCE mode with the search's own oracle (the exact mapper's tables): the surrogate is
    trained on samples spread over the accelerator space, its error on points it never saw is in
    the search summary, and the searched design's exact cost is below random designs'."""
    import copy

    from codax.search import run_search

    tiny["search"].update(
        cost="surrogate", relaxed_cost="mapper", objective="latency", warmup_epochs=0, epochs=3, a_lr=0.05
    )
    tiny["search"].update(penalty=1.0, derive_rank="supernet")
    tiny["search"]["lambda"] = 3.0
    res = run_search(copy.deepcopy(tiny), tmp_path, progress=False, finalize=False)
    rep = res.summary["surrogate"]
    assert (
        rep["samples"] >= 800
        and rep["heldout_points"] >= 5
        and rep["train_points"] >= 4 * rep["heldout_points"]
    )
    assert rep["heldout_median_ape_cycles"] < 0.25, rep
    assert rep["heldout_design_median_ape_cycles"] < 0.5, rep
    # the oracle's cost (exact mapper and model) of random designs: the starting point
    tiny["search"]["cost"] = "analytic"
    cs = CoSearch(load_config(tiny))
    rng = random.Random(0)
    before = []
    for _ in range(4):
        ops = [rng.randrange(len(u.ops)) for u in cs.net.units]
        bits = [(8, 8)] * len(ops)
        cfg = tuple(rng.randrange(k) for k in cs.space.sizes)
        before.append(cs.exact(Design(ops, bits, [cfg]))["exact_cycles"])
    assert res.summary["exact_cycles"] < sum(before) / len(before)


def toy_oracle(samples):
    """A pluggable oracle (how a ZigZag bridge plugs in): MACs / PEs and MACs x bits."""
    out = []
    for s in samples:
        la, a = s["layer"], s["accel"]
        out.append([la.macs / (a["rows"] * a["cols"]) + 10.0, la.macs * la.precision.weight * 0.1 + 1.0])
    return out


def test_callable_and_csv_oracles(tiny, tmp_path):
    tiny["search"]["cost"] = "surrogate"
    tiny["surrogate"]["oracle"] = "tests.search.test_surrogate:toy_oracle"
    cs = CoSearch(load_config(tiny))
    assert cs.surrogate_report["heldout_mape_cycles"] < 0.5 and cs.surrogate_report["heldout_points"] >= 1
    # the same kind of samples as a CSV table
    rows = [
        "N,G,K,C,P,Q,R,S,stride,w_bits,a_bits,rows,cols,buf_W,buf_I,buf_O,dataflow,double_buffer,cycles,energy_pj"
    ]
    rng = random.Random(1)
    for _ in range(300):
        la = rng.choice(cs.lt.layers)
        r, c = rng.choice([8, 16]), rng.choice([8, 16])
        dims = ",".join(str(getattr(la, d)) for d in "NGKCPQRS")
        rows.append(
            f"{dims},{la.stride[0]},8,8,{r},{c},16,16,8,weight-stationary,true,"
            f"{la.macs / (r * c) + 10},{la.macs}"
        )
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    tiny["surrogate"]["oracle"] = f"csv:{tmp_path / 't.csv'}"
    cs2 = CoSearch(load_config(tiny))
    assert cs2.surrogate_report["samples"] == 300
