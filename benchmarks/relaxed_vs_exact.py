"""Does the cost the search descends agree with the cost of what it derives?

Random (network, bitwidths, accelerator) designs of the default space (`small8` on 8x8 inputs) and
of the 22-block space (`cifar22` on 32x32 inputs), accelerator points drawn from those that fit the
ZC706 budget, half of them weight-stationary and half output-stationary (every dataflow the space
offers). For each design:
- relaxed: the search's hardware term at the design's one-hot probabilities (`HardwareObjective`,
  the cost tables the search contracts), with the default tables (`search.relaxed_cost: mapper`,
  the exact mapper's mapping of every supernet layer on the point) and with the fixed mapping
  templates (`templates`, the former default) for comparison;
- exact: the derived network's layers mapped by the exact mapper (`map_graph`) at their own
  widths and evaluated by the exact model (what `CoSearch.exact` reports).
Each accelerator point carries `--nets` random networks (a table is built per point, as the search
builds it). Writes benchmarks/results/relaxed_vs_exact.json: per design the cycles, and a summary
of median |relaxed / exact - 1| and the Spearman rank correlation of relaxed and exact cycles,
overall, per space and per dataflow. Targets: median <= 10%, Spearman >= 0.9.

    .venv/bin/python benchmarks/relaxed_vs_exact.py [--points 50] [--nets 2]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from codax.search.config import load_config  # noqa: E402
from codax.search.derive import Design, build_graph, exact_cost  # noqa: E402
from codax.search.hwcost import LayerTable, onehot_probs  # noqa: E402
from codax.search.objective import HardwareObjective, budget_of  # noqa: E402
from codax.search.space import build_accel_space, build_accelerator, build_network_space  # noqa: E402

SPACES = {
    "default": ({}, (1, 8, 8)),
    "cifar22": ({"network": {"preset": "cifar22"}}, (3, 32, 32)),
}


class Space:
    """The search's network and accelerator spaces and its hardware term, without data or supernet."""

    def __init__(self, user: dict, shape: tuple[int, int, int]):
        self.cfg = load_config(user)
        self.net = build_network_space(self.cfg, shape, 10)
        self.space = build_accel_space(self.cfg)
        self.bits = list(self.cfg.bits.choices)
        self.lt = LayerTable(self.net, self.bits)
        budget = budget_of(self.cfg, self.space)
        self.hw = {
            kind: HardwareObjective(
                self.net,
                self.space,
                self.lt,
                1,
                budget,
                3,
                True,
                10.0,
                "latency" if kind == "mapper" else None,
            )
            for kind in ("mapper", "templates")
        }

    def relaxed_cycles(self, d: Design, kind: str) -> float:
        import torch.nn.functional as F

        U, O = len(self.net.units), self.net.max_ops
        bi = {b: i for i, b in enumerate(self.bits)}
        op = F.one_hot(torch.tensor(d.ops), O).float()
        bw = F.one_hot(torch.tensor([bi[b[0]] for b in d.bits]), len(self.bits)).float()
        ba = F.one_hot(torch.tensor([bi[b[1]] for b in d.bits]), len(self.bits)).float()
        hw = self.hw[kind]
        # templates: each layer on its best template (the search's mapping logits would learn it)
        pm = torch.zeros(U, 3, 3)
        T = hw.tables([d.accel[0]])[0]  # [n, B, M, 2]
        for u, (o, (w, a)) in enumerate(zip(d.ops, d.bits)):
            for s in range(3):
                i = int(self.lt.index[u, o, s])
                if i >= 0:
                    pm[u, s, int(T[i, bi[w] * len(self.bits) + bi[a], :, 0].argmin())] = 1.0
                else:
                    pm[u, s, 0] = 1.0
        with torch.no_grad():
            est = hw(op, bw, ba, pm, [onehot_probs(self.space, d.accel[0])])
        return float(est.period_cycles)

    def exact_cycles(self, d: Design) -> float:
        graph, engines = build_graph(self.net, d)
        accel = build_accelerator(self.space, d.accel)
        _, cost, _ = exact_cost(graph, accel, engines, "latency")
        return float(cost.period_cycles)

    def random_network(self, rng: random.Random, point: tuple) -> Design:
        ops = [rng.randrange(len(u.ops)) for u in self.net.units]
        fl = self.cfg.bits.first_last
        bits = [
            (rng.choice(self.bits), rng.choice(self.bits)) if u.searchable else (fl, fl)
            for u in self.net.units
        ]
        return Design(ops, bits, [point])


