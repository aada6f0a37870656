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
        self.double_buffering = True  # False: no level may be double-buffered (constraint)
        self.resident = False  # True: the on-chip levels hold the whole layer (constraint "resident")

    # --- footprints ---------------------------------------------------------------------------------
    def extents(self, fac: np.ndarray, spatial: np.ndarray, level: int) -> np.ndarray:
        """[n, 8] extents of the tile held at `level` (>= 1): its and inner levels' factors, times the
        spatial factors when the level is shared, clipped to the bounds."""
        e = fac[:, level:, :].prod(axis=1)
        if level <= self.spatial_level:
            e = e * spatial
        return np.minimum(e, self.bound)

    def tile_bytes(self, ext: np.ndarray) -> np.ndarray:
        """[..., 3] bytes of the W, I, O tiles with extents [..., 8] (one copy)."""
        e = np.moveaxis(ext, -1, 0)
        h = np.minimum((e[P_] - 1) * self.stride[0] + (e[R_] - 1) * self.dil[0] + 1, self.in_pad[0])
        w = np.minimum((e[Q_] - 1) * self.stride[1] + (e[S_] - 1) * self.dil[1] + 1, self.in_pad[1])
        ng = e[N_] * e[G_]
        wt = e[G_] * e[K_] * e[C_] * e[R_] * e[S_]
        it = ng * e[C_] * h * w
        ot = ng * e[K_] * e[P_] * e[Q_]
        return np.ceil(np.stack([wt, it, ot], axis=-1) * self.bits / 8.0)

    def overflow(self, fac: np.ndarray, spatial: np.ndarray, level: int, copies=1) -> np.ndarray:
        """[n] bytes by which the fullest buffer of `level` is over capacity (<= 0 fits). `spatial` is
        one [8] row or one row per point, `copies` a number or one per point (2 when double-buffered)."""
        need = self.tile_bytes(self.extents(fac, spatial, level)) * np.reshape(copies, (-1, 1))
        held = self.holds[level - 1]
        if self.sizes[level - 1] is not None:
            caps = np.array([self.sizes[level - 1].get(op, np.inf) for op in OPERANDS])
            return np.where(held, need - caps, -np.inf).max(axis=1)
        return (need * np.array(held)).sum(axis=1) - self.size[level - 1]

    # --- every on-chip level at once (the search's hot path: few numpy calls per batch) -----------------
    def _level_tables(self, upto: int) -> tuple:
        """Per operand, the [upto] capacities of levels 1..upto for the fullest-buffer test: its own
        buffer (per-operand sizes, +inf where not held) or its share of a shared size (mask)."""
        key = ("_tables", upto)
        if key not in self.__dict__:
            lv = range(upto)
            held = np.array([self.holds[i] for i in lv], dtype=bool).reshape(-1, 3)
            per_op = np.array([self.sizes[i] is not None for i in lv], dtype=bool)
            caps = np.array(
                [
                    [
                        (self.sizes[i] or {}).get(op, np.inf) if held[i, xi] else np.inf
                        for xi, op in enumerate(OPERANDS)
                    ]
                    for i in lv
                ],
                dtype=np.float64,
            ).reshape(-1, 3)
            shared_held = (held & ~per_op[:, None]).astype(np.float64)
            size = np.array(
                [np.inf if self.sizes[i] is not None else self.size[i] for i in lv], dtype=np.float64
            )
            unroll = (np.arange(1, upto + 1) <= self.spatial_level)[None, :, None]
            self.__dict__[key] = (caps, shared_held, size, unroll)
        return self.__dict__[key]

    def level_overflow(
        self, fac: np.ndarray, spatial: np.ndarray, copies=1, upto: int | None = None
    ) -> np.ndarray:
        """[n, upto] overflow (bytes, <= 0 fits) of the on-chip levels 1..upto (default all, L-1).
        `copies` is a number or [n, L-1] (2 where double-buffered)."""
        upto = self.L - 1 if upto is None else upto
        caps, shared_held, size, unroll = self._level_tables(upto)
        inner = fac[:, 1:].astype(np.float64)  # becomes each level's and its inner levels' factors
        for j in range(self.L - 3, -1, -1):
            inner[:, j] *= inner[:, j + 1]
        inner = inner[:, :upto]
        ext = np.minimum(np.where(unroll, inner * np.reshape(spatial, (-1, 1, 8)), inner), self.bound)
        n_, g_, k_, c_, p_, q_, r_, s_ = (ext[..., i] for i in range(8))
        h = np.minimum((p_ - 1) * self.stride[0] + (r_ - 1) * self.dil[0] + 1, self.in_pad[0])
        w = np.minimum((q_ - 1) * self.stride[1] + (s_ - 1) * self.dil[1] + 1, self.in_pad[1])
        ng = n_ * g_
        if np.ndim(copies) == 2:
            copies = copies[:, :upto]
        need = (
            np.ceil(g_ * k_ * c_ * r_ * s_ * self.bits[0] / 8.0) * copies,
            np.ceil(ng * c_ * h * w * self.bits[1] / 8.0) * copies,
            np.ceil(ng * k_ * p_ * q_ * self.bits[2] / 8.0) * copies,
        )
        over = np.maximum(np.maximum(need[0] - caps[:, 0], need[1] - caps[:, 1]), need[2] - caps[:, 2])
        total = need[0] * shared_held[:, 0] + need[1] * shared_held[:, 1] + need[2] * shared_held[:, 2]
        return np.maximum(over, total - size)

    def fits(self, fac: np.ndarray, spatial: np.ndarray, levels=None, copies: int = 1) -> np.ndarray:
        """[n] whether the levels (default: every on-chip level) fit."""
        levels = list(levels) if levels is not None else list(range(1, self.L))
        over = self.level_overflow(fac, spatial, copies, upto=max(levels))
        return (over[:, [lv - 1 for lv in levels]] <= 0).all(axis=1)

    def fits_buffered(self, fac: np.ndarray, spatial: np.ndarray, db: np.ndarray) -> np.ndarray:
        """[n] whether every on-chip level fits, twice where `db` [n, L] double-buffers it."""
        return (self.level_overflow(fac, spatial, 1.0 + (db[:, 1:] > 0)) <= 0).all(axis=1)

    def db_allowed(self, fac: np.ndarray, spatial: np.ndarray) -> np.ndarray:
        """[n, L] whether each on-chip level still fits when double-buffered (DRAM never)."""
        out = np.zeros((len(fac), self.L), dtype=bool)
        if self.double_buffering:
            out[:, 1:] = self.level_overflow(fac, spatial, 2) <= 0
        return out

    # --- factors ------------------------------------------------------------------------------------
    @property
    def absorb(self) -> int:
        """The level whose factors cover what the levels inside it leave: DRAM, or the outermost
        on-chip level when the layer must stay resident on chip (DRAM then iterates nothing)."""
        return 1 if self.resident else 0

    def remaining(self, spatial_row: np.ndarray) -> np.ndarray:
        """[8] (or [n, 8]) iterations left for the temporal loops once the spatial factors are taken."""
        return np.ceil(self.bound / spatial_row).astype(np.int64)

    def complete(self, fac: np.ndarray, rem0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Make factors [n, L, 8] a tight tiling of `rem0` ([8] or [n, 8] iterations left after the
        spatial unroll), in place: the levels inside the absorbing level are capped, innermost first,
        at what the levels inside them leave (no level iterates only past the bound, so no PE idles
        for it), and the absorbing level takes the rest (levels outside it 1). Returns the factors and
        [n] whether they are legal: with `exact_tiles`, only where the rest divides exactly."""
        inner = np.ones(fac.shape[::2], dtype=fac.dtype)
        a = self.absorb
        for lv in range(self.L - 1, a, -1):
            fac[:, lv] = np.minimum(fac[:, lv], -(-rem0 // inner))
            inner = inner * fac[:, lv]
        fac[:, a] = -(-rem0 // inner)
        fac[:, :a] = 1
        if self.exact_tiles:
            return fac, (rem0 % inner == 0).all(axis=1)
        return fac, np.ones(len(fac), dtype=bool)


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
    model: LevelModel, spatial: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random tiling that fits every buffer per row of `spatial` ([n, 8] spatial factors, so
    several spatial options are sampled together): levels innermost first, dims in a random order
    per level, each factor drawn among the tile sizes left (biased to the largest that fits, so
    buffers tend to be used), halved a few times and then 1 when a draw overflows; the absorbing
    level takes the rest (`LevelModel.complete`). Returns [n, L, 8] factors and [n] whether each is
    a legal tiling (with exact tiles, whether the rest divides)."""
    n, L = len(spatial), model.L
    rem0 = np.ceil(model.bound / spatial).astype(np.int64)  # [n, 8]
    top = rem0.max(axis=0)
    fac = np.ones((n, L, 8), dtype=np.int64)
    rem = rem0.copy()
    tables = {}
    for d in range(8):
        if 1 < top[d] < 4096:  # larger dims stay at DRAM: their candidate tables would be too big
            reach = _reachable(rem0[:, d])
            lists = {r: candidates(r, model.exact_tiles) for r in reach}
            width = max(len(x) for x in lists.values())
            tab = np.ones((top[d] + 1, width), dtype=np.int64)
            cnt = np.ones(top[d] + 1, dtype=np.int64)
            for r, x in lists.items():
                tab[r, : len(x)] = x
                cnt[r] = len(x)
            tables[d] = (tab, cnt)
    idx = np.arange(n)
    for lv in range(L - 1, model.absorb, -1):
        for d in rng.permutation([d for d in tables]):
            tab, cnt = tables[d]
            c = cnt[rem[:, d]]
            u = rng.random(n) ** 0.5  # bias towards large factors
            pick = np.minimum((u * c).astype(np.int64), c - 1)
            skip = rng.random(n) < 0.25
            # a skipped draw or a factor of 1 keeps a tiling that fits: only the others are checked
            todo = idx[~skip & (tab[rem[:, d], pick] > 1)]
            for _ in range(3):  # a few halvings of the draw before giving up on this dim
                if not len(todo):
                    break
                trial = fac[todo].copy()
                trial[:, lv, d] = tab[rem[todo, d], pick[todo]]
                ok = model.fits(trial, spatial[todo], levels=range(1, lv + 1))
                fac[todo[ok]] = trial[ok]
                todo = todo[~ok]
                pick[todo] //= 2
        rem = np.ceil(rem / fac[:, lv, :]).astype(np.int64)
    return model.complete(fac, rem0)


def _reachable(rem0: np.ndarray) -> list[int]:
    """Every number of iterations a level can be left with: ceil(r / m) for each r in rem0 and m >= 1
    (ceil(ceil(r / a) / b) = ceil(r / ab), so nothing else occurs)."""
    out: set[int] = set()
    for r in np.unique(rem0).tolist():
        out.update({-(-r // m) for m in range(1, math.isqrt(r) + 1)})
        out.update(range(1, math.isqrt(r) + 2))
    return sorted(out)


def ones_tiling(model: LevelModel, spatial: np.ndarray) -> np.ndarray:
    """[n, L, 8]: every on-chip factor 1, everything at the DRAM level: the smallest tiles, for each
    row of spatial factors ([8] or [n, 8]; n = 1 for one row)."""
    spatial = np.atleast_2d(spatial)
    fac = np.ones((len(spatial), model.L, len(DIMS)), dtype=np.int64)
    return model.complete(fac, model.remaining(spatial))[0]


def smallest_fits(model: LevelModel, spatial: np.ndarray) -> np.ndarray:
    """[n] whether the smallest tiles (`ones_tiling`) fit every buffer, for each row of spatial
    factors [n, 8]: one vectorised check (`smallest_overflow` says what overflows, for messages)."""
    if model.L == 1:  # no on-chip level: nothing to overflow
        return np.ones(len(spatial), dtype=bool)
    return model.fits(ones_tiling(model, spatial), spatial)


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
