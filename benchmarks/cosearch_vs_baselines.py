"""Co-search vs a two-stage flow and a fixed accelerator on digits, over search seeds, scored on
held-out images; and a sweep of the hardware weight.

Protocol (every search, every method):
- Data: one train / val / test split of the 1,797 digits for every search (data seed DATA_SEED,
  whatever the search seed; data.load_data draws `test` first and train / val from the rest, so the
  three are disjoint). Searches train weights on `train` and logits on `val`; derivations rank on
  `val`; nothing before the final scoring reads `test`.
- Methods, each searched with --seeds search seeds (0, 1, ...) at the same epochs and steps:
  (a) two-stage: the network searched under a FLOPs proxy, derived among its last argmax designs by
      training (baselines.derive_by_training, parsimony: fewer MACs), then the fastest accelerator for
      it by the exact mapper (baselines.best_accelerator_for: the mapping templates shortlist the
      top --shortlist fitting points, the mapper picks among them; 0: every fitting point);
  (b) fixed accelerator: the network searched for the library design zc706-int8 and derived the same
      way (parsimony: FPS on it), evaluated on that design;
  (c) co-search: network, widths and accelerator together, lambda adapted to a target FPS (--target
      x the faster baseline of the same seed), the derived design fitted to it (CoSearch.derive).
- Sweep: the co-search with a fixed hardware weight (search.lambda, no target FPS) at each of
  --weights; the weight 0 (no hardware term) with --weight0-seeds seeds, the others with one. Its
  design is the search's argmax (what `codax search` derives without a target).
- Scoring: each derived network retrained from scratch with the search's retraining recipe (train +
  val, fake-quantised at its widths, --retrain epochs) from --retrain-seeds seeds (RETRAIN_SEED,
  RETRAIN_SEED + 1, ...: the same for every design), accuracy on `test`, mean over those seeds; FPS
  and energy from the exact mapper and cost model (the library design's for (b)).
- Per method: mean and sample standard deviation over search seeds of held-out accuracy, FPS and
  energy; the hypervolume of its (held-out accuracy, FPS) points above the reference point (accuracy
  HV_ACC, FPS half the smallest FPS of any design in the run), FPS divided by the reference FPS so the
  figure has no unit; the same for the sweep's points.
- Optional (--sample-budget > 0): sample-based co-exploration (random sampling and regularised
  evolution) against the seed-0 co-search, until a sample reaches the co-search result's brief-training
  reward or the budget (x the co-search time) runs out; skipped when the budget is 0 (the JSON says so).

Jobs run in --jobs worker processes (one thread each), seed by seed with the sweep spread between
(job_order); a co-search job starts once both baselines of its seed are done (its target is their
FPS). The JSON is rewritten after every job ("complete": false until the last). The relaxed cost
tables (a mapper search per supernet layer and accelerator point, seconds each) are the same for
every job of a run, so each job starts with the tables earlier jobs built (--table-cache, emptied at
the start of a run); a search's time therefore depends on the jobs before it and is not compared.
The derivations' training (ranking candidates on `val`) runs --derive-epochs epochs, --derive-seeds
seeds; `args` in the JSON records every such setting of the run.

    .venv/bin/python benchmarks/cosearch_vs_baselines.py [--epochs 24] [--jobs 2] [--quick]

The committed results/cosearch_vs_baselines.json is a reduced budget (about 10 minutes on 2 cores):

    .venv/bin/python benchmarks/cosearch_vs_baselines.py --epochs 8 --warmup 3 --max-steps 4 \
        --retrain-seeds 2 --derive-epochs 10 --derive-seeds 2 --derive-candidates 3 --shortlist 8
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from codax.hw import load_accelerator  # noqa: E402
from codax.search.baselines import (  # noqa: E402
    best_accelerator_for,
    brief_reward,
    coexploration,
    derive_by_training,
    exact_network_cost,
)
from codax.search.config import load_config  # noqa: E402
from codax.search.cosearch import CoSearch  # noqa: E402
from codax.search.data import load_data  # noqa: E402
from codax.search.derive import build_graph, exact_cost  # noqa: E402
from codax.search.finalize import accuracy, train_from_scratch  # noqa: E402
from codax.search.mappertable import MAPPER_OBJECTIVES  # noqa: E402

ZC706 = {
    "rows": 16,
    "cols": 32,
    "buffer_kb": {"W": 128, "I": 128, "O": 64},
    "dataflow": "weight-stationary",
    "double_buffer": True,
}
DATA_SEED = 0  # one split for every search: its `test` images are held out from all of them
RETRAIN_SEED = 1000  # first retraining seed of the scoring (the same seeds for every design)
HV_ACC = 0.9  # hypervolume reference accuracy
METHODS = ("two-stage", "fixed", "co-search")
LABELS = {
    "two-stage": "two-stage (FLOPs, then accelerator by the mapper)",
    "fixed": "fixed accelerator (zc706-int8)",
    "co-search": "co-search (codax)",
}


# --- one search and its scoring (runs in a worker process) ---------------------------------------
def search_config(args: dict, kind: str, seed: int, weight: float | None, target: float | None) -> dict:
    s = {
        "epochs": args["epochs"],
        "warmup_epochs": args["warmup"] if args["warmup"] is not None else max(1, args["epochs"] // 4),
        "objective": "latency",
        "derive_train_epochs": args["derive_epochs"],
        "derive_train_seeds": args["derive_seeds"],
        "derive_candidates": args["derive_candidates"],
        "max_steps_per_epoch": args["max_steps"],
    }
    cfg: dict = {"seed": seed, "search": s, "retrain": {"epochs": args["retrain"]}}
    if kind == "two-stage":
        s["objective"] = "flops"
    elif kind == "fixed":
        cfg["accelerator"] = {"fixed": ZC706}
    elif kind == "co-search":
        s["target_fps"] = target
    elif kind == "sweep":
        s["lambda"] = weight
    else:
        raise ValueError(f"kind must be two-stage, fixed, co-search or sweep, got {kind!r}")
    return cfg


def new_search(cfg: dict) -> CoSearch:
    """A search whose data is the shared split: CoSearch draws its split from the search seed, which
    would put one seed's test images in another seed's train / val."""
    cs = CoSearch(load_config(cfg))
    cs.data = load_data(cs.cfg, DATA_SEED)
    return cs


def table_key(cs: CoSearch, point: tuple) -> str:
    """What a relaxed cost table depends on beyond the network space (the same in every job): the
    accelerator point's values (not its indices: the fixed space indexes other options), the mapping
    slots and the mapper's objective (a FLOPs search's tables hold the latency mapper's)."""
    obj = cs.hw.mapper_objective if cs.hw.mapper_objective in MAPPER_OBJECTIVES else "latency"
    return json.dumps([cs.space.describe(point), cs.hw.m_count, obj], sort_keys=True)


