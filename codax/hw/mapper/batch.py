"""Batched evaluation of many mappings of one layer on one engine.

The mapper never encodes points one by one: it encodes the layer and engine once (a batch of one)
and expands that point to B rows, replacing only the mapping tensors (factor, rank, spatial, db)
with arrays it built in bulk. `cost_core` then scores the whole batch; `CostOutputs.legal`
(coverage + capacity) filters it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from codax.errors import ConfigError
from codax.hw.cost import CostOutputs, cost_core
from codax.hw.encode import CostInputs, encode
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
        self.base = encode(layer, accel, Mapping(layer=layer.name, engine=self.engine.name))
        pes = self.engine.pe_array.pes
        # scales for the tie-break term: the compute bound and the MAC energy, both > 0
        self._c_ref = max(layer.macs / pes, 1.0)
        self._e_ref = max(layer.macs * float(self.base.e_mac[0]), 1e-12)
        self.evaluated = 0

    def _inputs(self, pts: Points) -> CostInputs:
        B = len(pts)
        fixed = {
            f.name: getattr(self.base, f.name).expand(B, *getattr(self.base, f.name).shape[1:])
            for f in fields(self.base)
        }
        fixed.update(
            factor=torch.from_numpy(np.ascontiguousarray(pts.factor, dtype=np.float64)),
            rank=torch.from_numpy(np.ascontiguousarray(pts.rank, dtype=np.float64)),
            spatial=torch.from_numpy(self.spatial[pts.sp]),
            db=torch.from_numpy(np.ascontiguousarray(pts.db, dtype=np.float64)),
        )
        return CostInputs(**fixed)

    def outputs(self, pts: Points) -> CostOutputs:
        """The raw cost-model outputs of a (small) batch; counted as evaluated."""
        self.evaluated += len(pts)
        with torch.no_grad():
            return cost_core(self._inputs(pts))

    def score(self, pts: Points) -> np.ndarray:
        """The objective of every point (with a tiny tie-break), +inf where illegal."""
        out = np.empty(len(pts))
        for a in range(0, len(pts), self.chunk):
            o = self.outputs(pts.take(slice(a, a + self.chunk)))
            cyc, en = o.cycles.numpy(), o.energy_pj.numpy()
            if self.objective == "latency":
                s = cyc * (1.0 + TIE * en / self._e_ref)
            elif self.objective == "energy":
                s = en * (1.0 + TIE * cyc / self._c_ref)
            else:
                s = cyc * en
            out[a : a + len(s)] = np.where(o.legal.numpy(), s, np.inf)
        return out

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
