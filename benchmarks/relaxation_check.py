"""Does the accelerator relaxation's gradient point the way the exact cost moves, and does descending
it find the best accelerator?

The search's accelerator distribution P is the product of per-choice softmaxes restricted to the
points that fit the budget (codax/search/acceldist.py); the logits descend E_P[C], the exact cost of
whole points averaged under P, either exactly (enumeration) or through S = 2 points drawn per
architecture step and their local expectations: the cost at every fitting option of each block of
choices (the choices the budget couples together, here rows x cols; the others alone) with the other
choices at the drawn values, each block's logits' gradient the option's probability given the
others times the cost's change from the block's conditional mean (with the budget's coupling term;
acceldist.py). The points evaluated stay cached, so the evaluations over a search are bounded by the
space.

Setup: the default network space (`small8`, 8x8 inputs) and a reduced accelerator space of the
default kind (rows x cols in {8, 16, 32}^2, two sizes per buffer, both dataflows, double buffering
on/off) under the ZC706 budget; C(a) is the network's cycles (slowest engine) on point a from the
exact cost model (`cost_core`, not relaxed) under the out-reuse mapping template (the mapper's
tables cost seconds per point, too slow to enumerate every point for hundreds of networks here;
the relaxation under test only combines per-point costs, whichever mapping fills them).

(a) `grad_sign_agreement`: over random (network, P) cases -- a network of random ops and widths,
P from random logits -- the share of accelerator logits theta_c[o] whose gradient sign agrees with
the exact cost's change when that choice is taken, E_P[C | a_c = o] - E_P[C] (the descent raises
theta_c[o] exactly when taking o lowers the expected exact cost). Logits whose exact change is
below 1e-6 of E_P[C] (choices the cost cannot see) are left out and counted. Reported for the
search's sampled estimator summed over one epoch of digits architecture steps (the headline), over
1, 4 and 64 steps (with `points_evaluated_epoch`, the mean number of points whose cost the epoch's
estimates evaluated), for the exact expectation (equal to P(a_c = o) times the change: agreement by
identity, a check of the code), and for the relaxation it replaced (the cost linearised around the
most likely point one choice at a time, weights p/n).
(b) `descent_gap`: with the network fixed, accelerator-only descent (Adam on the logits through the
search's estimator, from uniform logits and an empty cache) ends at the most probable fitting
point; its exact cost against the best point of the space by exhaustive evaluation; geomean over
networks of cost / best - 1.

The cases' logits come from a random stream of their own, the estimators' draws from another: the
cases do not depend on how many numbers an estimator draws.

`--relaxed-cost mapper` takes C(a) from the search's default tables instead, the exact mapper's
mapping of every layer on each point (codax/search/mappertable.py: one mapper search per layer and
mapper view, which makes enumerating the space affordable), with `--out` another file.

Writes benchmarks/results/relaxation_check.json.

    .venv/bin/python benchmarks/relaxation_check.py [--cases 200] [--nets 12] [--steps 300]
        [--relaxed-cost templates|mapper] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from codax.search.acceldist import AccelDist, expected_term  # noqa: E402
from codax.search.config import load_config  # noqa: E402
from codax.search.hwcost import LayerTable  # noqa: E402
from codax.search.objective import HardwareObjective, budget_of  # noqa: E402
from codax.search.space import build_accel_space, build_network_space  # noqa: E402

SPACE = {
    "accelerator": {
        "rows": [8, 16, 32],
        "cols": [8, 16, 32],
        "buffer_kb": {"W": [32, 128], "I": [32, 128], "O": [16, 64]},
        "dataflow": ["weight-stationary", "output-stationary"],
        "double_buffer": [True, False],
    },
    "search": {"relaxed_cost": "templates", "relaxed": False, "mapping_candidates": 1},
}


def space_config(relaxed_cost: str) -> dict:
    """SPACE with the cost tables `relaxed_cost` names (`mapper`: the search's default tables)."""
    if relaxed_cost == "templates":
        return SPACE
    return {**SPACE, "search": {"relaxed_cost": "mapper", "objective": "latency"}}


DIGITS_STEPS_PER_EPOCH = 12  # architecture steps per epoch of the default digits search (719 / 64)
TINY = 1e-6


class Check:
    """Every fitting point's exact cost for any network of the space."""

    def __init__(self, relaxed_cost: str = "templates"):
        cfg = load_config(space_config(relaxed_cost))
        self.net = build_network_space(cfg, (1, 8, 8), 10)
        self.space = build_accel_space(cfg)
        self.bits = list(cfg.bits.choices)
        lt = LayerTable(self.net, self.bits)
        mapper = "latency" if relaxed_cost == "mapper" else None
        budget = budget_of(cfg, self.space)
        self.hw = HardwareObjective(
            self.net, self.space, lt, 1, budget, 1, relaxed=False, mapper_objective=mapper
        )
        self.dist = AccelDist(self.hw.feasible_points())
        self.points = [(self.dist.point(i),) for i in range(len(self.dist))]
        t0 = time.perf_counter()
        self.hw.tables([p[0] for p in self.points])
        self.table_seconds = time.perf_counter() - t0

    def random_network(self, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        O, nb = self.net.max_ops, len(self.bits)
        ops = [rng.randrange(len(u.ops)) for u in self.net.units]
        bw = [rng.randrange(nb) if u.searchable else nb - 1 for u in self.net.units]
        ba = [rng.randrange(nb) if u.searchable else nb - 1 for u in self.net.units]
        oh = lambda idx, k: torch.nn.functional.one_hot(torch.tensor(idx), k).float()  # noqa: E731
        return oh(ops, O), oh(bw, nb), oh(ba, nb)

    def costs(self, net) -> torch.Tensor:
        """[F] exact cycles of the network on every fitting point."""
        op_w, bw, ba = net
        pm = torch.ones(len(self.net.units), 3, 1)
        with torch.no_grad():
            return self.hw(op_w, bw, ba, pm, self.points).period_cycles.double()


def exact_changes(dist: AccelDist, logits, C: torch.Tensor) -> list[torch.Tensor]:
    """Per choice: [K_c] E_P[C | a_c = o] - E_P[C] (nan where P(a_c = o) = 0)."""
    p = dist.log_probs(logits).exp().double()
    mean = (p * C).sum()
    out = []
    for c, lg in enumerate(logits):
        col = dist.feasible[:, c]
        d = torch.full((lg.shape[0],), float("nan"), dtype=torch.float64)
        for o in range(lg.shape[0]):
            m = col == o
            if p[m].sum() > 0:
                d[o] = (p[m] * C[m]).sum() / p[m].sum() - mean
        out.append(d)
    return out


def sampled_grad(
    dist: AccelDist, logits, C: torch.Tensor, steps: int, gen: torch.Generator
) -> tuple[list, int]:
    """The search's estimator (acceldist.expected_term: two points drawn per step and their local
    expectations) summed over `steps` steps at fixed logits, from an empty cache (a fresh search's
    first steps); and how many points it evaluated."""
    lg = [t.clone().requires_grad_(True) for t in logits]
    known: list[int] = []
    for _ in range(steps):
        term, evaluated = expected_term(dist, lg, known, 2, gen, lambda ix: C[ix].float())
        term.backward()
        known = sorted(set(known) | set(evaluated))
    return [t.grad.double() for t in lg], len(known)


def exact_grad(dist: AccelDist, logits, C: torch.Tensor) -> list:
    lg = [t.clone().requires_grad_(True) for t in logits]
    (dist.log_probs(lg).exp() * C.float()).sum().backward()
    return [t.grad.double() for t in lg]


def linearised_grad(space, dist: AccelDist, logits, C: torch.Tensor) -> list:
    """The former relaxation: sum_c sum_o p_c(o) C(mode with c = o) / n (points over the budget at
    their cost, as it charged them), mode = the argmax of each choice."""
    lg = [t.clone().requires_grad_(True) for t in logits]
    probs = [torch.softmax(t, 0) for t in lg]
    mode = tuple(int(p.argmax()) for p in probs)
    where = {dist.point(i): i for i in range(len(dist))}
    n = len(lg)
    total = 0.0
    for c, p in enumerate(probs):
        for o in range(p.shape[0]):
            pt = mode[:c] + (o,) + mode[c + 1 :]
            if pt in where:  # a point over the budget has no exact cost here
                total = total + p[o] * float(C[where[pt]]) / n
    if isinstance(total, float):
        return [torch.zeros_like(t, dtype=torch.float64) for t in lg]
    total.backward()
    return [(t.grad if t.grad is not None else torch.zeros_like(t)).double() for t in lg]


def agreement(grads: list, changes: list, mean: float, floor: float = TINY) -> tuple[int, int, int]:
    """(agreeing, counted, left out): -grad and -change have the same sign, over the logits whose
    exact change exceeds `floor` x E_P[C]."""
    ok = n = skipped = 0
    for g, d in zip(grads, changes):
        for o in range(len(d)):
            if math.isnan(float(d[o])):
                continue
            if abs(float(d[o])) <= floor * mean:
                skipped += 1
                continue
            n += 1
            ok += int(float(g[o]) * float(d[o]) > 0)
    return ok, n, skipped


def descend(check: Check, C: torch.Tensor, steps: int, lr: float, gen: torch.Generator) -> tuple[int, int]:
    """Accelerator-only descent through the sampled estimator; (final mode's index, exact-best index)."""
    dist = check.dist
    lg = [torch.zeros(k, requires_grad=True) for k in check.space.sizes]
    opt = torch.optim.Adam(lg, lr=lr, betas=(0.5, 0.999))
    v = (C / C.mean()).float()  # the hardware term's scale (the search divides by a reference cost)
    known: list[int] = []
    for _ in range(steps):
        opt.zero_grad()
        term, evaluated = expected_term(dist, lg, known, 2, gen, lambda ix: v[ix])
        term.backward()
        opt.step()
        known = sorted(set(known) | set(evaluated))
    mode = dist.mode(lg)
    return [dist.point(i) for i in range(len(dist))].index(mode), int(torch.argmin(C))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--nets", type=int, default=12)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--relaxed-cost", choices=["templates", "mapper"], default="templates")
    ap.add_argument("--out", default=str(ROOT / "results" / "relaxation_check.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    check = Check(args.relaxed_cost)
    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)  # the cases' logits
    # the estimator's draws from a stream of their own: the cases are the same whatever an estimator
    # draws (a draw per step until the cache holds every point, so not a fixed count)
    draws = torch.Generator().manual_seed(args.seed + 1)
    dist = check.dist
    kinds = ["sampled_1", "sampled_4", "sampled_epoch", "sampled_64", "exact", "linearised"]
    tally = {k: [0, 0, 0] for k in kinds}
    floors = (1e-3, 1e-2)  # the same, over the logits whose exact change is at least this share of E[C]
    by_floor = {f: {k: [0, 0, 0] for k in kinds} for f in floors}
    cases = []
    for case in range(args.cases):
        net = check.random_network(rng)
        C = check.costs(net)
        scale = rng.uniform(0.3, 2.0)
        logits = [torch.randn(k, generator=gen) * scale for k in check.space.sizes]
        changes = exact_changes(dist, logits, C)
        p = dist.log_probs(logits).exp().double()
        mean = float((p * C).sum())
        epoch, evaluated = sampled_grad(dist, logits, C, DIGITS_STEPS_PER_EPOCH, draws)
        grads = {
            "sampled_1": sampled_grad(dist, logits, C, 1, draws)[0],
            "sampled_4": sampled_grad(dist, logits, C, 4, draws)[0],
            "sampled_epoch": epoch,
            "sampled_64": sampled_grad(dist, logits, C, 64, draws)[0],
            "exact": exact_grad(dist, logits, C),
            "linearised": linearised_grad(check.space, dist, logits, C),
        }
        row = {"case": case, "expected_cycles": mean, "points_evaluated_epoch": evaluated}
        for k, g in grads.items():
            a = agreement(g, changes, mean)
            for i in range(3):
                tally[k][i] += a[i]
            for f in floors:
                b = agreement(g, changes, mean, f)
                for i in range(3):
                    by_floor[f][k][i] += b[i]
            row[k] = a[0] / a[1] if a[1] else None
        cases.append(row)
    share = {k: v[0] / v[1] for k, v in tally.items()}
    print(f"{len(dist)} fitting points, tables {check.table_seconds:.1f} s")
    print("grad sign agreement: " + ", ".join(f"{k} {v:.3f}" for k, v in share.items()))
    nets = []
    for k in range(args.nets):
        C = check.costs(check.random_network(rng))
        got, best = descend(check, C, args.steps, args.lr, draws)
        ratio = float(C[got] / C[best])
        nets.append(
            {"net": k, "descent_cycles": float(C[got]), "best_cycles": float(C[best]), "ratio": ratio}
        )
        print(f"net {k}: descent {float(C[got]):,.0f} cycles, best {float(C[best]):,.0f} ({ratio - 1:+.2%})")
    gap = math.exp(sum(math.log(n["ratio"]) for n in nets) / len(nets)) - 1.0
    print(f"descent gap (geomean over {len(nets)} networks): {gap:+.2%}")
    summary = {
        "grad_sign_agreement": share["sampled_epoch"],
        "grad_sign_agreement_by_estimator": share,
        "grad_sign_agreement_by_floor": {
            str(f): {k: v[0] / v[1] if v[1] else None for k, v in t.items()} for f, t in by_floor.items()
        },
        "logits_counted_by_floor": {str(f): t["sampled_epoch"][1] for f, t in by_floor.items()},
        "logits_counted": tally["sampled_epoch"][1],
        "points_evaluated_epoch": sum(r["points_evaluated_epoch"] for r in cases) / len(cases),
        "logits_left_out_invisible": tally["sampled_epoch"][2],
        "descent_gap": gap,
        "descent_worst": max(n["ratio"] for n in nets) - 1.0,
        "networks": len(nets),
        "cases": args.cases,
        "fitting_points": len(dist),
        "steps_per_epoch": DIGITS_STEPS_PER_EPOCH,
        "descent_steps": args.steps,
        "descent_lr": args.lr,
        "table_seconds": check.table_seconds,
        "seconds": time.perf_counter() - t0,
    }
    out = {"summary": summary, "space": space_config(args.relaxed_cost), "cases": cases, "descent": nets}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
