"""The mapping's loop nest as the generated code executes it (docs/cost_model.md, "Loop nest").

This is the one place codegen turns an `ir.Mapping` into loops, tile extents and transfer points;
the HLS emitter only prints it. Keeping it separate (and pure Python) lets tests and reports read
the same plan the C++ follows.

Rules (identical to the cost model's):
- loops level by level, DRAM outermost, each level in `Mapping.full_order`; trip-count-1 loops vanish;
- the PE array's spatial loops are innermost and fully unrolled; a loop at a shared level advances
  by (product of inner factors) x spatial factor, a per-PE level's loop by the product of inner
  factors only (index = shared offsets + spatial index x per-PE extent + per-PE index);
- operand X held at level h is loaded from its parent (nearest outer level holding X) right after
  the innermost loop at a level < h that is relevant to X (before all loops if there is none), so the
  loops between that point and level h reuse the tile; outputs are written back at the same point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from codax.errors import UnsupportedError
from codax.ir import DIMS, OPERANDS, RELEVANT, Accelerator, Engine, Layer, Mapping
from codax.ir.layer import REDUCTION_DIMS


@dataclass(frozen=True)
class Loop:
    index: int  # position in the nest, outermost 0
    level: int  # memory level index (DRAM = 0)
    dim: str
    factor: int  # trip count on the grid (before skipping tiles past the bound)
    blk: int  # how far one iteration advances the dim's index


@dataclass(frozen=True)
class Transfer:
    """Operand X moving between `parent` and level `h`, placed right after loop `pos` (-1: before all)."""

    operand: str
    h: int
    parent: int
    pos: int
    tile: dict[str, int]  # unclipped tile extent per relevant dim (spatial factor included)


@dataclass
class NestPlan:
    layer: Layer
    engine: Engine
    mapping: Mapping
    level_names: tuple[str, ...]
    spatial_level: int
    loops: list[Loop]
    spatial: list[tuple[str, str, int]]  # (axis, dim, factor), rows first
    spatial_blk: dict[str, int]  # index step of one spatial position per dim
    transfers: list[Transfer]
    held: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)  # (X, h) -> clipped extents

    def holds(self, h: int, operand: str) -> bool:
        return h == 0 or operand in self.engine.levels[h - 1].operands

    def innermost(self, operand: str) -> int:
        return max(h for h in range(len(self.level_names)) if self.holds(h, operand))

    def loads_at(self, pos: int) -> list[Transfer]:
        return sorted(
            (t for t in self.transfers if t.pos == pos), key=lambda t: (t.h, OPERANDS.index(t.operand))
        )

    def stores_at(self, pos: int) -> list[Transfer]:
        return sorted((t for t in self.transfers if t.pos == pos and t.operand == "O"), key=lambda t: -t.h)

    def buffer_shape(self, operand: str, h: int) -> tuple[int, int, int, int, int]:
        """The shape of X's buffer at level h (one copy): the tile's extents clipped to the bounds, the
        input as its window without the rows/cols no output touches (a strided window has gaps)."""
        e = self.held[(operand, h)]
        lay = self.layer
        if operand == "W":
            return (e["G"], e["K"], e["C"], e["R"], e["S"])
        if operand == "O":
            return (e["N"], e["G"], e["K"], e["P"], e["Q"])
        rows = touched_count(e["P"], e["R"], lay.stride[0], lay.dilation[0])
        cols = touched_count(e["Q"], e["S"], lay.stride[1], lay.dilation[1])
        return (e["N"], e["G"], e["C"], rows, cols)

    @property
    def spills_partial_sums(self) -> bool:
        """Whether outputs go back to DRAM before their last visit (a reduction loop outside the
        outermost level holding O): the call needs the partial-sum scratch."""
        return any(t.operand == "O" and t.parent == 0 and self.first_visit_loops(t) for t in self.transfers)

    def max_trips(self, lp: Loop) -> int:
        """A loop's most trips: its factor, or fewer where the dim's bound runs out first."""
        return min(lp.factor, -(-getattr(self.layer, lp.dim) // lp.blk))

    def ps_tokens(self) -> dict[int, int]:
        """Per output level h: the most partial-sum tokens (the engine's ps[h] FIFO) outstanding at once.
        A tile's partial sums are stored, then read back on its next visit before it is stored again:
        at most one token per output tile, and only the tiles of one iteration of the outermost
        reduction loop enclosing h's transfer wait at once -- the product of the trips of the
        non-reduction loops inside it. 0 where no reduction loop of more than one trip encloses the
        transfer. In hardware the ps FIFO needs at least this depth."""
        out: dict[int, int] = {}
        for t in self.transfers:
            if t.operand != "O":
                continue
            enclosing = self.loops[: t.pos + 1]
            red = [i for i, lp in enumerate(enclosing) if lp.dim in REDUCTION_DIMS and self.max_trips(lp) > 1]
            if not red:
                out[t.h] = 0
                continue
            inside = enclosing[red[0] + 1 :]
            out[t.h] = math.prod(self.max_trips(lp) for lp in inside if lp.dim not in REDUCTION_DIMS)
        return out

    def first_visit_loops(self, t: Transfer) -> list[Loop]:
        """Reduction loops enclosing a transfer point: an output visit is the first when all are 0."""
        return [lp for lp in self.loops[: t.pos + 1] if lp.dim in REDUCTION_DIMS]


def touched_count(p: int, r: int, stride: int, dil: int) -> int:
    """Distinct offsets i * stride + j * dil (i < p, j < r): the window rows a (p x r) tile touches."""
    return len({i * stride + j * dil for i in range(p) for j in range(r)})


def plan(layer: Layer, accel: Accelerator, mapping: Mapping) -> NestPlan:
    """The loop nest, tile extents and transfer points of one layer's mapping (assumed validated)."""
    engine = accel.engine(mapping.engine)
    names = engine.level_names
    L = len(names)
    sl = engine.spatial_level
    f = {(lv, d): mapping.factor(names[lv], d) for lv in range(L) for d in DIMS}
    s = {d: mapping.spatial_factor(d) for d in DIMS}

    def inner_prod(lv: int, d: str) -> int:
        return math.prod(f[(l2, d)] for l2 in range(lv + 1, L))

    loops: list[Loop] = []
    for lv in range(L):
        for d in mapping.full_order(names[lv]):
            if f[(lv, d)] > 1:
                blk = inner_prod(lv, d) * (s[d] if lv <= sl else 1)
                loops.append(Loop(len(loops), lv, d, f[(lv, d)], blk))
    spatial = [(axis, d, k) for axis, (d, k) in sorted(mapping.spatial.items()) if k > 1]
    spatial_blk = {d: inner_prod(sl, d) for d in DIMS}

    p = NestPlan(layer, engine, mapping, names, sl, loops, spatial, spatial_blk, [])
    for X in OPERANDS:
        for h in range(1, L):
            if not p.holds(h, X):
                continue
            parent = max(l2 for l2 in range(h) if p.holds(l2, X))
            cand = [lp.index for lp in loops if lp.level < h and lp.dim in RELEVANT[X]]
            strided = [lp for lp in loops if sl < lp.level < h and lp.dim in RELEVANT[X] and s[lp.dim] > 1]
            if strided:
                lp = strided[0]
                raise UnsupportedError(
                    f"mapping for layer {layer.name}: {X}'s tile at per-PE level {names[h]} would be strided "
                    f"(loop {lp.dim} x{lp.factor} at per-PE level {names[lp.level]} above it, {lp.dim} also "
                    f"unrolled x{s[lp.dim]}); codegen and the cost model assume contiguous array tiles: move "
                    f"tiles.{names[lp.level]}.{lp.dim} to {names[h]} or to a shared level"
                )
            tile = {d: math.prod(f[(l2, d)] for l2 in range(h, L)) * s[d] for d in RELEVANT[X]}
            p.transfers.append(Transfer(X, h, parent, max(cand, default=-1), tile))
            full = {d: math.prod(f[(l2, d)] for l2 in range(h, L)) * s[d] for d in DIMS}
            p.held[(X, h)] = {d: min(full[d], getattr(layer, d)) for d in DIMS}
    return p
