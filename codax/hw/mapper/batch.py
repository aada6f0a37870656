"""Batched evaluation of many mappings of one layer on one engine.

The mapper never encodes points one by one: it encodes the layer and engine once (tensors of batch
size one, which `cost_core` broadcasts against the batch) and passes only the mapping tensors
(factor, rank, spatial, db) at batch size B, built in bulk as arrays. `cost_core` then scores the
whole batch; `CostOutputs.legal` (coverage + capacity) filters it. The evaluator keeps the
cost-model outputs of the best point it has scored, so the search's winner needs no second
evaluation to report its cost.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from codax.errors import ConfigError
from codax.hw.cost import CostOutputs, cost_core
from codax.hw.encode import CostInputs, encode_hardware, encode_layer
from codax.ir import DIMS, Accelerator, Layer, Mapping

OBJECTIVES: tuple[str, ...] = ("latency", "energy", "edp")
TIE = 1e-9  # weight of the secondary metric that breaks ties (latency ties are common when compute-bound)


@dataclass
class Points:
    """B mappings as arrays: which spatial option, temporal factors, loop ranks, double buffering."""

    sp: np.ndarray  # [B] index into the search's spatial options
    factor: np.ndarray  # [B, L, 8] trip counts, DRAM first
    rank: np.ndarray  # [B, L, 8] position of each dim in its level's order (0 = outermost)
    db: np.ndarray  # [B, L] 1 where double-buffered (never DRAM)

    def __len__(self) -> int:
        return len(self.sp)

    def take(self, idx) -> Points:
        return Points(self.sp[idx], self.factor[idx], self.rank[idx], self.db[idx])

    @staticmethod
    def concat(items: list[Points]) -> Points:
        return Points(*(np.concatenate([getattr(p, f.name) for p in items]) for f in fields(Points)))


@dataclass
class Scored:
    """A point with its score and its row of cost-model outputs (batch of one)."""

    score: float
    point: Points
    outputs: CostOutputs


def output_row(out: CostOutputs, i: int) -> CostOutputs:
    """Row i of a batch of cost-model outputs, as a batch of one (copied: a view would keep the
    whole batch's outputs alive)."""
    return CostOutputs(**{f.name: getattr(out, f.name)[i : i + 1].clone() for f in fields(out)})


class Evaluator:
    """Scores batches of Points for one (layer, engine, objective); counts every point evaluated."""

    def __init__(
        self,
        layer: Layer,
        accel: Accelerator,
        engine: str | None,
        objective: str,
        spatial_options: list[dict[str, tuple[str, int]]],
        chunk: int = 8192,
        keep: int = 1,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ConfigError(f"objective {objective!r} is not one of {OBJECTIVES}")
        self.layer, self.accel, self.objective, self.chunk = layer, accel, objective, chunk
        self.engine = accel.engine(engine)
        self.names = self.engine.level_names
        self.options = spatial_options
        self.spatial = np.array(
            [[float(_spatial_factor(sp, d)) for d in DIMS] for sp in spatial_options], dtype=np.float64
        ).reshape(len(spatial_options), len(DIMS))
        # the layer's and the engine's tensors, batch size one: shared by every point of a batch
        self.shared = {**encode_layer(layer), **encode_hardware(accel, self.engine.name, layer)}
        pes = self.engine.pe_array.pes
        # scales for the tie-break term: the compute bound and the MAC energy, both > 0
        self._c_ref = max(layer.macs / pes, 1.0)
        self._e_ref = max(layer.macs * float(self.shared["e_mac"][0]), 1e-12)
        self.evaluated = 0
        self.best: Scored | None = None  # the best point scored so far, with its outputs
        # the `keep` best points scored so far (for a second opinion on the search's front runners)
        self.keep = keep
        self._top_scores = np.empty(0)
        self._top_points: Points | None = None

    def _inputs(self, pts: Points) -> CostInputs:
        return CostInputs(
            **self.shared,
            factor=torch.from_numpy(np.ascontiguousarray(pts.factor, dtype=np.float64)),
            rank=torch.from_numpy(np.ascontiguousarray(pts.rank, dtype=np.float64)),
            spatial=torch.from_numpy(self.spatial[pts.sp]),
            db=torch.from_numpy(np.ascontiguousarray(pts.db, dtype=np.float64)),
        )

    def outputs(self, pts: Points) -> CostOutputs:
        """The raw cost-model outputs of a (small) batch; counted as evaluated."""
        self.evaluated += len(pts)
        with torch.no_grad():
            return cost_core(self._inputs(pts))

    def score(self, pts: Points) -> np.ndarray:
        """The objective of every point (with a tiny tie-break), +inf where illegal. Remembers the
        first best point (lowest score, earliest on ties) and its cost-model outputs."""
        out = np.empty(len(pts))
        for a in range(0, len(pts), self.chunk):
            part = pts.take(slice(a, a + self.chunk))
            o = self.outputs(part)
            cyc, en = o.cycles.numpy(), o.energy_pj.numpy()
            if self.objective == "latency":
                s = cyc * (1.0 + TIE * en / self._e_ref)
            elif self.objective == "energy":
                s = en * (1.0 + TIE * cyc / self._c_ref)
            else:
                s = cyc * en
            s = np.where(o.legal.numpy(), s, np.inf)
            out[a : a + len(s)] = s
            i = int(np.argmin(s))
            if np.isfinite(s[i]) and (self.best is None or s[i] < self.best.score):
                self.best = Scored(float(s[i]), part.take(slice(i, i + 1)), output_row(o, i))
            if self.keep > 1:
                self._remember(s, part)
        return out

    def _remember(self, s: np.ndarray, part: Points) -> None:
        """Merge a scored chunk into the `keep` best points (earlier points first on ties)."""
        fin = np.nonzero(np.isfinite(s))[0]
        if not len(fin):
            return
        k = min(self.keep, len(fin))
        idx = np.sort(fin[np.argpartition(s[fin], k - 1)[:k]])
        scores = np.concatenate([self._top_scores, s[idx]])
        pts = (
            part.take(idx) if self._top_points is None else Points.concat([self._top_points, part.take(idx)])
        )
        order = np.argsort(scores, kind="stable")[: self.keep]
        self._top_scores, self._top_points = scores[order], pts.take(order)

    def ranked(self) -> list[tuple[float, Points]]:
        """The best points scored so far (up to `keep`), best first, each as a batch of one."""
        if self._top_points is None:
            return [] if self.best is None else [(self.best.score, self.best.point)]
        return [(float(v), self._top_points.take(slice(i, i + 1))) for i, v in enumerate(self._top_scores)]

    def outputs_of(self, pt: Points) -> CostOutputs:
        """The cost-model outputs of one point (batch of one): those kept from its scoring when it is
        the best point seen, else a fresh evaluation (not counted: the point was scored before).
        Points are compared as mappings: ranks of inactive loops (factor 1) do not change the cost."""
        if self.best is not None and self.to_mapping(self.best.point) == self.to_mapping(pt):
            return self.best.outputs
        with torch.no_grad():
            return cost_core(self._inputs(pt))

    def to_mapping(self, pts: Points, i: int = 0) -> Mapping:
        """Point i as an ir.Mapping: factor-1 loops omitted, each level's active loops in rank order."""
        fac, rank = pts.factor[i], pts.rank[i]
        tiles, order = {}, {}
        for li, lv in enumerate(self.names):
            active = [d for di, d in enumerate(DIMS) if fac[li, di] > 1]
            tiles[lv] = {d: int(fac[li, DIMS.index(d)]) for d in active}
            order[lv] = sorted(active, key=lambda d: rank[li, DIMS.index(d)])
        return Mapping(
            layer=self.layer.name,
            engine=self.engine.name,
            spatial=dict(self.options[int(pts.sp[i])]),
            tiles=tiles,
            order=order,
            double_buffer={lv: bool(pts.db[i, li]) for li, lv in enumerate(self.names) if li > 0},
        )


def _spatial_factor(sp: dict[str, tuple[str, int]], dim: str) -> int:
    f = 1
    for d, k in sp.values():
        if d == dim:
            f *= k
    return f


def identity_rank(levels: int) -> np.ndarray:
    """[L, 8] ranks of the DIMS order at every level."""
    return np.tile(np.arange(len(DIMS), dtype=np.float64), (levels, 1))


def scan(ev: Evaluator, stream, chunk: int | None = None) -> tuple[float, Points | None]:
    """Score a stream of Points in batches of about `chunk` (few cost-model calls, bounded memory);
    return the best score and point (None when nothing legal was seen)."""
    chunk = chunk or ev.chunk
    best_s, best_p = np.inf, None
    buf: list[Points] = []
    size = 0

    def flush() -> None:
        nonlocal best_s, best_p, buf, size
        if not buf:
            return
        pts = Points.concat(buf)
        s = ev.score(pts)
        i = int(np.argmin(s))
        if s[i] < best_s:
            best_s, best_p = float(s[i]), pts.take(slice(i, i + 1))
        buf, size = [], 0

    for p in stream:
        buf.append(p)
        size += len(p)
        if size >= chunk:
            flush()
    flush()
    return best_s, best_p
