"""The fast mapper: pruned random seeding, then steepest-descent local search with an order polish.

1. Seeds. For every spatial option, random tilings built innermost level first that fit every
   buffer (capacity pruning), each with double buffering wherever it still fits and the weight-,
   input- and output-stationary loop orders at every level. Orders are taken up to their signature
   (only the relative order of active loops, and per operand which loops sit inside its innermost
   relevant loop, change the cost), so three orders cover the usual stationarity choices.
2. Local search from the best distinct seeds: each step scores in one batch every neighbour that
   fits -- one factor moved to a nearby tile size at one level (the DRAM factor recomputed, or the
   next outer level compensating), one level's order replaced by each of its order classes, double
   buffering toggled, the spatial option switched -- and moves to the best; at a local optimum the
   orders and double buffering of all levels are searched jointly, and the descent resumes if
   that helped.
Every random choice comes from one numpy Generator seeded by `seed`, so results are reproducible;
the search stops early once `budget` points have been evaluated.
"""

from __future__ import annotations

import numpy as np

from codax.hw.mapper.batch import Evaluator, Points
from codax.hw.mapper.exhaustive import active_dims, db_combos, order_combos, order_levels
from codax.hw.mapper.space import full_rank, order_classes
from codax.hw.mapper.tiling import LevelModel, candidates, ones_tiling, sample_tilings
from codax.ir import DIMS, OPERANDS, RELEVANT

WINDOW = 4  # tile sizes on each side of the current one that a factor move may jump to
POLISH_MAX = 4096  # joint order x double-buffering combinations tried at a local optimum


def stationary_rank(levels: int, operand: str) -> np.ndarray:
    """[L, 8] ranks that keep `operand`'s tile in place at every level: its irrelevant loops innermost."""
    order = tuple(d for d in DIMS if d in RELEVANT[operand]) + tuple(
        d for d in DIMS if d not in RELEVANT[operand]
    )
    return np.tile(np.array(full_rank(order), dtype=np.float64), (levels, 1))