def stats(rows: list[dict], key: str) -> dict:
    err = [abs(r[key] / r["exact_cycles"] - 1.0) for r in rows]
    rho = (
        spearmanr([r[key] for r in rows], [r["exact_cycles"] for r in rows]).statistic
        if len(rows) > 2
        else None
    )
    signed = [r[key] / r["exact_cycles"] - 1.0 for r in rows]
    return {
        "designs": len(rows),
        "median_abs_err": statistics.median(err),
        "p90_abs_err": sorted(err)[int(0.9 * (len(err) - 1))],
        "min_rel_err": min(signed),
        "max_rel_err": max(signed),
        "spearman": None if rho is None else float(rho),
    }


def summary(rows: list[dict], key: str) -> dict:
    out = stats(rows, key)
    out["per_space"] = {s: stats([r for r in rows if r["space"] == s], key) for s in SPACES}
    out["per_dataflow"] = {
        df: stats([r for r in rows if r["dataflow"] == df], key)
        for df in sorted({r["dataflow"] for r in rows})
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=50, help="accelerator points per space")
    ap.add_argument("--nets", type=int, default=2, help="random networks per point")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "results" / "relaxed_vs_exact.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    rows = []
    t0 = time.perf_counter()
    for name, (user, shape) in SPACES.items():
        sp = Space(user, shape)
        feasible = [c for c in sp.space.all_configs() if sp.hw["mapper"].fits(c)]
        by_df: dict[str, list[tuple]] = {}
        for c in feasible:
            by_df.setdefault(sp.space.describe(c)["dataflow"], []).append(c)
        dfs = sorted(by_df)
        for k in range(args.points):
            point = rng.choice(by_df[dfs[k % len(dfs)]])
            for _ in range(args.nets):
                d = sp.random_network(rng, point)
                ex = sp.exact_cycles(d)
                row = {
                    "space": name,
                    "dataflow": sp.space.describe(point)["dataflow"],
                    "accelerator": sp.space.describe(point),
                    "exact_cycles": ex,
                    "relaxed_cycles": sp.relaxed_cycles(d, "mapper"),
                    "template_cycles": sp.relaxed_cycles(d, "templates"),
                }
                rows.append(row)
            r = rows[-1]
            print(
                f"{name:8s} {k + 1:3d}/{args.points} {r['dataflow']:18s} exact {r['exact_cycles']:12,.0f}  "
                f"relaxed {r['relaxed_cycles'] / r['exact_cycles'] - 1:+7.1%}  "
                f"templates {r['template_cycles'] / r['exact_cycles'] - 1:+8.1%}  "
                f"{time.perf_counter() - t0:6.0f} s",
                flush=True,
            )
    res = {
        "summary": {**summary(rows, "relaxed_cycles"), "templates": summary(rows, "template_cycles")},
        "targets": {"median_abs_err": 0.10, "spearman": 0.9},
        "seconds": time.perf_counter() - t0,
        "designs": rows,
    }
    s = res["summary"]
    res["summary"]["meets_targets"] = s["median_abs_err"] <= 0.10 and s["spearman"] >= 0.9
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    for label, st in (("mapper table", s), ("templates", s["templates"])):
        print(
            f"{label:13s} median |relaxed/exact - 1| {st['median_abs_err']:.1%}  "
            f"spearman {st['spearman']:.3f}"
        )
        for df, v in st["per_dataflow"].items():
            print(
                f"  {df:18s} median {v['median_abs_err']:.1%}  spearman {v['spearman'] or float('nan'):.3f}  "
                f"n={v['designs']}"
            )
    print(f"targets (median <= 10%, spearman >= 0.9): {'met' if s['meets_targets'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
