"""How good is the DANCE surrogate where the search queries it, and what does searching through it give?

The surrogate (codax/search/surrogate.py, `search.cost: surrogate`) is an MLP trained on the cost
oracle -- the search's own cost tables, the exact mapper's per-layer costs on accelerator points --
at one-hot accelerator points; the search's hardware term is its exact expectation over the
accelerator distribution, every fitting point of the default space enumerated, so it is only ever
queried at points of the kind it was trained on.

(a) Held out by point: the surrogate that the first seed's surrogate-mode search fitted and
searched with holds out 20% of its sampled accelerator points with all their samples.
`heldout_median_ape_cycles` / `_energy`: the per-sample median absolute percentage error there.
(b) Ranking: for `--nets` random networks of the digits search space (random op and weight /
activation widths per block), the network's summed cycles on every held-out point from the
surrogate and from the oracle's tables (the exact mapper's mapping of every layer on the point);
per network the Spearman rank correlation across the points (target >= 0.8 in the median).
(c) Search: the default digits search (what `codax search` runs) in surrogate mode and in analytic
mode (the mapper's tables) on the same seeds, epochs reduced to `--epochs` (the warm-up a quarter of
them and the Gumbel temperature decay stretched so the schedule ends where the 24-epoch default's
does); each derived design (ops, widths, accelerator point) is scored exactly by the exact mapper and
cost model (the search summary's exact_* figures) and retrained (`test_acc_quantized`, the
summary's held-out accuracy); wall time per search, surrogate fitting included. The seeds run in
parallel processes, one torch thread each, both modes of a seed in turn.

Writes benchmarks/results/surrogate.json.

    .venv/bin/python benchmarks/surrogate_bench.py [--epochs 4] [--seeds 0 1] [--nets 12]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from unittest import mock

import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from codax.search import cosearch, run_search  # noqa: E402
from codax.search.config import SearchSettings  # noqa: E402
from codax.search.cosearch import CoSearch  # noqa: E402

DEFAULT = SearchSettings()  # the bundled search schedule the reduced one is scaled from


def random_network(cs: CoSearch, rng: random.Random) -> tuple[list[int], list[tuple[int, int]]]:
    """(op per unit, (weight, activation) width index per unit); fixed units at their width."""
    nb = len(cs.bits)
    fixed = cs.arch.bit_mask.argmax(-1).tolist()  # a fixed unit's only allowed width
    ops, bits = [], []
    for u, unit in enumerate(cs.net.units):
        ops.append(rng.randrange(len(unit.ops)))
        bits.append((rng.randrange(nb), rng.randrange(nb)) if unit.searchable else (fixed[u], fixed[u]))
    return ops, bits


def ranking(cs: CoSearch, n_nets: int) -> dict:
    """Per random network: the Spearman correlation across the held-out points of the surrogate's
    and the oracle's network cycles (the sum of its layers' cycles, on both sides)."""
    held = sorted(cs.hw.surrogate.heldout_points)
    lt, nb = cs.lt, len(cs.bits)
    rng = random.Random(1)
    nets = [random_network(cs, rng) for _ in range(n_nets)]
    rows = sorted({int(i) for ops, _ in nets for u, o in enumerate(ops) for i in lt.index[u, o] if i >= 0})
    t0 = time.perf_counter()
    oracle = {c: cs.hw.point_costs(c, rows) for c in held}  # [len(rows), B, 2] per point
    oracle_s = time.perf_counter() - t0
    units = list(range(len(cs.net.units)))
    out = []
    for ops, bits in nets:
        onehot = lambda idx: torch.nn.functional.one_hot(torch.tensor(idx), nb).float()  # noqa: E731
        bw, ba = onehot([w for w, _ in bits]), onehot([a for _, a in bits])
        with torch.no_grad():  # the surrogate's layer cycles on every held-out point, in one pass
            C = cs.hw.surrogate(units, bw, ba, held)[..., 0].sum(-1)  # [V, U, O]
        pred = C[:, units, ops].sum(-1).tolist()
        layer_rows = [
            (rows.index(int(i)), w * nb + a)
            for u, (o, (w, a)) in enumerate(zip(ops, bits))
            for i in lt.index[u, o]
            if i >= 0
        ]
        exact = [sum(float(oracle[c][r, b, 0]) for r, b in layer_rows) for c in held]
        rho = float(spearmanr(pred, exact).statistic)
        ape = statistics.median(abs(p / e - 1.0) for p, e in zip(pred, exact))
        units_desc = [
            f"{u.ops[o].label} w{cs.bits[w]}a{cs.bits[a]}" for u, o, (w, a) in zip(cs.net.units, ops, bits)
        ]
        out.append({"units": units_desc, "spearman": rho, "median_ape_cycles": ape})
    return {"heldout_points": len(held), "oracle_seconds": oracle_s, "networks": out}


def search_config(seed: int, mode: str, epochs: int) -> dict:
    warmup = max(1, round(epochs * DEFAULT.warmup_epochs / DEFAULT.epochs))
    decay = DEFAULT.tau_decay ** (DEFAULT.epochs / epochs)  # the default's final temperature
    return {
        "seed": seed,
        "search": {"epochs": epochs, "warmup_epochs": warmup, "tau_decay": decay, "cost": mode},
    }


class KeptCoSearch(CoSearch):
    """CoSearch that keeps the latest instance: the surrogate a search fitted is the one (a) and (b)
    measure, without fitting it again."""

    latest: CoSearch | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        KeptCoSearch.latest = self


def one_search(seed: int, mode: str, epochs: int) -> tuple[dict, CoSearch]:
    """The search's exactly scored result, and its CoSearch."""
    cfg = search_config(seed, mode, epochs)
    with tempfile.TemporaryDirectory() as out, mock.patch.object(cosearch, "CoSearch", KeptCoSearch):
        t0 = time.perf_counter()
        res = run_search(cfg, out, progress=False)
        wall = time.perf_counter() - t0
    s = res.summary
    d = s["design"]
    row = {
        "wall_seconds": wall,
        "search_seconds": s["search_seconds"],
        "cost_table_seconds": s["cost_table_seconds"],
        "exact_fps": s["exact_fps"],
        "exact_cycles": s["exact_cycles"],
        "exact_energy_uj": s["exact_energy_uj"],
        "macs": s["macs"],
        "test_acc_quantized": s.get("test_acc_quantized"),
        "test_acc_float": s.get("test_acc_float"),
        "relaxed_vs_exact_cycles": s["relaxed_vs_exact_cycles"],
        "design": {
            "units": [f"{u['op']} w{u['weight_bits']}a{u['act_bits']}" for u in d["units"]],
            "accelerator": d["accelerator"],
        },
    }
    if s.get("surrogate"):
        row["surrogate"] = {k: v for k, v in s["surrogate"].items() if not isinstance(v, (list, dict))}
    print(
        f"  seed {seed} {mode:10s} exact FPS {row['exact_fps']:>10,.0f}  "
        f"cycles {row['exact_cycles']:>9,.0f}  energy {row['exact_energy_uj']:.2f} uJ  "
        f"test acc {row['test_acc_quantized']}  wall {wall:.0f} s"
    )
    return row, KeptCoSearch.latest


