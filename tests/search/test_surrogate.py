"""DANCE mode: the learned surrogate is accurate on held-out points and the search lowers the
oracle's cost."""

from __future__ import annotations

import random

from codax.search.config import load_config
from codax.search.cosearch import CoSearch
from codax.search.derive import Design


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
