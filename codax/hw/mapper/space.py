"""The declared, finite mapping space of a layer on an engine, and random points in it."""

from __future__ import annotations

import functools
import itertools
import math
import random

from codax.ir import DIMS, OPERANDS, RELEVANT, Accelerator, Layer, Mapping


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def tile_sizes(bound: int, limit: int | None = None) -> list[int]:
    """Candidate tile sizes for a dim: its divisors and the near-divisors ceil(bound / k), whose
    partial last tile is small (every distinct number of tiles appears once)."""
    cands = set(divisors(bound)) | {math.ceil(bound / k) for k in range(1, bound + 1)}
    if limit is not None:
        cands = {c for c in cands if c <= limit}
    return sorted(cands)


def spatial_options(
    layer: Layer, accel: Accelerator, engine: str | None = None
) -> list[dict[str, tuple[str, int]]]:
    """Spatial unrollings the dataflow allows: one dim per array axis, the largest factor that fits
    (the whole dim, or the axis size), plus leaving an axis idle when no allowed dim is > 1.

    When both axes may unroll the same dim (e.g. K on a ShiDianNao-like array), the dim may take both
    (rows first, cols the rest), and an axis whose every partner dim is taken stays alone, so a
    layer with a single unrollable dim still fills an axis."""
    eng = accel.engine(engine)
    pa = eng.pe_array
    out: list[dict[str, tuple[str, int]]] = []
    rows = [(d, min(getattr(layer, d), pa.rows)) for d in pa.row_dims if getattr(layer, d) > 1] or [None]
    cols = [(d, min(getattr(layer, d), pa.cols)) for d in pa.col_dims if getattr(layer, d) > 1] or [None]
    for r in rows:
        for c in cols:
            if r and c and r[0] == c[0]:
                rest = min(math.ceil(getattr(layer, r[0]) / r[1]), pa.cols)
                c = (c[0], rest) if rest > 1 else None
            sp = {}
            if r:
                sp["rows"] = r
            if c:
                sp["cols"] = c
            if sp not in out:
                out.append(sp)
    return out or [{}]


def random_mapping(
    layer: Layer,
    accel: Accelerator,
    rng: random.Random,
    engine: str | None = None,
    double_buffer: bool | None = None,
) -> Mapping:
    """A random mapping that covers every dim (it may not fit the buffers)."""
    eng = accel.engine(engine)
    names = eng.level_names
    spatial = rng.choice(spatial_options(layer, accel, engine))
    m = Mapping(layer=layer.name, engine=eng.name, spatial=dict(spatial))
    tiles: dict[str, dict[str, int]] = {lv: {} for lv in names}
    for d in DIMS:
        remaining = math.ceil(getattr(layer, d) / m.spatial_factor(d))
        for lv in reversed(names[1:]):  # inner levels first
            f = rng.choice(tile_sizes(remaining)) if rng.random() < 0.5 else 1
            tiles[lv][d] = f
            remaining = math.ceil(remaining / f)
        tiles["DRAM"][d] = remaining
    m.tiles = {lv: {d: f for d, f in t.items() if f > 1} for lv, t in tiles.items()}
    m.order = {lv: rng.sample(list(DIMS), len(DIMS)) for lv in names}
    m.double_buffer = {
        lv: (rng.random() < 0.5 if double_buffer is None else double_buffer) for lv in names[1:]
    }
    return m


# --- loop orders ---------------------------------------------------------------------------------
def order_signature(
    order: tuple[str, ...], operands: tuple[str, ...] = OPERANDS, innermost: bool = False
) -> tuple:
    """What a level's loop order decides for the cost: per operand, the set of loops after its
    innermost relevant loop. Those loops reuse the operand's tile in place; every other property of
    the order is invisible to the transfer counts, so orders with equal signatures cost the same.
    Only operands that move into a level inside this one (`operands`) are affected by its order.
    At the DRAM level (`innermost`) the innermost loop counts too: the outer tiles' ping-pong
    pipeline runs in passes of it, and its edge tile decides where long and short tiles meet
    (hw/cost.py `_dram_pipeline`)."""
    sig = []
    for x in operands:
        last = max((i for i, d in enumerate(order) if d in RELEVANT[x]), default=-1)
        sig.append(frozenset(order[last + 1 :]))
    if innermost:
        sig.append(order[-1] if order else None)
    return tuple(sig)


@functools.lru_cache(maxsize=512)
def order_classes(
    active: tuple[str, ...], operands: tuple[str, ...] = OPERANDS, innermost: bool = False
) -> tuple[tuple[str, ...], ...]:
    """One representative order (outermost first) per distinct signature over the active loops
    (factor > 1) of a level (`innermost`: the DRAM level's, see order_signature). Only their
    relative order matters: inactive loops are absent."""
    reps: dict[tuple, tuple[str, ...]] = {}
    for perm in itertools.permutations(active):
        reps.setdefault(order_signature(perm, operands, innermost), perm)
    return tuple(reps.values())


def stationary_orders(
    active: tuple[str, ...], operands: tuple[str, ...] = OPERANDS
) -> tuple[tuple[str, ...], ...]:
    """The weight-, input- and output-stationary orders of a level's active loops (the operand's
    irrelevant loops innermost, so its tile stays while they run), deduplicated by signature."""
    reps: dict[tuple, tuple[str, ...]] = {}
    for x in operands:
        order = tuple(d for d in active if d in RELEVANT[x]) + tuple(
            d for d in active if d not in RELEVANT[x]
        )
        reps.setdefault(order_signature(order, operands), order)
    return tuple(reps.values())


def full_rank(order: tuple[str, ...]) -> list[int]:
    """Position of every dim (in DIMS order) in a level's full loop order: the given loops
    outermost, the rest after them in DIMS order."""
    full = list(order) + [d for d in DIMS if d not in order]
    return [full.index(d) for d in DIMS]
