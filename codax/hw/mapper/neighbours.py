"""Neighbourhoods of mappings for the local search, built in bulk with numpy.

A neighbour differs from its point by one move:
- a factor move: one dim's factor at one on-chip level jumps to a nearby tile size (the absorbing
  level, normally DRAM, covers the rest of the dim; or the next outer on-chip level compensates so
  that their product stays);
- an order move: one level's loop order becomes another order class of its active loops;
- a double-buffering toggle at one on-chip level;
- a switch to another spatial option (factors re-completed for what it leaves).
Factors are kept tight (`LevelModel.complete`). Every move kind is built for all points at once
(per dim and level, per group of points sharing a candidate list), so the cost of a neighbourhood
is a few dozen numpy calls whatever the number of points. `owner` tells which input point each
neighbour came from.
"""

from __future__ import annotations

import numpy as np

from codax.hw.mapper.batch import Points
from codax.hw.mapper.space import full_rank, order_classes
from codax.hw.mapper.tiling import LevelModel, candidates
from codax.ir import DIMS

WINDOW = 4  # tile sizes on each side of the current one that a factor move may jump to
_BITS = 1 << np.arange(len(DIMS))


def active_mask(factor_level: np.ndarray) -> np.ndarray:
    """[n] bitmask of the active loops (factor > 1) of one level, bit i for DIMS[i]."""
    return (factor_level > 1).astype(np.int64) @ _BITS


def mask_dims(mask: int) -> tuple[str, ...]:
    return tuple(d for i, d in enumerate(DIMS) if mask >> i & 1)