def load_tables(cs: CoSearch, path: Path | None) -> int:
    """Seed the search's table cache with the tables earlier jobs of the run built (a table is a
    deterministic function of its key: a mapper search per supernet layer, seconds per point)."""
    if path is None or cs.hw.mapper_objective is None or not path.exists():
        return 0
    try:
        stored = torch.load(path)
    except Exception:  # noqa: BLE001 - a file being replaced by another job: build the tables again
        return 0
    for c in cs.space.all_configs():
        t = stored.get(table_key(cs, c))
        if t is not None:
            cs.hw.cache[c] = t
    return len(cs.hw.cache)


def save_tables(cs: CoSearch, path: Path | None) -> None:
    if path is None or cs.hw.mapper_objective is None:
        return
    stored = {}
    if path.exists():
        try:
            stored = torch.load(path)
        except Exception:  # noqa: BLE001 - see load_tables
            stored = {}
    stored.update({table_key(cs, c): t for c, t in cs.hw.cache.items()})
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(stored, tmp)
    os.replace(tmp, path)


def split_digest(cs: CoSearch) -> str:
    x, y = cs.data.test
    return hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16]


def held_out_accuracy(cs: CoSearch, d, epochs: int, seeds: int) -> list[float]:
    """`test` accuracy of the design's network retrained from scratch on train + val (the search's
    retraining recipe, fake-quantised at its widths), one per retraining seed."""
    r = cs.cfg.retrain
    out = []
    for i in range(seeds):
        m = train_from_scratch(
            cs.net, d, cs.data, epochs, float(r.lr), int(r.batch_size), True, RETRAIN_SEED + i
        )
        m.quantize = True
        out.append(accuracy(m, *cs.data.test))
    return out


