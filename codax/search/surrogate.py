"""DANCE mode: a small MLP learns the cost oracle, and the search differentiates through it.

The oracle maps (layer, bitwidths, accelerator point) to (cycles, energy pJ). Oracles:
- `codax`: the search's own cost tables (the exact mapper's mapping of the layer on the point,
  `search.relaxed_cost: mapper`, or the fastest template), sampled over the accelerator space:
  `surrogate.samples` (layer, bits, point) rows, one layer per point, so a few hundred of the
  accelerator points are seen;
- `csv:<path>`: a user table with columns N,G,K,C,P,Q,R,S,stride,w_bits,a_bits,rows,cols,buf_W,
  buf_I,buf_O,dataflow,double_buffer,cycles,energy_pj (buffer sizes in KB, e.g. measured or from
  another tool);
- `<module>:<function>`: a callable taking a list of samples ({"layer": ir.Layer, "accel": dict of
  the accelerator choices, "cfg": option indices}) and returning [[cycles, energy_pj], ...] --
  how a ZigZag or Timeloop bridge plugs in.
The error reported is on accelerator points the MLP never saw (20% of the points held out, all of
their samples), per sample and, for the `codax` oracle, per network (a random network's summed
cycles on a held-out point): the designs the search will meet are mostly unseen ones.

The MLP sees a layer as its log2 dims and stride, the bitwidths as widths / 8 and an accelerator
point as the one-hot vectors of its choices plus the log2 of its numeric choices (array rows and
columns, buffer sizes: an unseen point is an interpolation in them). The search queries it only at
such points, where it was trained: the hardware term is E_P[f(a)] over the accelerator
distribution P (acceldist.py), every fitting point enumerated in one batched pass (up to
EXACT_POINTS of them; beyond, points drawn from P as for the analytic tables), so gradients reach
the accelerator logits through P and the bit and (through the op mixing) network logits through
the MLP's width inputs (the expected widths) and the op weights. Querying it at a soft point (the
expected one-hot vectors inside the simplex) would ask it about accelerators it never saw.
"""

from __future__ import annotations

import csv
import importlib
import math
import random
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from codax.errors import ConfigError
from codax.ir import DIMS
from codax.search.space import AccelSpace

if TYPE_CHECKING:
    from codax.search.cosearch import CoSearch

_D = {d: i for i, d in enumerate(DIMS)}


def layer_features(bound: torch.Tensor, stride: torch.Tensor) -> torch.Tensor:
    """[..., 8] dims, [...] stride -> [..., 9] (log2 dims, stride)."""
    return torch.cat([torch.log2(bound), stride.unsqueeze(-1)], -1)


NUMERIC = ("rows", "cols", "buf_W", "buf_I", "buf_O")  # choices whose values the MLP sees as log2
EXACT_POINTS = 4096  # fitting points up to which the surrogate term enumerates them all: the default
# space's 864 points x 82 sub-layers are 71k MLP rows, one batched pass per architecture step
FEATURE_CACHE = 64  # point lists whose features are kept (the enumeration, the derived designs' points)


def point_features(space: AccelSpace, cfg: tuple[int, ...]) -> torch.Tensor:
    """An accelerator point as the MLP sees it: each choice's one-hot vector, then the log2 of the
    numeric choices' values."""
    onehot = [torch.nn.functional.one_hot(torch.tensor(c), k).float() for c, k in zip(cfg, space.sizes)]
    logs = [
        math.log2(float(opts[c])) for name, opts, c in zip(space.names, space.options, cfg) if name in NUMERIC
    ]
    return torch.cat([*onehot, torch.tensor(logs)])


class CostMLP(nn.Module):
    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2)
        )
        self.register_buffer("mu", torch.zeros(2))
        self.register_buffer("sd", torch.ones(2))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """(cycles, energy pJ), positive."""
        return torch.exp(self.net(f) * self.sd + self.mu)


LAYERS_PER_POINT = 1  # layers sampled per accelerator point (each at every bit combination): one mapper
# search per (layer, point) either way, so one layer per point covers the most of the accelerator space
DESIGN_CHECKS = 40  # random networks on held-out points whose summed cycles the report compares