class Neighbourhood:
    """Builds the one-move neighbours of batches of points for one layer on one engine."""

    def __init__(
        self,
        model: LevelModel,
        spatial: np.ndarray,
        levels: list[tuple[int, tuple[str, ...]]],
        window: int = WINDOW,
    ) -> None:
        self.model, self.levels, self.window = model, levels, window
        self.L = model.L
        self.rem0 = np.stack([model.remaining(s) for s in spatial]).astype(np.float64)  # [options, 8]
        self.n_options = len(spatial)
        self._ranks: dict[tuple[int, tuple[str, ...]], np.ndarray] = {}
        self._cands: dict[int, np.ndarray] = {}

    # --- cached tables ------------------------------------------------------------------------------
    def class_ranks(self, mask: int, ops: tuple[str, ...], dram: bool = False) -> np.ndarray:
        """[C, 8] full ranks of the order classes of the loops in `mask` (see space.order_classes;
        `dram`: the DRAM level's)."""
        key = (mask, ops, dram)
        if key not in self._ranks:
            self._ranks[key] = np.array(
                [full_rank(o) for o in order_classes(mask_dims(mask), ops, dram)], dtype=np.float64
            ).reshape(-1, len(DIMS))
        return self._ranks[key]

    def _candidates(self, rem: int) -> np.ndarray:
        if rem not in self._cands:
            self._cands[rem] = np.array(candidates(max(rem, 1), self.model.exact_tiles), dtype=np.float64)
        return self._cands[rem]

    # --- helpers ------------------------------------------------------------------------------------
    def complete(self, pts: Points, owner: np.ndarray) -> tuple[Points, np.ndarray]:
        """Tighten the neighbours' factors (see LevelModel.complete) and drop those that are no
        legal tiling (exact tiles that do not divide)."""
        _, ok = self.model.complete(pts.factor, self.rem0[pts.sp])
        if ok.all():
            return pts, owner
        keep = np.nonzero(ok)[0]
        return pts.take(keep), owner[keep]

    # --- move kinds ---------------------------------------------------------------------------------
    def factor_moves(self, pts: Points) -> tuple[Points, np.ndarray]:
        fac, L, W = pts.factor, self.L, self.window
        rem0 = self.rem0[pts.sp]  # [P, 8]
        offsets = np.arange(-W, W + 1)
        parts: list[tuple[np.ndarray, np.ndarray, int, int, bool]] = []  # (point, value, lv, dim, compensate)
        for di in range(len(DIMS)):
            live = np.nonzero(rem0[:, di] > 1)[0]
            if not len(live):
                continue
            for lv in range(L - 1, self.model.absorb, -1):
                outer = fac[live, lv + 1 :, di].prod(axis=1) if lv < L - 1 else 1.0
                rem = np.maximum(np.ceil(rem0[live, di] / outer), 1).astype(np.int64)
                for u in np.unique(rem):
                    grp = live[rem == u]
                    cands = self._candidates(int(u))
                    pos = np.searchsorted(cands, fac[grp, lv, di])
                    j = pos[:, None] + offsets
                    ok = (j >= 0) & (j < len(cands))
                    v = cands.take(j, mode="clip")
                    ok &= v != fac[grp, lv, di][:, None]
                    rows, cols = np.nonzero(ok)
                    parts.append((grp[rows], v[rows, cols], lv, di, False))
                    if lv >= 2:
                        parts.append((grp[rows], v[rows, cols], lv, di, True))
        if not parts:
            return _empty(pts), np.zeros(0, dtype=np.int64)
        owner = np.concatenate([p[0] for p in parts])
        f = fac[owner].copy()
        start = 0
        for pt, v, lv, di, comp in parts:
            sl = slice(start, start + len(pt))
            if comp:  # the next outer on-chip level keeps the product of the two
                f[sl, lv - 1, di] = np.maximum(1.0, np.ceil(fac[pt, lv, di] * fac[pt, lv - 1, di] / v))
            f[sl, lv, di] = v
            start += len(pt)
        return Points(pts.sp[owner], f, pts.rank[owner], pts.db[owner]), owner

    def order_moves(self, pts: Points) -> tuple[Points, np.ndarray]:
        owners, ranks, lvs = [], [], []
        for lv, ops in self.levels:
            masks = active_mask(pts.factor[:, lv])
            for m in np.unique(masks):
                grp = np.nonzero(masks == m)[0]
                cr = self.class_ranks(int(m), ops, lv == 0)
                if len(cr) <= 1:
                    continue
                owners.append(np.repeat(grp, len(cr)))
                ranks.append(np.tile(cr, (len(grp), 1)))
                lvs.append(np.full(len(grp) * len(cr), lv))
        if not owners:
            return _empty(pts), np.zeros(0, dtype=np.int64)
        owner = np.concatenate(owners)
        rank = pts.rank[owner].copy()
        rank[np.arange(len(owner)), np.concatenate(lvs)] = np.concatenate(ranks)
        return Points(pts.sp[owner], pts.factor[owner], rank, pts.db[owner]), owner

    def db_moves(self, pts: Points) -> tuple[Points, np.ndarray]:
        if not self.model.double_buffering:
            return _empty(pts), np.zeros(0, dtype=np.int64)
        n = len(pts)
        owner = np.tile(np.arange(n), self.L - 1)
        lv = np.repeat(np.arange(1, self.L), n)
        db = pts.db[owner].copy()
        db[np.arange(len(owner)), lv] = 1.0 - db[np.arange(len(owner)), lv]
        return Points(pts.sp[owner], pts.factor[owner], pts.rank[owner], db), owner

    def spatial_moves(self, pts: Points) -> tuple[Points, np.ndarray]:
        if self.n_options <= 1:
            return _empty(pts), np.zeros(0, dtype=np.int64)
        n = len(pts)
        owner = np.repeat(np.arange(n), self.n_options)
        sp = np.tile(np.arange(self.n_options), n)
        keep = sp != pts.sp[owner]
        owner, sp = owner[keep], sp[keep]
        return Points(sp, pts.factor[owner].copy(), pts.rank[owner], pts.db[owner]), owner

    def all(self, pts: Points) -> tuple[Points, np.ndarray]:
        """Every one-move neighbour of every point, and the index of the point it came from."""
        moved = [self.complete(*self.factor_moves(pts)), self.complete(*self.spatial_moves(pts))]
        got = moved + [self.order_moves(pts), self.db_moves(pts)]
        return Points.concat([g[0] for g in got]), np.concatenate([g[1] for g in got])


def _empty(pts: Points) -> Points:
    return pts.take(np.zeros(0, dtype=np.int64))