def cost_row(cost) -> dict:
    return {
        "fps": cost.fps,
        "energy_uj": cost.energy_pj / 1e6,
        "dsp": cost.resources.dsp,
        "bram18": cost.resources.bram18,
        "macs": cost.macs,
    }


def on_library(cs: CoSearch, d, name: str):
    """Exact cost of the design's network on a library accelerator."""
    graph, _ = build_graph(cs.net, d)
    return exact_cost(graph, load_accelerator(name), {}, "latency", cs.lt, cs.space, d.accel)[1]


def network_of(cs: CoSearch, d) -> dict:
    """The derived network: op per unit and w/a widths of the units that have layers."""
    units = cs.net.units
    return {
        "ops": [u.ops[o].label for u, o in zip(units, d.ops)],
        "widths": [
            f"{u.name}:{w}/{a}" for u, o, (w, a) in zip(units, d.ops, d.bits) if u.ops[o].kind != "skip"
        ],
    }


def run_job(job: dict, args: dict) -> dict:
    """Search, derive and score one (kind, seed[, weight]) job."""
    torch.set_num_threads(1)
    kind, seed = job["kind"], job["seed"]
    cs = new_search(search_config(args, kind, seed, job.get("weight"), job.get("target")))
    tables = Path(args["table_cache"]) if args["table_cache"] else None
    cached = load_tables(cs, tables)
    t0 = time.perf_counter()
    for _ in range(cs.cfg.search.epochs):
        cs.run_epoch(progress=False)
    search_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    extra: dict = {}
    if kind == "two-stage":  # stage one knows no accelerator: its parsimony is the proxy it searched
        net_d, extra["derivation"] = derive_by_training(cs, lambda d: -build_graph(cs.net, d)[0].macs)
        d, extra["accelerator_stage"] = best_accelerator_for(cs, net_d, args["shortlist"] or None)
    elif kind == "fixed":
        d, extra["derivation"] = derive_by_training(cs, lambda d: on_library(cs, d, "zc706-int8").fps)
    else:
        d, fit = cs.derive()
        if fit is not None:
            extra["target_fps"] = job["target"]
            extra["target_fit"] = {k: v for k, v in fit.items() if k not in ("design", "candidates")}
            extra["target_fit"]["candidates"] = [
                {k: v for k, v in c.items() if k != "design"} for c in fit["candidates"]
            ]
    derive_s = time.perf_counter() - t1
    built = len(cs.hw.cache) - cached
    save_tables(cs, tables)
    cost = on_library(cs, d, "zc706-int8") if kind == "fixed" else exact_network_cost(cs, d)
    t2 = time.perf_counter()
    accs = held_out_accuracy(cs, d, args["retrain"], args["retrain_seeds"])
    row = {
        "kind": kind,
        "seed": seed,
        "weight": job.get("weight"),
        **network_of(cs, d),
        **cost_row(cost),
        "accel": "zc706-int8" if kind == "fixed" else cs.space.describe(d.accel[0]),
        "test_acc": sum(accs) / len(accs),
        "test_accs": accs,
        "search_s": search_s,
        "derive_s": derive_s,
        "retrain_s": time.perf_counter() - t2,
        "tables": {"from_earlier_jobs": cached, "built": built, "seconds": cs.hw.table_seconds},
        "test_split": split_digest(cs),
        "test_images": len(cs.data.test[1]),
        "trajectory": [
            {k: h.get(k) for k in ("epoch", "lambda", "val_acc", "exact_fps", "macs")} for h in cs.history
        ],
        **extra,
    }
    if job.get("coexplore"):
        row["coexploration"] = coexplore(cs, d, min(job["target"], cost.fps), search_s + derive_s, args)
    return row


