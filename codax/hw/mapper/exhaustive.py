"""Exhaustive search over the declared finite mapping space (the reference the fast mapper is
measured against).

The space: every spatial option (`space.spatial_options`), every tiling whose per-level factors are
tile sizes (divisors and near-divisors) of what the inner levels leave, every loop-order class at
every level whose order matters (all levels but the innermost; orders with the same signature cost
the same, see `space.order_signature`), and double buffering on/off per on-chip level. Only points
that cannot fit a buffer are skipped before evaluation (footprints grow with every factor, so this
pruning is exact); everything else goes through `cost_core` in large batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from codax.hw.mapper.batch import Evaluator, Points, identity_rank, scan
from codax.hw.mapper.space import full_rank, order_classes
from codax.hw.mapper.tiling import LevelModel, enumerate_tilings
from codax.ir import DIMS, OPERANDS


def order_levels(model: LevelModel) -> list[tuple[int, tuple[str, ...]]]:
    """Levels whose loop order changes the cost, each with the operands that move into levels
    inside it (the only ones its order affects). The innermost level's loops are outside no
    boundary, so its order never matters."""
    out = []
    for lv in range(model.L - 1):
        ops = tuple(op for xi, op in enumerate(OPERANDS) if any(h[xi] for h in model.holds[lv:]))
        if ops:
            out.append((lv, ops))
    return out


def active_dims(fac_level: np.ndarray) -> tuple[str, ...]:
    return tuple(d for di, d in enumerate(DIMS) if fac_level[di] > 1)


def order_combos(
    model: LevelModel, fac: np.ndarray, levels: list[tuple[int, tuple[str, ...]]], classes=order_classes
) -> np.ndarray:
    """[C, L, 8] ranks: the cartesian product of the order classes of every order-relevant level."""
    per_level = []
    for lv, ops in levels:
        per_level.append([(lv, full_rank(o)) for o in classes(active_dims(fac[lv]), ops, lv == 0)])
    base = identity_rank(model.L)
    out = []
    for combo in itertools.product(*per_level):
        r = base.copy()
        for lv, rk in combo:
            r[lv] = rk
        out.append(r)
    return np.array(out).reshape(len(out), model.L, len(DIMS))


def db_combos(allowed: np.ndarray) -> np.ndarray:
    """[D, L] every on/off choice of double buffering among the levels where it fits."""
    choices = [[0.0, 1.0] if a and lv > 0 else [0.0] for lv, a in enumerate(allowed)]
    return np.array(list(itertools.product(*choices)), dtype=np.float64)


@dataclass
class _Group:
    """Tilings of one spatial option that share their active loops and double-buffering choices, so
    also their order and double-buffering combinations."""

    sp: int
    tilings: np.ndarray  # [T, L, 8]
    ranks: np.ndarray  # [C_r, L, 8]
    dbs: np.ndarray  # [C_d, L]

    @property
    def points(self) -> int:
        return len(self.tilings) * len(self.ranks) * len(self.dbs)


def _groups(ev: Evaluator, model: LevelModel, max_points: int | None) -> list[_Group]:
    """The whole space as groups, counted before anything is scored: a space over `max_points`
    raises MemoryError at once, without spending the time to score part of it."""
    levels = order_levels(model)
    out: list[_Group] = []
    total = 0
    for si in range(len(ev.options)):
        s_row = ev.spatial[si]
        T = enumerate_tilings(model, s_row)
        if model.resident:  # the on-chip levels must cover every dim: DRAM iterates nothing
            T = T[(T[:, 0] == 1).all(axis=1)]
        if not len(T):
            continue
        allowed = model.db_allowed(T, s_row)
        act = (T > 1).astype(np.int64) @ (1 << np.arange(len(DIMS)))  # [T, L] active-dim bitmasks
        key = np.concatenate([act[:, [lv for lv, _ in levels]], allowed.astype(np.int64)], axis=1)
        _, inv = np.unique(key, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        for g in range(inv.max() + 1):
            rows = np.nonzero(inv == g)[0]
            grp = _Group(si, T[rows], order_combos(model, T[rows[0]], levels), db_combos(allowed[rows[0]]))
            total += grp.points
            if max_points is not None and total > max_points:
                raise MemoryError(f"the exhaustive space of layer {model.layer.name} exceeds {max_points:,}")
            out.append(grp)
    return out


def exhaustive_points(
    ev: Evaluator, model: LevelModel, max_points: int | None = None, block: int = 65536
) -> Iterator[Points]:
    """Every point of the declared space that fits the buffers, in groups sharing their order and
    double-buffering choices, at most about `block` points at a time (bounded memory)."""
    for grp in _groups(ev, model, max_points):
        rank = np.repeat(grp.ranks, len(grp.dbs), axis=0)
        db = np.tile(grp.dbs, (len(grp.ranks), 1))
        C = len(rank)
        step = max(1, block // C)
        for a in range(0, len(grp.tilings), step):
            T = grp.tilings[a : a + step]
            n = len(T) * C
            yield Points(
                sp=np.full(n, grp.sp, dtype=np.int64),
                factor=np.repeat(T, C, axis=0),
                rank=np.tile(rank, (len(T), 1, 1)),
                db=np.tile(db, (len(T), 1)),
            )


def space_size(ev: Evaluator, model: LevelModel) -> int:
    """How many points the exhaustive search would evaluate (counted, not built)."""
    return sum(grp.points for grp in _groups(ev, model, None))


def search_exhaustive(
    ev: Evaluator, model: LevelModel, max_points: int | None = None
) -> tuple[float, Points | None]:
    return scan(ev, exhaustive_points(ev, model, max_points), chunk=16384)
