"""Tilings (temporal factors per level) and the capacity arithmetic that prunes them, in numpy.

A tile's footprint only grows with any factor, so a partial tiling that already overflows a buffer
can be dropped with everything built on it: capacity pruning loses no legal point. The footprints
follow `codax.ir.mapping.tile_bytes` (inputs as the dense window, clipped to the padded input;
outputs held at accumulator width), which the final `validate_mapping` checks again.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from codax.hw.mapper.space import divisors, tile_sizes
from codax.ir import DIMS, OPERANDS, Accelerator, Layer

N_, G_, K_, C_, P_, Q_, R_, S_ = range(8)


class LevelModel:
    """Capacities and footprints of one layer's tiles on one engine."""

    def __init__(self, layer: Layer, accel: Accelerator, engine: str | None = None) -> None:
        eng = accel.engine(engine)
        self.layer, self.engine = layer, eng
        self.L = len(eng.levels) + 1
        self.spatial_level = eng.spatial_level
        self.bound = np.array([getattr(layer, d) for d in DIMS], dtype=np.int64)
        self.stride, self.dil = layer.stride, layer.dilation
        pt, pl, pb, pr = layer.pads
        self.in_pad = (layer.in_hw[0] + pt + pb, layer.in_hw[1] + pl + pr)
        p = layer.precision
        acc = max(p.acc, accel.acc_bits) if p.kind == "int" else 32  # conservative: both views must fit
        self.bits = np.array([p.weight, p.act, acc], dtype=np.float64)
        self.holds = [tuple(op in lv.operands for op in OPERANDS) for lv in eng.levels]
        self.sizes = [lv.sizes for lv in eng.levels]
        self.size = [lv.size for lv in eng.levels]
        self.level_names = eng.level_names
        self.exact_tiles = False  # only perfect factorisations (constraint "divisors_only")

    # --- footprints ---------------------------------------------------------------------------------
    def extents(self, fac: np.ndarray, spatial: np.ndarray, level: int) -> np.ndarray:
        """[n, 8] extents of the tile held at `level` (>= 1): its and inner levels' factors, times the
        spatial factors when the level is shared, clipped to the bounds."""
        e = fac[:, level:, :].prod(axis=1)
        if level <= self.spatial_level:
            e = e * spatial
        return np.minimum(e, self.bound)

    def tile_bytes(self, ext: np.ndarray) -> np.ndarray:
        """[n, 3] bytes of the W, I, O tiles with these extents (one copy)."""
        h = np.minimum((ext[:, P_] - 1) * self.stride[0] + (ext[:, R_] - 1) * self.dil[0] + 1, self.in_pad[0])
        w = np.minimum((ext[:, Q_] - 1) * self.stride[1] + (ext[:, S_] - 1) * self.dil[1] + 1, self.in_pad[1])
        wt = ext[:, G_] * ext[:, K_] * ext[:, C_] * ext[:, R_] * ext[:, S_]
        it = ext[:, N_] * ext[:, G_] * ext[:, C_] * h * w
        ot = ext[:, N_] * ext[:, G_] * ext[:, K_] * ext[:, P_] * ext[:, Q_]
        return np.ceil(np.stack([wt, it, ot], axis=1) * self.bits / 8.0)

    def overflow(self, fac: np.ndarray, spatial: np.ndarray, level: int, copies: int = 1) -> np.ndarray:
        """[n] bytes by which the fullest buffer of `level` is over capacity (<= 0 fits)."""
        need = self.tile_bytes(self.extents(fac, spatial, level)) * copies
        held = self.holds[level - 1]
        if self.sizes[level - 1] is not None:
            caps = np.array([self.sizes[level - 1].get(op, np.inf) for op in OPERANDS])
            return np.where(held, need - caps, -np.inf).max(axis=1)
        return (need * np.array(held)).sum(axis=1) - self.size[level - 1]

    def fits(self, fac: np.ndarray, spatial: np.ndarray, levels=None, copies: int = 1) -> np.ndarray:
        ok = np.ones(len(fac), dtype=bool)
        for lv in levels if levels is not None else range(1, self.L):
            ok &= self.overflow(fac, spatial, lv, copies) <= 0
        return ok

    def db_allowed(self, fac: np.ndarray, spatial: np.ndarray) -> np.ndarray:
        """[n, L] whether each on-chip level still fits when double-buffered (DRAM never)."""
        out = np.zeros((len(fac), self.L), dtype=bool)
        for lv in range(1, self.L):
            out[:, lv] = self.overflow(fac, spatial, lv, copies=2) <= 0
        return out

    # --- factors ------------------------------------------------------------------------------------
    def remaining(self, spatial_row: np.ndarray) -> np.ndarray:
        """[8] iterations left for the temporal loops once the spatial factors are taken."""
        return np.ceil(self.bound / spatial_row).astype(np.int64)

    def with_dram(self, fac: np.ndarray, spatial_row: np.ndarray) -> np.ndarray:
        """Set the DRAM factors so that the product of all factors covers every dim (ceil)."""
        inner = fac[:, 1:, :].prod(axis=1)
        fac[:, 0, :] = np.ceil(self.remaining(spatial_row) / inner)
        return fac


@functools.lru_cache(maxsize=65536)
def candidates(rem: int, exact: bool = False) -> tuple[int, ...]:
    """Factors a level may take when `rem` iterations are left: divisors and near-divisors (only the
    divisors when `exact`: perfect factorisations, as tools without partial tiles require)."""
    return tuple(divisors(int(rem)) if exact else tile_sizes(int(rem)))