def _codax_samples(cs: CoSearch, n: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, list]:
    """About n (layer, bits, point) samples of the search's cost tables: LAYERS_PER_POINT random
    layers per random accelerator point, each at every bit combination."""
    lt, space = cs.lt, cs.space
    B = lt.wb.shape[-1]
    cfgs = space.all_configs()
    per_point = min(LAYERS_PER_POINT, len(lt.layers))
    points = rng.sample(cfgs, min(len(cfgs), math.ceil(n / (per_point * B))))
    lf = layer_features(lt.bound.float(), lt.stride[:, 0].float())  # [n, 9]
    bits = torch.stack([lt.wb, lt.ab], -1).float() / 8.0  # [B, 2]
    feats, ys, groups = [], [], []
    for cfg in points:
        rows = rng.sample(range(len(lt.layers)), per_point)
        y = cs.hw.point_costs(cfg, rows)  # [r, B, 2]
        af = point_features(space, cfg)
        for j, i in enumerate(rows):
            feats.append(torch.cat([lf[i].expand(B, -1), bits, af.expand(B, -1)], -1))
            ys.append(y[j])
            groups += [cfg] * B
    return torch.cat(feats), torch.cat(ys).float(), groups


def _csv_samples(path: str, space: AccelSpace) -> tuple[torch.Tensor, torch.Tensor, list]:
    feats, ys, groups = [], [], []
    with open(path) as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            try:
                bound = torch.tensor([float(row[d]) for d in DIMS])
                cfg = []
                for name, opts in zip(space.names, space.options):
                    v = row[name]
                    vals = [str(o).lower() for o in opts]
                    if v.lower() not in vals:
                        v = str(type(opts[0])(float(v))) if not isinstance(opts[0], (bool, str)) else v
                    cfg.append(vals.index(v.lower()))
                f = torch.cat(
                    [
                        layer_features(bound, torch.tensor(float(row["stride"]))),
                        torch.tensor([float(row["w_bits"]) / 8, float(row["a_bits"]) / 8]),
                        point_features(space, tuple(cfg)),
                    ]
                )
                feats.append(f)
                ys.append([float(row["cycles"]), float(row["energy_pj"])])
                groups.append(tuple(cfg))
            except (KeyError, ValueError) as e:
                raise ConfigError(
                    f"surrogate.oracle csv {path} row {i + 2}: {e!r}; see codax/search/surrogate.py "
                    "for the columns and use values from the accelerator options"
                ) from None
    if not feats:
        raise ConfigError(f"surrogate.oracle csv {path}: no rows")
    return torch.stack(feats), torch.tensor(ys), groups


def _callable_samples(
    spec: str, cs: CoSearch, n: int, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor, list]:
    mod, _, fn = spec.partition(":")
    try:
        oracle = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"surrogate.oracle {spec!r}: cannot import ({e}); use codax, csv:<path> or <module>:<function>"
        ) from None
    lt, space = cs.lt, cs.space
    samples, feats, groups = [], [], []
    cfgs = space.all_configs()
    for _ in range(n):
        li, b, cfg = rng.randrange(len(lt.layers)), rng.randrange(lt.wb.shape[0]), rng.choice(cfgs)
        from codax.ir import Precision

        wb, ab = int(lt.wb[b]), int(lt.ab[b])
        layer = lt.layers[li].with_(precision=Precision(weight=wb, act=ab, acc=32, out=ab))
        samples.append({"layer": layer, "accel": space.describe(cfg), "cfg": cfg})
        groups.append(cfg)
        feats.append(
            torch.cat(
                [
                    layer_features(lt.bound[li].float(), lt.stride[li, 0].float()),
                    torch.tensor([wb / 8, ab / 8]),
                    point_features(space, cfg),
                ]
            )
        )
    y = torch.tensor(np.asarray(oracle(samples), dtype=np.float64), dtype=torch.float32)
    return torch.stack(feats), y, groups