def coexplore(cs: CoSearch, d, fps_req: float, t_c: float, args: dict) -> dict:
    """Sample-based co-exploration vs this co-search result: each sampler's runs, time to reach the
    co-search's brief-training reward over the co-search time (a lower bound when not reached)."""
    reward = brief_reward(cs, d, args["brief"], args["brief_seeds"])
    out = {"fps_required": fps_req, "cosearch_seconds": t_c, "cosearch_reward": reward}
    for strategy in ("random", "evolution"):
        runs = []
        for seed in range(args["sampler_seeds"]):
            budget = args["sample_budget"] * t_c
            r = coexploration(cs, strategy, reward, fps_req, budget, args["brief"], args["brief_seeds"], seed)
            reached = r["seconds_to_reach"]
            runs.append(
                {
                    "seconds_to_reach": reached,
                    "ratio": (reached if reached is not None else r["elapsed"]) / t_c,
                    "ratio_is_lower_bound": reached is None,
                    "samples": len(r["samples"]),
                    "best_reward": r["best_reward"],
                }
            )
        out[strategy] = runs
    return out


# --- scheduling ----------------------------------------------------------------------------------
def job_order(args: argparse.Namespace) -> list[dict]:
    """Seed by seed (two-stage, fixed, co-search), the sweep's searches spread between them, so that a
    run cut short still holds every method and part of the sweep. A co-search job waits for its
    seed's baselines (its target is their FPS)."""
    sweep = [
        {"kind": "sweep", "seed": s, "weight": w}
        for s in range(max(args.weight0_seeds, 1))
        for w in args.weights
        if s < (args.weight0_seeds if w == 0 else 1)
    ]
    order = []
    for s in range(args.seeds):
        order += [{"kind": "two-stage", "seed": s}, {"kind": "fixed", "seed": s}]
        order += sweep[: max(1, len(sweep) // args.seeds)] if s < args.seeds - 1 else sweep
        sweep = [] if s == args.seeds - 1 else sweep[max(1, len(sweep) // args.seeds) :]
        order.insert(len(order) - 1, {"kind": "co-search", "seed": s})
    return order


def ready(job: dict, rows: list[dict], args: argparse.Namespace) -> dict | None:
    """The job with what it needs from finished jobs, or None while they run."""
    if job["kind"] != "co-search":
        return job
    base = [r for r in rows if r["kind"] in ("two-stage", "fixed") and r["seed"] == job["seed"]]
    if len(base) < 2:
        return None
    target = max(r["fps"] for r in base) * args.target
    return job | {"target": target, "coexplore": job["seed"] == 0 and args.sample_budget > 0}


def run_all(args: argparse.Namespace, on_row) -> list[dict]:
    """Every job on --jobs workers, in job_order (a co-search job is passed over until it is ready);
    on_row(rows) after each finished job."""
    a, queue = vars(args), job_order(args)
    rows, running = [], {}
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        while queue or running:
            while len(running) < args.jobs:
                job = next((j for j in (ready(q, rows, args) for q in queue) if j is not None), None)
                if job is None:
                    break
                queue = [
                    q
                    for q in queue
                    if (q["kind"], q["seed"], q.get("weight"))
                    != (job["kind"], job["seed"], job.get("weight"))
                ]
                running[pool.submit(run_job, job, a)] = job
                print(f"[{time.strftime('%H:%M:%S')}] start {job}", flush=True)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                job = running.pop(f)
                r = f.result()
                rows.append(r)
                print(
                    f"[{time.strftime('%H:%M:%S')}] done {job}: test acc {r['test_acc']:.4f}, "
                    f"FPS {r['fps']:,.0f}, MACs {r['macs']:,}, ops {r['ops']}, widths {r['widths']}, "
                    f"search {r['search_s']:.0f} s, derive {r['derive_s']:.0f} s, "
                    f"retrain {r['retrain_s']:.0f} s, tables {r['tables']}",
                    flush=True,
                )
                on_row(rows)
    return rows


# --- summary -------------------------------------------------------------------------------------
def mean_sd(xs: list[float]) -> dict:
    return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by (accuracy, normalised FPS) points above the reference point, both maximised."""
    pts = sorted((p for p in points if p[0] > ref[0] and p[1] > ref[1]), key=lambda p: -p[1])
    area, best_acc = 0.0, ref[0]
    for i, (acc, fps) in enumerate(pts):  # by FPS falling: each point adds the strip its accuracy gains
        best_acc = max(best_acc, acc)
        lower = pts[i + 1][1] if i + 1 < len(pts) else ref[1]
        area += (best_acc - ref[0]) * (fps - lower)
    return area


def summarise(rows: list[dict], args: argparse.Namespace) -> dict:
    digests = {r["test_split"] for r in rows}
    if len(digests) != 1:
        raise RuntimeError(f"searches scored on different test splits: {sorted(digests)}")
    fps_ref = min(r["fps"] for r in rows) / 2
    ref = (HV_ACC, 1.0)
    pts = lambda rs: [(r["test_acc"], r["fps"] / fps_ref) for r in rs]  # noqa: E731
    methods = {}
    for k in METHODS:
        rs = sorted((r for r in rows if r["kind"] == k), key=lambda r: r["seed"])
        methods[k] = {
            "test_acc": mean_sd([r["test_acc"] for r in rs]),
            "fps": mean_sd([r["fps"] for r in rs]),
            "energy_uj": mean_sd([r["energy_uj"] for r in rs]),
            "macs": mean_sd([r["macs"] for r in rs]),
            "hypervolume": hypervolume(pts(rs), ref),
        }
    sweep = sorted((r for r in rows if r["kind"] == "sweep"), key=lambda r: (r["weight"], r["seed"]))
    weights = sorted({r["weight"] for r in sweep})
    per_weight = {
        w: {
            "macs_mean": statistics.fmean(r["macs"] for r in sweep if r["weight"] == w),
            "test_acc_mean": statistics.fmean(r["test_acc"] for r in sweep if r["weight"] == w),
            "fps_mean": statistics.fmean(r["fps"] for r in sweep if r["weight"] == w),
            "seeds": sum(r["weight"] == w for r in sweep),
        }
        for w in weights
    }
    macs = [per_weight[w]["macs_mean"] for w in weights]
    seed0 = [next(r["macs"] for r in sweep if r["weight"] == w and r["seed"] == 0) for w in weights]
    w0 = [r["test_acc"] for r in sweep if r["weight"] == 0]
    return {
        "units": "accuracies are fractions of the test images (0.98 = 98%); FPS frames/s; energy uJ/frame",
        "weight0_accuracy": statistics.fmean(w0) if w0 else None,
        "weight0_accuracy_sd": statistics.stdev(w0) if len(w0) > 1 else None,
        "sweep_distinct_networks": len({tuple(r["ops"]) for r in sweep}),
        "sweep_distinct_networks_with_widths": len({(tuple(r["ops"]), tuple(r["widths"])) for r in sweep}),
        "sweep_macs_nonincreasing": all(b <= a for a, b in zip(seed0, seed0[1:])),
        "sweep_macs_rule": "search seed 0 at every weight (the same initialisation), weights ascending",
        "sweep_macs_seed0": seed0,
        "sweep_macs_mean_nonincreasing": all(b <= a for a, b in zip(macs, macs[1:])),
        "sweep_per_weight": per_weight,
        "sweep_hypervolume": hypervolume(pts(sweep), ref),
        "hypervolume_reference": {
            "accuracy": HV_ACC,
            "fps": fps_ref,
            "fps_rule": "half the smallest FPS of any design in this run (methods and sweep)",
            "normalisation": "FPS divided by the reference FPS; area in (accuracy fraction) x (FPS / ref)",
        },
        **{f"{k}_test_acc": methods[k]["test_acc"] for k in METHODS},
        **{f"{k}_fps": methods[k]["fps"] for k in METHODS},
        **{f"{k}_hypervolume": methods[k]["hypervolume"] for k in METHODS},
        "methods": methods,
        "cosearch_beats": {
            k: {
                "test_acc": methods["co-search"]["test_acc"]["mean"] >= methods[k]["test_acc"]["mean"],
                "fps": methods["co-search"]["fps"]["mean"] >= methods[k]["fps"]["mean"],
                "hypervolume": methods["co-search"]["hypervolume"] >= methods[k]["hypervolume"],
            }
            for k in ("two-stage", "fixed")
        },
    }


def print_table(rows: list[dict], summary: dict) -> None:
    print(f"\n{'method':52} {'seed':>4} {'test acc':>8} {'FPS':>10} {'uJ':>7} {'MACs':>9}  ops | widths")
    order = {k: i for i, k in enumerate(METHODS + ("sweep",))}
    for r in sorted(rows, key=lambda r: (order[r["kind"]], r["weight"] or 0, r["seed"])):
        name = LABELS.get(r["kind"], f"sweep, hardware weight {r['weight']}")
        print(
            f"{name:52} {r['seed']:4d} {r['test_acc']:8.4f} {r['fps']:10,.0f} {r['energy_uj']:7.2f} "
            f"{r['macs']:9,}  {' '.join(r['ops'])} | {' '.join(r['widths'])}"
        )
    for k in METHODS:
        m = summary["methods"][k]
        print(
            f"{LABELS[k]:52} test acc {m['test_acc']['mean']:.4f} +- {m['test_acc']['sd']:.4f}, FPS "
            f"{m['fps']['mean']:,.0f} +- {m['fps']['sd']:,.0f}, hypervolume {m['hypervolume']:.4f}"
        )
    print(
        f"sweep: weight-0 accuracy {summary['weight0_accuracy']:.4f}, distinct networks "
        f"{summary['sweep_distinct_networks']}, MACs non-increasing {summary['sweep_macs_nonincreasing']}, "
        f"hypervolume {summary['sweep_hypervolume']:.4f}"
    )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="search seeds per method (0, 1, ...)")
    ap.add_argument("--epochs", type=int, default=24, help="search epochs")
    ap.add_argument("--warmup", type=int, default=None, help="weight-only epochs (default: a quarter)")
    ap.add_argument("--max-steps", type=int, default=None, help="search steps per epoch at most")
    ap.add_argument("--retrain", type=int, default=20, help="epochs of the scoring's retraining")
    ap.add_argument("--retrain-seeds", type=int, default=3, help="retrainings per derived design")
    ap.add_argument(
        "--derive-epochs", type=int, default=20, help="epochs of a derivation candidate's training"
    )
    ap.add_argument("--derive-seeds", type=int, default=5, help="trainings per derivation candidate")
    ap.add_argument("--derive-candidates", type=int, default=4, help="last epochs' argmax designs ranked")
    ap.add_argument("--shortlist", type=int, default=16, help="two-stage: points the mapper ranks (0: all)")
    ap.add_argument("--target", type=float, default=1.0, help="co-search target FPS, x faster baseline")
    ap.add_argument(
        "--weights", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 0.1, 0.3, 1.0]
    )
    ap.add_argument("--weight0-seeds", type=int, default=3, help="search seeds of the sweep's weight 0")
    ap.add_argument(
        "--sample-budget", type=float, default=0.0, help="co-exploration, x co-search time (0: off)"
    )
    ap.add_argument("--sampler-seeds", type=int, default=1, help="runs of each sampler")
    ap.add_argument("--brief", type=int, default=4, help="epochs of brief training per sample")
    ap.add_argument("--brief-seeds", type=int, default=2, help="brief trainings averaged per reward")
    ap.add_argument("--jobs", type=int, default=2, help="searches run at once (worker processes)")
    ap.add_argument(
        "--table-cache",
        default=str(Path(tempfile.gettempdir()) / "codax_cosearch_vs_baselines_tables.pt"),
        help="file of relaxed cost tables shared by the run's jobs ('': none)",
    )
    ap.add_argument("--quick", action="store_true", help="tiny epochs and steps: checks the script")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.max_steps, args.retrain, args.retrain_seeds = 2, 2, 3, 2, 1
        args.derive_epochs = 2
        args.derive_seeds, args.derive_candidates, args.shortlist = 2, 2, 2
        args.weights, args.weight0_seeds = [0.0, 1.0], 2
    if 0.0 not in args.weights:
        raise SystemExit("--weights must include 0 (the sweep's no-hardware-term point)")
    return args


def write(rows: list[dict], args: argparse.Namespace, t0: float, final: bool) -> Path:
    """The JSON (and the plot when final); a partial file after each job while the run goes on."""
    out = ROOT / "results" / ("quick" if args.quick else "")  # a quick run does not replace the results
    out.mkdir(parents=True, exist_ok=True)
    try:
        summary = summarise(rows, args)
    except (statistics.StatisticsError, ValueError, KeyError, ZeroDivisionError) as e:
        summary = {"incomplete": f"not every method and weight has a result yet ({e})"}
    res = {
        "complete": final,
        "args": vars(args),
        "protocol": {
            "data_seed": DATA_SEED,
            "test_images": rows[0]["test_images"],
            "retrain_seeds": [RETRAIN_SEED + i for i in range(args.retrain_seeds)],
            "retraining": "from scratch on train + val, fake-quantised at the design's widths, "
            f"{args.retrain} epochs; accuracy on test",
            "derivation_ranking": f"trained on train for {args.derive_epochs} epochs, "
            f"{args.derive_seeds} seeds, accuracy on val",
            "two_stage_accelerator_stage": "exact mapper over every fitting point"
            if not args.shortlist
            else f"mapping templates shortlist the top {args.shortlist} fitting points, "
            "the exact mapper picks",
            "coexploration": "run against the seed-0 co-search"
            if args.sample_budget > 0
            else "skipped (--sample-budget 0): it did not fit the run's time budget",
            "search_seconds": "wall time in a worker sharing the machine; relaxed cost tables built by "
            "earlier jobs were reused (rows[].tables), so it is no measure of a search's cost",
        },
        "summary": summary,
        "rows": sorted(rows, key=lambda r: (r["kind"], r["weight"] or 0, r["seed"])),
        "wall_seconds": time.perf_counter() - t0,
    }
    path = out / "cosearch_vs_baselines.json"
    path.write_text(json.dumps(res, indent=2, default=str))
    if final:
        try:
            from codax.search.plots import plot_pareto

            pts: dict = {}
            for r in rows:
                name = LABELS.get(r["kind"], "co-search, fixed hardware weight")
                pts.setdefault(name, []).append((r["fps"], r["test_acc"]))
            plot_pareto(pts, out / "cosearch_vs_baselines_pareto.png")
        except Exception as e:  # noqa: BLE001 - a plot must not lose the numbers
            print(f"(plot failed: {e})")
    return path


def main() -> int:
    args = parse_args()
    t0 = time.perf_counter()
    if args.table_cache:  # tables of this run's code only (the cost model may have changed since)
        Path(args.table_cache).unlink(missing_ok=True)
    rows = run_all(args, lambda rows: write(rows, args, t0, final=False))
    print_table(rows, summarise(rows, args))
    print(f"wrote {write(rows, args, t0, final=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