def enumerate_tilings(model: LevelModel, spatial_row: np.ndarray, max_rows: int = 5_000_000) -> np.ndarray:
    """Every tiling of the declared space that fits every buffer without double buffering.

    Levels are filled innermost first; for each dim a level's factor is drawn from the tile sizes of
    what the inner levels leave. Partial tilings that overflow are dropped at once (exact pruning).
    Returns [T, L, 8] factors, DRAM included."""
    L = model.L
    rem0 = model.remaining(spatial_row)
    fac = np.ones((1, L, 8), dtype=np.int64)
    rem = rem0[None, :].copy()
    for lv in range(L - 1, 0, -1):
        for d in range(8):
            if rem0[d] == 1:
                continue
            vals = np.array(candidates(rem0[d], model.exact_tiles), dtype=np.int64)
            valid = np.zeros((rem0[d] + 1, len(vals)), dtype=bool)
            for r in range(1, rem0[d] + 1):
                valid[r] = np.isin(vals, candidates(r, model.exact_tiles))
            rows, cols = np.nonzero(valid[rem[:, d]])
            fac = fac[rows].copy()
            fac[:, lv, d] = vals[cols]
            rem = rem[rows].copy()
            keep = model.fits(fac, spatial_row, levels=range(1, lv + 1))
            fac, rem = fac[keep], rem[keep]
            if len(fac) > max_rows:
                raise MemoryError(f"the tiling space of layer {model.layer.name} exceeds {max_rows:,} rows")
        rem = np.ceil(rem / fac[:, lv, :]).astype(np.int64)
    fac[:, 0, :] = rem
    return fac


def sample_tilings(
    model: LevelModel, spatial_row: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """n random tilings that fit every buffer: levels innermost first, dims in a random order per
    level, each factor drawn among the tile sizes left (biased to the largest that fits, so buffers
    tend to be used), falling back to 1 when a draw overflows. [n, L, 8], DRAM included."""
    L = model.L
    rem0 = model.remaining(spatial_row)
    fac = np.ones((n, L, 8), dtype=np.int64)
    rem = np.tile(rem0, (n, 1))
    tables = {}
    for d in range(8):
        if rem0[d] > 1:
            lists = [candidates(r, model.exact_tiles) for r in range(rem0[d] + 1)] if rem0[d] < 4096 else None
            if lists is None:
                continue
            width = max(len(x) for x in lists)
            tab = np.ones((rem0[d] + 1, width), dtype=np.int64)
            cnt = np.zeros(rem0[d] + 1, dtype=np.int64)
            for r, x in enumerate(lists):
                tab[r, : len(x)] = x
                cnt[r] = len(x)
            tables[d] = (tab, np.maximum(cnt, 1))
    idx = np.arange(n)
    for lv in range(L - 1, 0, -1):
        for d in rng.permutation([d for d in tables]):
            tab, cnt = tables[d]
            c = cnt[rem[:, d]]
            u = rng.random(n) ** 0.5  # bias towards large factors
            pick = np.minimum((u * c).astype(np.int64), c - 1)
            skip = rng.random(n) < 0.25
            for _ in range(3):  # a few halvings of the draw before giving up on this dim
                trial = fac.copy()
                trial[idx, lv, d] = np.where(skip, 1, tab[rem[:, d], pick])
                ok = model.fits(trial, spatial_row, levels=range(1, lv + 1))
                fac = np.where(ok[:, None, None], trial, fac)
                if ok.all():
                    break
                pick = np.where(ok, pick, pick // 2)
        rem = np.ceil(rem / fac[:, lv, :]).astype(np.int64)
    fac[:, 0, :] = rem
    return fac


def ones_tiling(model: LevelModel, spatial_row: np.ndarray) -> np.ndarray:
    """[1, L, 8]: every on-chip factor 1, everything at the DRAM level: the smallest tiles."""
    fac = np.ones((1, model.L, 8), dtype=np.int64)
    return model.with_dram(fac, spatial_row)


def smallest_overflow(model: LevelModel, spatial_row: np.ndarray) -> tuple[int, str, float, float]:
    """(level, operand, need, capacity) of the worst overflow of the smallest tiles, or level -1."""
    fac = ones_tiling(model, spatial_row)
    worst = (-1, "", 0.0, 0.0)
    worst_over = 0.0
    for lv in range(1, model.L):
        need = model.tile_bytes(model.extents(fac, spatial_row, lv))[0]
        held = model.holds[lv - 1]
        if model.sizes[lv - 1] is not None:
            for xi, op in enumerate(OPERANDS):
                if held[xi]:
                    cap = model.sizes[lv - 1][op]
                    if need[xi] - cap > worst_over:
                        worst_over, worst = need[xi] - cap, (lv, op, float(need[xi]), float(cap))
        else:
            tot = float(sum(need[xi] for xi in range(3) if held[xi]))
            cap = model.size[lv - 1]
            if tot - cap > worst_over:
                ops = "+".join(op for xi, op in enumerate(OPERANDS) if held[xi])
                worst_over, worst = tot - cap, (lv, ops, tot, float(cap))
    return worst


def reduced_spatial(sp: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
    """The spatial option with its largest factor halved (for buffers too small for a full unroll)."""
    axis = max(sp, key=lambda a: sp[a][1])
    d, k = sp[axis]
    out = dict(sp)
    if k <= 2:
        del out[axis]
    else:
        out[axis] = (d, math.ceil(k / 2))
    return out