def _ape(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (pred - y).abs() / y.clamp(min=1e-6)


def train_mlp(
    f: torch.Tensor, y: torch.Tensor, groups: list, hidden: int, epochs: int, lr: float, seed: int
) -> tuple[CostMLP, dict, set]:
    """Fit log-costs on 80% of the accelerator points (`groups`: each sample's point); report the
    absolute percentage error on the samples of the other 20%, which the MLP never saw. Returns
    the model, the report and the held-out points."""
    g = torch.Generator().manual_seed(seed)
    points = list(dict.fromkeys(groups))
    order = torch.randperm(len(points), generator=g).tolist()
    held = {points[i] for i in order[: max(1, len(points) // 5)]} if len(points) > 1 else set()
    is_te = torch.tensor([gr in held for gr in groups])
    te, tr = torch.nonzero(is_te).flatten(), torch.nonzero(~is_te).flatten()
    if len(te) == 0:  # one point only: hold out samples instead
        perm = torch.randperm(len(f), generator=g)
        te, tr = perm[: max(1, len(f) // 5)], perm[max(1, len(f) // 5) :]
    ly = torch.log(y.clamp(min=1e-6))
    m = CostMLP(f.shape[1], hidden)
    m.mu.copy_(ly[tr].mean(0))
    m.sd.copy_(ly[tr].std(0).clamp(min=1e-3))
    target = (ly - m.mu) / m.sd
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    torch.manual_seed(seed)
    for _ in range(epochs):
        for idx in tr[torch.randperm(len(tr), generator=g)].split(256):
            loss = nn.functional.mse_loss(m.net(f[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        err = _ape(m(f[te]), y[te])
    return (
        m.eval(),
        {
            "heldout_median_ape_cycles": float(err[:, 0].median()),
            "heldout_median_ape_energy": float(err[:, 1].median()),
            "heldout_mape_cycles": float(err[:, 0].mean()),
            "heldout_mape_energy": float(err[:, 1].mean()),
            "train_samples": len(tr),
            "heldout_samples": len(te),
            "train_points": len(points) - len(held),
            "heldout_points": len(held),
        },
        held,
    )


class SurrogateCost:
    """The hardware term's per-layer costs from the MLP, at accelerator points: the
    HardwareObjective.surrogate callable. Per sub-layer of the given units the MLP's (cycles,
    energy) on every point asked for, in one batched pass, with the bitwidths as the units'
    expected widths (differentiable in the bit weights)."""

    def __init__(self, model: CostMLP, cs: CoSearch, heldout_points: set):
        lt, dev = cs.lt, cs.device
        self.model, self.space, self.device = model.to(dev), cs.space, dev
        self.heldout_points = heldout_points  # the accelerator points whose samples the MLP never saw
        self.exact_points = EXACT_POINTS
        self.lf = layer_features(lt.bound.float(), lt.stride[:, 0].float()).to(dev)  # [n, 9]
        self.choices = torch.tensor(lt.bits, dtype=torch.float32, device=dev)
        self.index = lt.index.to(dev)  # [U, O, S] table rows of each unit's sub-layers, -1: none
        self._feats: dict[tuple, torch.Tensor] = {}  # features of the point lists asked for lately

    def known(self, n_points: int, known_points: list[int]) -> list[int]:
        """The fitting points the term takes exactly: all of them up to `exact_points`, else (a
        bounded share of) the ones drawn so far, as for the analytic tables (acceldist.py)."""
        if n_points <= self.exact_points:
            return list(range(n_points))
        return known_points[: self.exact_points]

    def point_features(self, cfgs: list[tuple]) -> torch.Tensor:
        """[V, A] features of the points (kept: the search asks for the same points every step)."""
        key = tuple(cfgs)
        if key not in self._feats:
            if len(self._feats) >= FEATURE_CACHE:
                self._feats.clear()
            self._feats[key] = torch.stack([point_features(self.space, c) for c in cfgs]).to(self.device)
        return self._feats[key]

    def __call__(self, units: list[int], p_w, p_a, cfgs: list[tuple]) -> torch.Tensor:
        """[len(cfgs), len(units), O, S, 2] (cycles, energy pJ) of each op's sub-layers on each
        point (0 where a unit's op has fewer sub-layers)."""
        idx = self.index[units]  # [u, O, S]
        valid = idx >= 0
        unit_of = torch.arange(len(units), device=idx.device).view(-1, 1, 1).expand_as(idx)[valid]  # [k]
        widths = torch.stack([(p_w[units] * self.choices).sum(-1), (p_a[units] * self.choices).sum(-1)], -1)
        layer = torch.cat([self.lf[idx[valid]], widths[unit_of] / 8.0], -1)  # [k, 11]
        acc = self.point_features(list(cfgs))  # [V, A]
        V, k = acc.shape[0], layer.shape[0]
        f = torch.cat([layer.unsqueeze(0).expand(V, k, -1), acc.unsqueeze(1).expand(V, k, -1)], -1)
        out = layer.new_zeros(V, *idx.shape, 2)
        out[:, valid] = self.model(f)
        return out


def fit_surrogate(cs: CoSearch) -> tuple[SurrogateCost, CostMLP, dict]:
    """Sample the oracle and train the MLP. Returns the hardware term's per-layer costs (for
    HardwareObjective.surrogate), the model and the report (held-out errors)."""
    s = cs.cfg.surrogate
    rng = random.Random(cs.seed)
    t0 = time.perf_counter()
    spec = str(s.oracle)
    n = int(s.samples)
    if spec == "codax":
        f, y, groups = _codax_samples(cs, n, rng)
    elif spec.startswith("csv:"):
        f, y, groups = _csv_samples(spec[4:], cs.space)
    elif ":" in spec:
        f, y, groups = _callable_samples(spec, cs, n, rng)
    else:
        raise ConfigError(f"surrogate.oracle {spec!r} must be codax, csv:<path> or <module>:<function>")
    sample_s = time.perf_counter() - t0
    model, rep, held = train_mlp(f, y, groups, int(s.hidden), int(s.epochs), float(s.lr), cs.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    cost = SurrogateCost(model, cs, held)
    train_s = time.perf_counter() - t0 - sample_s
    if spec == "codax" and held:
        rep.update(_design_check(cs, cost, sorted(held), rng))
    return (
        cost,
        model,
        {"oracle": spec, "samples": len(f), "sample_seconds": sample_s, "train_seconds": train_s, **rep},
    )


def _design_check(cs: CoSearch, cost: SurrogateCost, held: list[tuple], rng: random.Random) -> dict:
    """Summed cycles of random networks on held-out points: surrogate against the oracle."""
    lt, net = cs.lt, cs.net
    nb = len(lt.bits)
    errs = []
    for k in range(DESIGN_CHECKS):
        cfg = held[k % len(held)]
        ops = [rng.randrange(len(u.ops)) for u in net.units]
        bi = [(rng.randrange(nb), rng.randrange(nb)) if u.searchable else (nb - 1, nb - 1) for u in net.units]
        rows = [
            (int(lt.index[u, o, sl]), w * nb + a)
            for u, (o, (w, a)) in enumerate(zip(ops, bi))
            for sl in range(3)
        ]
        rows = [(i, b) for i, b in rows if i >= 0]
        layers = sorted({i for i, _ in rows})
        y = cs.hw.point_costs(cfg, layers)  # [r, B, 2]
        oracle = sum(float(y[layers.index(i), b, 0]) for i, b in rows)
        U = len(net.units)
        onehot = lambda idx, k: torch.nn.functional.one_hot(torch.tensor(idx), k).float().to(cs.device)  # noqa: E731
        p_w, p_a = onehot([w for w, _ in bi], nb), onehot([a for _, a in bi], nb)
        with torch.no_grad():
            C = cost(list(range(U)), p_w, p_a, [cfg])[0].sum(2)  # [U, O, 2]
        pred = float(sum(C[u, o, 0] for u, o in enumerate(ops)))
        errs.append(abs(pred / oracle - 1.0))
    return {"heldout_designs": len(errs), "heldout_design_median_ape_cycles": float(np.median(errs))}
