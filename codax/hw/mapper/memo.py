"""Scores of the points a search has already seen, keyed by what decides their cost.

Two points with the same spatial option, factors and double buffering whose loop orders agree on
the relative order of the active loops (factor > 1) of every order-relevant level cost the same, so
they share one key; the search evaluates each key once. Keys are built for a whole batch with numpy
(one row of int32 per point, viewed as bytes).
"""

from __future__ import annotations

import numpy as np

from codax.hw.mapper.batch import Evaluator, Points
from codax.hw.mapper.tiling import LevelModel


class ScoreMemo:
    def __init__(self, ev: Evaluator, model: LevelModel, order_levels: list[int]) -> None:
        self.ev, self.model = ev, model
        self.order_level = np.zeros(model.L, dtype=bool)
        self.order_level[order_levels] = True
        self.seen: dict[bytes, float] = {}

    def keys(self, pts: Points) -> list[bytes]:
        fac = pts.factor
        active = (fac > 1) & self.order_level[None, :, None]
        # the position of each active loop among the active loops of its level; -1 elsewhere
        pos = np.argsort(np.argsort(np.where(active, pts.rank, np.inf), axis=-1, kind="stable"), axis=-1)
        rank = np.where(active, pos, -1)
        n = len(pts)
        row = np.concatenate(
            [pts.sp.reshape(n, 1), fac.reshape(n, -1), rank.reshape(n, -1), pts.db.reshape(n, -1)], axis=1
        ).astype(np.int32)
        row = np.ascontiguousarray(row)
        return row.view(np.dtype((np.void, row.shape[1] * 4))).ravel().tolist()

    def score(self, pts: Points) -> np.ndarray:
        """The score of every point; only points never seen before that fit every buffer go to the
        cost model (one batch), the others are looked up (+inf when they do not fit)."""
        keys = self.keys(pts)
        seen = self.seen
        fresh: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in seen and k not in fresh:
                fresh[k] = i
        if fresh:
            idx = np.fromiter(fresh.values(), dtype=np.int64, count=len(fresh))
            sub = pts.take(idx)
            s = np.full(len(idx), np.inf)
            fit = self.model.fits_buffered(sub.factor, self.ev.spatial[sub.sp], sub.db)
            if fit.any():
                s[fit] = self.ev.score(sub.take(np.nonzero(fit)[0]))
            seen.update(zip(fresh, s.tolist()))
        return np.array([seen[k] for k in keys])
