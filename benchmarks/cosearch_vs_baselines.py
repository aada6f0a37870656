"""Co-search vs a two-stage flow, a fixed accelerator, and sample-based co-exploration, on digits.

At equal search budget (same epochs and steps for every gradient search, and the same derivation:
each method's argmax designs of its last epochs trained with the same recipe and seeds and picked
by the one-standard-error rule, see baselines.derive_by_training and CoSearch.derive):
  (a) two-stage: network searched under a FLOPs proxy (parsimony in its derivation: fewer MACs),
      then the best accelerator for it (every feasible point of the same accelerator space, exact
      evaluation of the winner);
  (b) fixed accelerator: the network searched for the library design zc706-int8 (parsimony: FPS
      on it), evaluated on it;
  (c) co-search: network + bitwidths + accelerator together, lambda adapted to a target FPS equal to
      the best baseline FPS, widths of the derived design fitted to the target (refine.py); its
      search time includes that derivation.
Every derived network is retrained from scratch with the same recipe and the same seeds (the
initialisation included), fake-quantised at the widths its accelerator runs; accuracy is the mean
test accuracy of --folds-fold cross-validation over the whole data set with --seeds retrainings per
fold (every image tested once per seed; see final_accuracy), FPS from the exact mapper and cost
model. Retrainings are paired by (fold, seed) across methods: the co-search's accuracy minus each
baseline's is reported as the mean of the paired differences with its standard error over runs,
and over seeds and images (see paired_difference). The co-search's derivation ranks its fitted
candidates by `val` accuracy after training on `train` with the same recipe (--retrain epochs; see
CoSearch.derive), inside its search time; no choice of any search looks at the test split.
A reference design, the fixed baseline's network on the co-search's accelerator, shows whether the
co-search's space holds a design that dominates both baselines (its accuracy is the fixed row's).

Search efficiency: sample-based co-exploration -- random sampling and regularised evolution of
(network, bits, accelerator) designs, each evaluated exactly and, when it meets the FPS target,
briefly trained -- runs until a sample reaches the co-search result's reward (brief-training
validation accuracy, mean over --brief-seeds trainings, with exact FPS >= the target; the same
brief training for both) or its time
budget (--sample-budget x the co-search time) runs out, --sampler-seeds times per sampler (seeds
0, 1, ...: one run's time to reach is mostly its luck). Each run's ratio is its time to reach over
the co-search time (a lower bound, its budget's, when it does not reach); the printed figure per
sampler is the median over its runs (see median_ratio).

    .venv/bin/python benchmarks/cosearch_vs_baselines.py [--epochs 16] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from codax.hw import load_accelerator  # noqa: E402
from codax.search.baselines import (  # noqa: E402
    best_accelerator_for,
    brief_reward,
    coexploration,
    derive_by_training,
)
from codax.search.config import load_config  # noqa: E402
from codax.search.cosearch import CoSearch  # noqa: E402
from codax.search.derive import Design, build_graph, exact_cost  # noqa: E402
from codax.search.finalize import train_from_scratch  # noqa: E402

ZC706 = {
    "rows": 16,
    "cols": 32,
    "buffer_kb": {"W": 128, "I": 128, "O": 64},
    "dataflow": "weight-stationary",
    "double_buffer": True,
}


def search(cfg: dict) -> tuple[CoSearch, float]:
    cs = CoSearch(load_config(cfg))
    t0 = time.perf_counter()
    for _ in range(cs.cfg.search.epochs):
        cs.run_epoch(progress=False)
    return cs, time.perf_counter() - t0


def cv_folds(data, k: int, seed: int = 0) -> list[SimpleNamespace]:
    """k folds over every image of the data set (train, val and test together), each a split with
    4/5 of the images to train on and the rest to test on: every image is tested once. The images
    are already normalised (by the training split's statistics), so the folds share one scale."""
    x = torch.cat([data.train[0], data.val[0], data.test[0]])
    y = torch.cat([data.train[1], data.val[1], data.test[1]])
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    parts = perm.chunk(k)
    out = []
    for i in range(k):
        tr = torch.cat([p for j, p in enumerate(parts) if j != i])
        out.append(SimpleNamespace(train=(x[tr], y[tr]), val=(x[:0], y[:0]), test=(x[parts[i]], y[parts[i]])))
    return out


def final_accuracy(
    cs: CoSearch, d, epochs: int, seeds: int, folds: int
) -> tuple[float, float, list[float], torch.Tensor]:
    """Test accuracy by k-fold cross-validation over the whole data set: for each of `folds` folds
    and each of `seeds` seeds (the same for every method), the design's network is retrained from
    scratch on the fold's training images, fake-quantised at its widths, and tested on the fold's
    held-out images. One split's 360 test images cannot tell these networks apart (one image is
    0.28 points, and the ordering of designs flips between `val` and `test`); the folds test every
    one of the 1,797 images. Returns the mean and its standard error over the folds x seeds runs,
    each run's accuracy, and [seeds, images]: whether each image was classified correctly."""
    splits = cv_folds(cs.data, folds)
    accs, correct = [], torch.zeros(seeds, sum(len(f.test[1]) for f in splits))
    at = 0
    for f in splits:
        x, y = f.test
        for s in range(seeds):
            m = train_from_scratch(cs.net, d, f, epochs, 0.05, 64, True, cs.seed + 1000 + s)
            m.quantize = True
            with torch.no_grad():
                ok = m.eval()(x).argmax(1) == y
            correct[s, at : at + len(y)] = ok.double()
            accs.append(float(ok.double().mean()))
        at += len(y)
    mean = sum(accs) / len(accs)
    var = sum((a - mean) ** 2 for a in accs) / max(1, len(accs) - 1)
    return mean, (var / len(accs)) ** 0.5, accs, correct


def paired_difference(a: list[float], b: list[float], ca: torch.Tensor, cb: torch.Tensor) -> dict:
    """Mean and standard error of a[i] - b[i] (the same fold and retraining seed i for both). `se`
    counts the retraining noise only (runs); `se_seeds_and_images` also the sampling of the test
    images: both methods are scored on the same images, and a difference that rests on a few images
    would change on others, which the run-paired error does not see. It is the two-way random-effects
    estimate from the per-seed, per-image differences D [seeds S, images N] (ca, cb: correct):
    Var(mean D) = var(row means) / S + var(column means) / N - residual variance / (S N)."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    se = (sum((x - mean) ** 2 for x in d) / max(1, n - 1) / n) ** 0.5
    D = ca.double() - cb.double()
    S, N = D.shape
    rows, cols = D.mean(1, keepdim=True), D.mean(0, keepdim=True)
    resid = float(((D - rows - cols + D.mean()) ** 2).sum()) / max(1, (S - 1) * (N - 1))
    var_rows = float(rows.var()) if S > 1 else 0.0
    var = var_rows / S + float(cols.var()) / N - resid / (S * N)
    return {
        "mean": mean,
        "se": se,
        "se_seeds_and_images": max(0.0, var) ** 0.5,
        "n": n,
        "test_images": N,
        "wins": sum(x > 0 for x in d),
        "ties": sum(x == 0 for x in d),
        "losses": sum(x < 0 for x in d),
    }


def median_ratio(runs: list[dict]) -> dict:
    """Median time-to-reach ratio over sampler runs (one run's time is mostly its luck). A run that
    did not reach counts as slower than every run that did; when the median falls on such a run the
    median is a lower bound (the budget's ratio)."""
    order = sorted(runs, key=lambda r: (r["ratio_is_lower_bound"], r["ratio"]))
    lo, hi = order[(len(order) - 1) // 2], order[len(order) // 2]  # the same run when the count is odd
    return {"ratio": (lo["ratio"] + hi["ratio"]) / 2, "ratio_is_lower_bound": hi["ratio_is_lower_bound"]}


def dominance(acc: float, fps: float, rows: dict) -> dict:
    """Per baseline row: whether (acc, fps) is at least as good in both."""
    return {k: bool(acc >= r["acc"] and fps >= r["fps"]) for k, r in rows.items() if k != "co-search (codax)"}


def widths(cs: CoSearch, d) -> list[str]:
    """w/a widths of the units that have layers (skip units have none)."""
    return [
        f"{u.name}:{w}/{a}" for u, o, (w, a) in zip(cs.net.units, d.ops, d.bits) if u.ops[o].kind != "skip"
    ]


def row(cs: CoSearch, d, cost: dict, search_s: float, accel, args) -> dict:
    acc, se, accs, correct = final_accuracy(cs, d, args.retrain, args.seeds, args.folds)
    return {
        "_correct": correct,
        "acc": acc,
        "acc_se": se,
        "accs": accs,
        **cost,
        "search_s": search_s,
        "accel": accel,
        "ops": [u.ops[o].label for u, o in zip(cs.net.units, d.ops)],
        "widths": widths(cs, d),
    }


def exact_row(cs: CoSearch, d) -> dict:
    ex = cs.exact(d)
    return {
        "fps": ex["exact_fps"],
        "energy_uj": ex["exact_energy_uj"],
        "dsp": ex["exact_dsp"],
        "bram18": ex["exact_bram18"],
        "mapper": ex["mapper"],
    }


def on_library(cs: CoSearch, d, name: str) -> dict:
    """Exact cost of the design's network on a library accelerator."""
    accel = load_accelerator(name)
    graph, _ = build_graph(cs.net, d)
    maps, cost, used = exact_cost(graph, accel, {}, "latency", cs.lt, cs.space, d.accel)
    return {
        "fps": cost.fps,
        "energy_uj": cost.energy_pj / 1e6,
        "dsp": cost.resources.dsp,
        "bram18": cost.resources.bram18,
        "mapper": used,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--retrain", type=int, default=20)
    ap.add_argument("--brief", type=int, default=4, help="epochs of brief training per sample")
    ap.add_argument("--brief-seeds", type=int, default=3, help="brief trainings averaged per reward")
    ap.add_argument(
        "--sample-budget", type=float, default=4.0, help="time of each sampler run, x co-search time"
    )
    ap.add_argument("--sampler-seeds", type=int, default=3, help="runs of each sampler (seeds 0, 1, ...)")
    ap.add_argument("--target", type=float, default=1.0, help="co-search target FPS, x best baseline FPS")
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds of the final accuracy")
    ap.add_argument("--seeds", type=int, default=4, help="retrainings per fold (the same seeds for all)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.retrain, args.sample_budget, args.seeds, args.folds = 6, 6, 1.0, 1, 3
        args.sampler_seeds = 1
    torch.set_num_threads(1)
    base = {  # every method derives its result from the same candidates' training (see derive_by_training)
        "search": {
            "epochs": args.epochs,
            "warmup_epochs": max(1, args.epochs // 4),
            "objective": "latency",
            "derive_train_epochs": args.retrain,
        }
    }
    rows, t_all = {}, time.perf_counter()

    # (a) two-stage: FLOPs-proxy network search, then the best accelerator for that network
    cfg_a = copy.deepcopy(base)
    cfg_a["search"]["objective"] = "flops"
    cs_a, t_a = search(cfg_a)
    t1 = time.perf_counter()
    # stage one knows no accelerator: its parsimony is the FLOPs proxy it searched under, counted on
    # the graph (the exact mapper would cost seconds per candidate for a MAC count)
    n_a, derive_a = derive_by_training(cs_a, lambda d: -build_graph(cs_a.net, d)[0].macs)
    d_a = best_accelerator_for(cs_a, n_a)
    t_a += time.perf_counter() - t1
    rows["two-stage (FLOPs, then accelerator)"] = row(
        cs_a, d_a, exact_row(cs_a, d_a), t_a, cs_a.space.describe(d_a.accel[0]), args
    ) | {"derivation": derive_a}

    # (b) fixed accelerator zc706-int8: network searched for it, evaluated on the library design
    cfg_b = copy.deepcopy(base)
    cfg_b["accelerator"] = {"fixed": ZC706}
    cs_b, t_b = search(cfg_b)
    t1 = time.perf_counter()
    d_b, derive_b = derive_by_training(cs_b, lambda d: cs_b.exact(d)["exact_fps"])
    t_b += time.perf_counter() - t1
    rows["fixed accelerator (zc706-int8)"] = row(
        cs_b, d_b, on_library(cs_b, d_b, "zc706-int8"), t_b, "zc706-int8", args
    ) | {"derivation": derive_b}

    # (c) co-search, targeting the best baseline FPS; the derivation is part of its search time
    target = max(r["fps"] for r in rows.values()) * args.target
    cfg_c = copy.deepcopy(base)
    cfg_c["search"]["target_fps"] = target
    cs_c, t_c = search(cfg_c)
    t1 = time.perf_counter()
    d_c, fit = cs_c.derive()
    t_c += time.perf_counter() - t1
    co = row(cs_c, d_c, exact_row(cs_c, d_c), t_c, cs_c.space.describe(d_c.accel[0]), args)
    co["relaxed_vs_exact_cycles"] = cs_c.exact(d_c)["relaxed_vs_exact_cycles"]
    co["target_fps"] = target
    co["target_fit"] = fit
    rows["co-search (codax)"] = co
    dominates = dominance(co["acc"], co["fps"], rows)
    # is there a dominating design in the co-search's space at all? The fixed baseline's network (its
    # accuracy is that row's: same network, widths and retraining seeds) on the co-search's accelerator
    fixed_net = rows["fixed accelerator (zc706-int8)"]
    ex = cs_c.exact(Design(d_b.ops, d_b.bits, list(d_c.accel), d_c.maps))
    reference = {
        "what": "the fixed baseline's network and widths on the co-search's accelerator",
        "fps": ex["exact_fps"],
        "energy_uj": ex["exact_energy_uj"],
        "acc": fixed_net["acc"],
        "dominates": dominance(fixed_net["acc"], ex["exact_fps"], rows),
    }
    paired = {
        k: paired_difference(co["accs"], r["accs"], co["_correct"], r["_correct"])
        for k, r in rows.items()
        if k != "co-search (codax)"
    }

    # search efficiency vs sample-based co-exploration, same brief training and reward for both
    brief_c = brief_reward(cs_c, d_c, args.brief, args.brief_seeds)
    fps_req = min(target, co["fps"])  # the FPS the co-search result holds to
    samplers = {}
    for strategy in ("random", "evolution"):
        runs = []
        for seed in range(args.sampler_seeds):
            r = coexploration(
                cs_c, strategy, brief_c, fps_req, args.sample_budget * t_c, args.brief, args.brief_seeds, seed
            )
            reached = r["seconds_to_reach"]
            r["ratio"] = (reached if reached is not None else r["elapsed"]) / t_c
            r["ratio_is_lower_bound"] = reached is None
            runs.append(r)
        samplers[strategy] = {"runs": runs, **median_ratio(runs)}
    eff = {
        "reward": "brief-training val accuracy (mean over brief_seeds), exact FPS >= fps_required",
        "fps_required": fps_req,
        "brief_epochs": args.brief,
        "brief_seeds": args.brief_seeds,
        "cosearch_seconds": t_c,
        "cosearch_reward": brief_c,
        "budget_seconds": args.sample_budget * t_c,
        "sampler_seeds": args.sampler_seeds,
        **{f"{k}_ratio": v["ratio"] for k, v in samplers.items()},
        **{f"{k}_ratio_is_lower_bound": v["ratio_is_lower_bound"] for k, v in samplers.items()},
        **{
            f"{k}_runs": [
                {
                    f: r[f]
                    for f in ("seconds_to_reach", "elapsed", "ratio", "ratio_is_lower_bound", "best_reward")
                }
                | {"samples": len(r["samples"])}
                for r in v["runs"]
            ]
            for k, v in samplers.items()
        },
        "speedup": min(v["ratio"] for v in samplers.values()),
        "speedup_is_lower_bound": all(v["ratio_is_lower_bound"] for v in samplers.values()),
    }

    print(
        f"\n{'method':38} {'test acc':>15} {'FPS':>10} {'energy uJ':>10} {'DSP':>5} {'BRAM18':>6} "
        f"{'search s':>8}  widths (w/a)"
    )
    for k, r in rows.items():
        print(
            f"{k:38} {r['acc']:8.4f}+-{r['acc_se']:.4f} {r['fps']:10,.0f} {r['energy_uj']:10.2f} "
            f"{r['dsp']:5.0f} {r['bram18']:6.0f} {r['search_s']:8.1f}  {' '.join(r['widths'])}"
        )
    print(
        f"(test acc: {args.folds}-fold cross-validation over all images, {args.seeds} retrainings per "
        f"fold: mean +- standard error over the {args.folds * args.seeds} runs; "
        f"co-search target FPS {target:,.0f})"
    )
    print(f"co-search dominates (acc >= and FPS >=): {dominates}")
    for k, p in paired.items():
        print(
            f"  co-search - {k}: test acc {p['mean'] * 100:+.3f} points, +- {p['se'] * 100:.3f} "
            f"(paired by fold and seed, {p['n']} runs), +- {p['se_seeds_and_images'] * 100:.3f} (seeds and "
            f"test images); {p['wins']} wins / {p['ties']} ties / {p['losses']} losses"
        )
    print(
        f"  reference, {reference['what']}: {reference['fps']:,.0f} FPS, test acc {reference['acc']:.4f}; "
        f"dominates: {reference['dominates']}"
    )
    for c in fit["candidates"]:
        tr = "-" if c["trained_val_acc"] is None else f"{c['trained_val_acc']:.4f}+-{c['trained_val_se']:.4f}"
        print(
            f"  derivation candidate from epoch {c['from_epoch']}: exact FPS {c['exact_fps']:,.0f}, "
            f"MACs {c['macs']:,.0f}, supernet val {c['supernet_val_acc']:.4f}, trained val {tr}"
            + ("  <- chosen" if c["design"] == fit["design"] else "")
        )
    for k, r in rows.items():
        for c in r.get("derivation", []):
            tr = "-" if c["trained_val_acc"] is None else f"{c['trained_val_acc']:.4f}"
            print(
                f"  {k} derivation candidate: speed {c['speed']:,.0f}, trained val {tr}"
                + ("  <- chosen" if c["chosen"] else "")
            )
    print(
        f"search efficiency, reward = brief ({args.brief}-epoch, mean of {args.brief_seeds}) val accuracy "
        f"with exact FPS >= "
        f"{fps_req:,.0f}; co-search reaches {brief_c:.4f} in {t_c:.1f} s"
    )
    for k, v in samplers.items():
        for i, r in enumerate(v["runs"]):
            reached = r["seconds_to_reach"]
            best = "-" if r["best_reward"] is None else f"{r['best_reward']:.4f}"
            print(
                f"  {k:9} co-exploration, seed {i}: "
                + (
                    f"reached after {reached:.1f} s"
                    if reached is not None
                    else f"did not reach within its {r['elapsed']:.1f} s budget (best reward {best})"
                )
                + f", {len(r['samples'])} samples: ratio {'>= ' if reached is None else ''}{r['ratio']:.2f}x"
            )
        print(
            f"  {k:9} median over {len(v['runs'])} seeds: ratio {'>= ' if v['ratio_is_lower_bound'] else ''}"
            f"{v['ratio']:.2f}x"
        )
    # a --quick run checks the script; it does not replace the full run's results
    out = ROOT / "results" / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    res = {
        "args": vars(args),
        "methods": {k: {f: v for f, v in r.items() if not f.startswith("_")} for k, r in rows.items()},
        "dominates": dominates,
        "paired_difference_vs": paired,
        "reference_design": reference,
        "efficiency": eff,
        "samples": {k: [r["samples"] for r in v["runs"]] for k, v in samplers.items()},
        "wall_seconds": time.perf_counter() - t_all,
        "cosearch_trajectory": [
            {
                k: h[k]
                for k in (
                    "epoch",
                    "lambda",
                    "val_acc",
                    "expected_fps",
                    "exact_fps",
                    "relaxed_vs_exact_cycles",
                    "cycle_calib",
                )
            }
            for h in cs_c.history
        ],
        "mapper": co["mapper"],
    }
    (out / "cosearch_vs_baselines.json").write_text(json.dumps(res, indent=2, default=str))
    try:
        from codax.search.plots import plot_pareto

        pts = {k: [(r["fps"], r["acc"])] for k, r in rows.items()}
        plot_pareto(pts, out / "cosearch_vs_baselines_pareto.png")
    except Exception as e:  # noqa: BLE001 - a plot must not lose the numbers
        print(f"(plot failed: {e})")
    print(f"wrote {out / 'cosearch_vs_baselines.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