def seed_searches(seed: int, epochs: int, nets: int) -> tuple[dict, tuple | None]:
    """Both modes' searches of one seed; with `nets`, (the surrogate's report, the ranking) of the
    surrogate-mode search's surrogate."""
    torch.set_num_threads(1)
    rows, evidence = {}, None
    for mode in ("surrogate", "analytic"):
        rows[mode], cs = one_search(seed, mode, epochs)
        if mode == "surrogate" and nets:
            evidence = (cs.surrogate_report, ranking(cs, nets))
        del cs
    return rows, evidence


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--nets", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_all = time.perf_counter()

    print(f"== (c) default digits search, {args.epochs} epochs, surrogate vs analytic, seeds {args.seeds}")
    # one process per seed (one torch thread each): the machine's cores, and both modes of a seed
    # under the same load; the first seed's process also measures (a) and (b) on its surrogate
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(args.seeds), mp_context=ctx) as pool:
        jobs = [
            pool.submit(seed_searches, seed, args.epochs, args.nets if i == 0 else 0)
            for i, seed in enumerate(args.seeds)
        ]
        done = [j.result() for j in jobs]
    searches = {str(seed): rows for seed, (rows, _) in zip(args.seeds, done)}
    rep, rank = done[0][1]
    rhos = [n["spearman"] for n in rank["networks"]]
    print(f"== (a) held-out points, (b) ranking: the seed {args.seeds[0]} search's surrogate")
    print(
        f"  held-out points {rep['heldout_points']} ({rep['heldout_samples']} samples): median APE cycles "
        f"{rep['heldout_median_ape_cycles']:.1%}, energy {rep['heldout_median_ape_energy']:.1%}"
    )
    print(
        f"  Spearman per network over {rank['heldout_points']} held-out points: {[round(r, 3) for r in rhos]}"
    )
    print(f"  median {statistics.median(rhos):.3f} (target >= 0.8), min {min(rhos):.3f}")

    def ratio(key: str) -> list[float]:
        return [r["surrogate"][key] / r["analytic"][key] for r in searches.values()]

    summary = {
        "heldout_median_ape": {
            "cycles": rep["heldout_median_ape_cycles"],
            "energy": rep["heldout_median_ape_energy"],
        },
        "heldout_design_median_ape_cycles": rep["heldout_design_median_ape_cycles"],
        "median_spearman": statistics.median(rhos),
        "min_spearman": min(rhos),
        "spearman_target": 0.8,
        "spearman_target_met": statistics.median(rhos) >= 0.8,
        "networks": len(rhos),
        "search_epochs": args.epochs,
        "search_seeds": args.seeds,
        "surrogate_over_analytic_exact_fps": ratio("exact_fps"),
        "surrogate_over_analytic_energy": ratio("exact_energy_uj"),
        "surrogate_over_analytic_wall": ratio("wall_seconds"),
        "test_acc_quantized": {
            m: [r[m]["test_acc_quantized"] for r in searches.values()] for m in ("surrogate", "analytic")
        },
    }
    result = {
        "summary": summary,
        "surrogate": rep,
        "ranking": rank,
        "search": {"config": search_config(args.seeds[0], "<mode>", args.epochs), "per_seed": searches},
        "torch_threads": 1,
        "total_seconds": time.perf_counter() - t_all,
    }
    for k, v in summary.items():
        print(f"  {k}: {v}")
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "surrogate.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
