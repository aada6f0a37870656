"""Baselines the co-search is compared with (benchmarks/cosearch_vs_baselines.py).

- two-stage: search the network for accuracy under a FLOPs proxy, then the fastest accelerator for
  that fixed network by the exact mapper (over the fitting points of the same accelerator space, or
  the mapping templates' shortlist of them; see `best_accelerator_for`);
- fixed accelerator: search the network for a frozen accelerator (e.g. the zc706-int8 design);
- sample-based co-exploration: random or evolutionary sampling of (network, bitwidth,
  accelerator) designs, each evaluated exactly and briefly trained (see `coexploration`).
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from codax.hw.evaluate import NetworkCost
from codax.search.derive import Design, build_graph, exact_cost
from codax.search.hwcost import LayerTable, configs_costs
from codax.search.ranking import one_se_pick
from codax.search.scoring import brief_accuracy
from codax.search.space import build_accelerator

if TYPE_CHECKING:
    from codax.search.cosearch import CoSearch


def derive_by_training(cs: CoSearch, speed) -> tuple[Design, list[dict]]:
    """A baseline's derivation at the co-search's budget: its argmax designs of the last
    `search.derive_candidates` epochs (CoSearch.argmax_candidates), each trained from scratch with
    the same seeds and recipe the co-search ranks its candidates with (CoSearch.trained_val_accs),
    picked by the same one-standard-error rule with `speed(design)` (higher is better) as the
    parsimony. Returns the pick and one log row per candidate."""
    designs = [d for _, d in cs.argmax_candidates()]
    speeds = [speed(d) for d in designs]
    if len(designs) == 1:  # nothing to rank: no training
        return designs[0], [{"speed": speeds[0], "trained_val_acc": None, "chosen": True}]
    accs = [cs.trained_val_accs(d) for d in designs]
    i = one_se_pick(range(len(designs)), accs.__getitem__, speeds.__getitem__)
    log = [
        {"speed": v, "trained_val_acc": sum(a) / len(a), "chosen": j == i}
        for j, (v, a) in enumerate(zip(speeds, accs))
    ]
    return designs[i], log


def exact_network_cost(cs: CoSearch, d: Design, objective: str | None = None) -> NetworkCost:
    """Design `d` mapped by the exact mapper and evaluated exactly, as CoSearch.exact evaluates a
    derived design (same graph and accelerator; the mapper's objective the search's unless given),
    without its relaxed estimate: the relaxed tables of a point cost a mapper search per supernet
    layer."""
    graph, engines = build_graph(cs.net, d, cs.hw.engine_of)
    accel = build_accelerator(cs.space, d.accel)
    return exact_cost(graph, accel, engines, objective or cs.objective, cs.lt, cs.space, d.accel)[1]


def best_accelerator_for(cs: CoSearch, d: Design, shortlist: int | None = 16) -> tuple[Design, dict]:
    """Stage 2 of the two-stage baseline: the fastest feasible accelerator point for the design's
    network, by the exact mapper and cost model (what every derived design is evaluated with).

    The mapper costs seconds per point and the default space has ~860 fitting points, so with
    `shortlist` = k the mapping templates (each layer at its best template, one batched pass over
    every fitting point) rank the points and the exact mapper evaluates the templates' top k; the
    exact fastest of those wins. Templates err by tens of percent against the mapper, which is why
    they only shortlist. `shortlist` None (or >= the fitting points): every fitting point exactly.
    Returns the design on the chosen point and a log of the stage."""
    t0 = time.perf_counter()
    feasible = cs.feasible_points()
    if shortlist is not None and shortlist < 1:
        raise ValueError(f"shortlist must be >= 1 or None (every fitting point), got {shortlist}")
    exhaustive = shortlist is None or shortlist >= len(feasible)
    if exhaustive:
        order = list(range(len(feasible)))
    else:
        graph, _ = build_graph(cs.net, d)
        lt = LayerTable(None, cs.bits, layers=graph.layers)
        cycles = []
        for i in range(0, len(feasible), 64):  # batches bound the cost tensors' memory
            for t in configs_costs(lt, cs.space, feasible[i : i + 64], 3, False):
                cycles.append(float(t[:, 0, :, 0].amin(-1).sum()))  # [n, 1, M, 2]
        order = sorted(range(len(feasible)), key=cycles.__getitem__)[:shortlist]
    rows = []
    for rank, i in enumerate(order):
        point = Design(d.ops, d.bits, [feasible[i]] * cs.chunks, d.maps)
        cost = exact_network_cost(cs, point, "latency")  # the fastest point: the mapper maps for latency
        rows.append(
            {"point": feasible[i], "template_rank": None if exhaustive else rank, "exact_fps": cost.fps}
        )
    best = max(rows, key=lambda r: r["exact_fps"])  # the first of equals: the templates' order
    log = {
        "method": "exact mapper over every fitting point"
        if exhaustive
        else f"templates shortlist the top {len(order)} fitting points, the exact mapper picks",
        "fitting_points": len(feasible),
        "evaluated_exactly": len(rows),
        "chosen": cs.space.describe(best["point"]),
        "chosen_exact_fps": best["exact_fps"],
        "chosen_template_rank": best["template_rank"],
        "templates_pick_exact_fps": None if exhaustive else rows[0]["exact_fps"],
        "points": [r | {"point": list(r["point"])} for r in rows],
        "seconds": time.perf_counter() - t0,
    }
    return Design(d.ops, d.bits, [best["point"]] * cs.chunks, d.maps), log


def brief_reward(cs: CoSearch, d: Design, epochs: int, seeds: int, first_seed: int = 0) -> float:
    """Mean brief accuracy over `seeds` trainings (seeds first_seed, first_seed + 1, ...): one
    brief training differs from the next by a point or two, too much for a threshold."""
    return sum(brief_accuracy(cs.net, cs.data, d, epochs, first_seed + i) for i in range(seeds)) / seeds


def _widths(cs: CoSearch) -> list[int]:
    """The widths a searchable layer may take: all choices, or the widest when bits are not searched."""
    return list(cs.bits) if cs.cfg.bits.search else [max(cs.bits)]


def random_design(cs: CoSearch, rng: random.Random) -> Design:
    ops = [rng.randrange(len(u.ops)) for u in cs.net.units]
    fixed, widths = cs.cfg.bits.first_last, _widths(cs)
    bits = [
        (rng.choice(widths), rng.choice(widths)) if u.searchable else (fixed, fixed) for u in cs.net.units
    ]
    return Design(ops, bits, [rng.choice(cs.feasible_points()) for _ in range(cs.chunks)])


def mutate(cs: CoSearch, d: Design, rng: random.Random) -> Design:
    """One gene changed: a searchable unit's op, weight or activation width, or one accelerator
    choice of one engine (kept within the budget)."""
    units = [u for u, unit in enumerate(cs.net.units) if unit.searchable]
    ops, bits, accel = list(d.ops), list(d.bits), list(d.accel)
    kinds = ["op"] + (["w", "a"] if len(_widths(cs)) > 1 else [])
    kinds += ["accel"] if cs.space.fixed is None else []
    while True:
        kind = rng.choice(kinds)
        if kind == "op":
            u = rng.choice(units)
            ops[u] = rng.choice([o for o in range(len(cs.net.units[u].ops)) if o != ops[u]])
        elif kind in ("w", "a"):
            u, k = rng.choice(units), 0 if kind == "w" else 1
            b = list(bits[u])
            b[k] = rng.choice([x for x in _widths(cs) if x != b[k]])
            bits[u] = (b[0], b[1])
        else:
            e, c = rng.randrange(cs.chunks), rng.randrange(len(cs.space.sizes))
            pt = list(accel[e])
            pt[c] = rng.choice([o for o in range(cs.space.sizes[c]) if o != pt[c]])
            if not cs.hw.fits(tuple(pt)):
                continue
            accel[e] = tuple(pt)
        return Design(ops, bits, accel)


def _key(d: Design) -> tuple:
    return (tuple(d.ops), tuple(d.bits), tuple(d.accel))


def coexploration(
    cs: CoSearch,
    strategy: str,
    target_acc: float,
    target_fps: float,
    budget_s: float,
    brief_epochs: int,
    brief_seeds: int = 1,
    seed: int = 0,
    population: int = 16,
    tournament: int = 4,
    max_samples: int = 10_000,
) -> dict:
    """Sample-based co-exploration until a design reaches the reward or the time budget runs out.

    Reward (the one the co-search result is scored by): brief-training validation accuracy (mean
    over `brief_seeds` trainings, see brief_reward) of a design whose exact FPS is >= target_fps; a
    design is "as good" when its reward >= target_acc.
    A sample that misses the FPS target cannot reach it, so it is not trained (its fitness is
    fps / target - 1 < 0, which still guides evolution towards the target).
    `strategy`: "random" (independent samples) or "evolution" (regularised evolution, Real et
    al. 2019: tournament selection in a population of the latest `population` samples, one-gene
    mutation of the winner). Returns the samples and the seconds to reach (None: not reached)."""
    if strategy not in ("random", "evolution"):
        raise ValueError(f"strategy must be random or evolution, got {strategy!r}")
    rng = random.Random(seed)
    t0 = time.perf_counter()
    samples: list[dict] = []
    pop: list[tuple[Design, float]] = []
    seen: set = set()
    reached = None
    while time.perf_counter() - t0 < budget_s and len(samples) < max_samples:
        for _ in range(20):  # a new design when one is found quickly (repeats teach nothing)
            if strategy == "random" or len(pop) < population:
                d = random_design(cs, rng)
            else:
                parent = max(rng.sample(pop, tournament), key=lambda p: p[1])[0]
                d = mutate(cs, parent, rng)
            if _key(d) not in seen:
                break
        seen.add(_key(d))
        fps = cs.exact(d)["exact_fps"]
        acc = None
        if fps >= target_fps:
            acc = brief_reward(cs, d, brief_epochs, brief_seeds, seed + len(samples) * brief_seeds)
        fitness = acc if acc is not None else fps / target_fps - 1.0
        samples.append({"acc": acc, "fps": fps, "t": time.perf_counter() - t0})
        pop = (pop + [(d, fitness)])[-population:]
        if acc is not None and acc >= target_acc:
            reached = samples[-1]["t"]
            break
    best = max((s["acc"] for s in samples if s["acc"] is not None), default=None)
    return {
        "strategy": strategy,
        "samples": samples,
        "seconds_to_reach": reached,
        "elapsed": time.perf_counter() - t0,
        "best_reward": best,
    }