class FastSearch:
    def __init__(self, ev: Evaluator, model: LevelModel, seed: int, budget: int) -> None:
        self.ev, self.model, self.budget = ev, model, budget
        self.rng = np.random.default_rng(seed)
        self.levels = order_levels(model)
        self.L = model.L
        self.seen: dict[bytes, float] = {}

    # --- helpers ------------------------------------------------------------------------------------
    def _key(self, sp: int, fac: np.ndarray, rank: np.ndarray, db: np.ndarray) -> bytes:
        # ranks matter only through the order of active loops: normalise them away for inactive ones
        r = np.where(fac > 1, rank, -1.0)
        return bytes([sp]) + fac.astype(np.int64).tobytes() + r.tobytes() + db.astype(np.int8).tobytes()

    def _fits(self, pts: Points) -> np.ndarray:
        ok = np.ones(len(pts), dtype=bool)
        for si in np.unique(pts.sp):
            m = pts.sp == si
            s_row = self.ev.spatial[si]
            for lv in range(1, self.L):
                sub = pts.factor[m]
                ok_lv = np.where(
                    pts.db[m, lv] > 0,
                    self.model.overflow(sub, s_row, lv, copies=2) <= 0,
                    self.model.overflow(sub, s_row, lv, copies=1) <= 0,
                )
                ok[m] &= ok_lv
        return ok

    def _score_new(self, pts: Points) -> np.ndarray:
        """Scores of points, evaluating only those not seen before and that fit."""
        keys = [self._key(int(pts.sp[i]), pts.factor[i], pts.rank[i], pts.db[i]) for i in range(len(pts))]
        out = np.full(len(pts), np.inf)
        fresh, first = [], {}
        for i, k in enumerate(keys):
            if k in self.seen:
                out[i] = self.seen[k]
            elif k not in first:
                first[k] = i
                fresh.append(i)
        if fresh:
            sub = pts.take(np.array(fresh))
            fit = self._fits(sub)
            s = np.full(len(fresh), np.inf)
            if fit.any():
                s[fit] = self.ev.score(sub.take(np.nonzero(fit)[0]))
            for j, i in enumerate(fresh):
                self.seen[keys[i]] = s[j]
        for i, k in enumerate(keys):
            out[i] = self.seen[k]
        return out

    def _with_dram(self, fac: np.ndarray, sp: int) -> np.ndarray:
        rem0 = self.model.remaining(self.ev.spatial[sp])
        fac[0] = np.ceil(rem0 / fac[1:].prod(axis=0))
        return fac

    # --- seeds --------------------------------------------------------------------------------------
    def seeds(self, per_option: int) -> Points:
        parts = []
        ranks = [stationary_rank(self.L, x) for x in OPERANDS]
        for si in range(len(self.ev.options)):
            s_row = self.ev.spatial[si]
            T = np.concatenate(
                [ones_tiling(self.model, s_row), sample_tilings(self.model, s_row, per_option, self.rng)]
            )
            T = np.unique(T, axis=0)
            db = self.model.db_allowed(T, s_row).astype(np.float64)
            db[:, 0] = 0.0
            for r in ranks:
                parts.append(
                    Points(np.full(len(T), si), T.astype(np.float64), np.tile(r, (len(T), 1, 1)), db)
                )
        return Points.concat(parts)

    # --- neighbourhood ------------------------------------------------------------------------------
    def neighbours(self, p: Points) -> Points:
        sp, fac, rank, db = int(p.sp[0]), p.factor[0], p.rank[0], p.db[0]
        out_f, out_r, out_d, out_s = [], [], [], []

        def add(f: np.ndarray, r: np.ndarray = rank, d: np.ndarray = db, s: int = sp) -> None:
            out_f.append(f)
            out_r.append(r)
            out_d.append(d)
            out_s.append(s)

        rem0 = self.model.remaining(self.ev.spatial[sp])
        for di in range(8):
            if rem0[di] <= 1:
                continue
            for lv in range(self.L - 1, 0, -1):
                rem = int(np.ceil(rem0[di] / fac[lv + 1 :, di].prod())) if lv < self.L - 1 else int(rem0[di])
                cands = candidates(max(rem, 1), self.model.exact_tiles)
                cur = int(fac[lv, di])
                pos = int(np.searchsorted(cands, cur))
                for v in cands[max(0, pos - WINDOW) : pos + WINDOW + 1]:
                    if v == cur:
                        continue
                    f = fac.copy()
                    f[lv, di] = v
                    add(self._with_dram(f, sp))
                    if lv >= 2:  # the next outer on-chip level compensates, keeping their product
                        g = fac.copy()
                        g[lv, di] = v
                        g[lv - 1, di] = max(1.0, np.ceil(cur * fac[lv - 1, di] / v))
                        add(self._with_dram(g, sp))
        for lv, ops in self.levels:
            for o in order_classes(active_dims(fac[lv]), ops):
                r = rank.copy()
                r[lv] = full_rank(o)
                add(fac, r)
        for lv in range(1, self.L):
            d = db.copy()
            d[lv] = 1.0 - d[lv]
            add(fac, rank, d)
        for s2 in range(len(self.ev.options)):
            if s2 != sp:
                add(self._with_dram(fac.copy(), s2), rank, db, s2)
        return Points(np.array(out_s), np.array(out_f), np.array(out_r), np.array(out_d))

    def polish(self, p: Points) -> Points:
        """Every order class at every order-relevant level jointly with every double-buffering choice."""
        fac = p.factor[0]
        ranks = order_combos(self.model, fac, self.levels)
        allowed = np.ones(self.L, dtype=bool)
        dbs = db_combos(allowed)
        if len(ranks) * len(dbs) > POLISH_MAX:
            ranks = np.concatenate(
                [p.rank, ranks[self.rng.permutation(len(ranks))[: POLISH_MAX // len(dbs)]]]
            )
        n = len(ranks) * len(dbs)
        return Points(
            np.full(n, p.sp[0]),
            np.repeat(fac[None], n, axis=0),
            np.repeat(ranks, len(dbs), axis=0),
            np.tile(dbs, (len(ranks), 1)),
        )

    # --- driver -------------------------------------------------------------------------------------
    def descend(self, p: Points, s: float) -> tuple[float, Points]:
        polished = False
        while self.ev.evaluated < self.budget:
            nb = self.neighbours(p) if not polished else self.polish(p)
            sc = self._score_new(nb)
            i = int(np.argmin(sc)) if len(sc) else 0
            if len(sc) and sc[i] < s * (1 - 1e-12):
                p, s = nb.take(slice(i, i + 1)), float(sc[i])
                polished = False
            elif not polished:
                polished = True
            else:
                break
        return s, p

    def kick(self, p: Points, moves: int = 3, tries: int = 8) -> tuple[float, Points] | None:
        """A random walk of a few neighbour moves from p that still fits (iterated local search)."""
        for _ in range(tries):
            q = p
            for _ in range(moves):
                nb = self.neighbours(q)
                q = nb.take(slice(j := int(self.rng.integers(len(nb))), j + 1))
            s = float(self._score_new(q)[0])
            if np.isfinite(s):
                return s, q
        return None

    def run(self, starts: int = 6, per_option: int = 96, kicks: int = 4) -> tuple[float, Points | None]:
        # seeding takes at most about half the budget: 3 orders per tiling, one batch per option
        per_option = max(4, min(per_option, self.budget // (6 * len(self.ev.options))))
        seeds = self.seeds(per_option)
        sc = self._score_new(seeds)
        order = np.argsort(sc, kind="stable")
        best_s, best_p = float(sc[order[0]]), seeds.take(order[:1])
        # the best seed of every spatial option first (each option is its own basin), then the rest
        firsts = [int(order[np.argmax(seeds.sp[order] == si)]) for si in np.unique(seeds.sp)]
        firsts.sort(key=lambda i: sc[i])
        order = np.concatenate([firsts, [i for i in order if i not in set(firsts)]]).astype(np.int64)
        starts = max(starts, len(firsts))
        used: set[bytes] = set()
        for i in order:
            if not np.isfinite(sc[i]) or len(used) >= starts or self.ev.evaluated >= self.budget:
                break
            k = seeds.factor[i].tobytes() + bytes([int(seeds.sp[i])])
            if k in used:  # distinct tilings only
                continue
            used.add(k)
            s, p = self.descend(seeds.take(slice(i, i + 1)), float(sc[i]))
            if s < best_s:
                best_s, best_p = s, p
        for _ in range(kicks):
            if self.ev.evaluated >= self.budget:
                break
            k = self.kick(best_p)
            if k is None:
                break
            s, p = self.descend(k[1], k[0])
            if s < best_s:
                best_s, best_p = s, p
        return best_s, best_p


def search_fast(
    ev: Evaluator, model: LevelModel, seed: int = 0, budget: int = 20000
) -> tuple[float, Points | None]:
    return FastSearch(ev, model, seed, budget).run()
