"""The tiling of a layer on the core, chosen as a mapper would: among candidate tilings that fit the
buffers (codax.codegen.core_compile.tiling_fits) -- row blocks, output rows and reduction chunks in
powers of two up to the layer's, x-tiles (output columns in powers of two below the row's) where one
whole output row does not fit, the largest fitting tile, single- and double-buffered -- the one the
cycle model (codax.codegen.core_model, exact for the compiled program) times fastest. Small tiles give
the load of one step the GEMM of the step before to hide behind; large ones pay fewer per-instruction
round trips and reload less: the model weighs both."""

from __future__ import annotations

from codax.codegen.core import CoreShape
from codax.codegen.core_compile import Tiling, blocks_per_vector, choose_tiling, tiling_fits
from codax.codegen.core_layout import Conv


def _powers(limit: int) -> list[int]:
    out, v = [], 1
    while v < limit:
        out.append(v)
        v *= 2
    return [*out, limit]


def candidates(shape: CoreShape, conv: Conv) -> list[Tiling]:
    """The fitting tilings considered: powers of two up to the layer's extent in each of row blocks
    (whole output vectors), output rows and chunks, both buffering modes, and the largest fitting tile.
    Where a tile of one whole output row does not fit (row blocks, chunk and buffering given), x-tiles
    of powers of two output columns below the row's: a search over columns everywhere would time many
    more tilings for layers whose rows fit anyway."""
    per_vec = blocks_per_vector(shape)
    n_blocks = -(-conv.groups * conv.kg // shape.rows)
    n_chunks = -(-conv.groups * conv.cg // shape.cols)
    blocks = sorted({min(n_blocks, b * per_vec) for b in _powers(-(-n_blocks // per_vec))})
    out = {choose_tiling(shape, conv)}
    x_cols = _powers(conv.out[1])[:-1]
    for b in blocks:
        for c in _powers(n_chunks):
            for double in (True, False):
                whole_row = tiling_fits(shape, conv, Tiling(b, 1, c, double))
                for cols in [None] if whole_row else x_cols:
                    for r in _powers(conv.out[0]):
                        t = Tiling(b, r, c, double, cols)
                        if tiling_fits(shape, conv, t):
                            out.add(t)
    return sorted(out, key=lambda t: (t.blocks, t.rows, t.chunk, t.double, t.cols or 0))


def best_tiling(
    shape: CoreShape,
    conv: Conv,
    x_bits: int,
    w_bits: int,
    y_bits: int,
    residual: bool = False,
    r_bits: int = 8,
) -> Tiling:
    """The candidate the cycle model times fastest (ties: the first in `candidates`' order)."""
    from codax.codegen.core_model import layer_cycles

    return min(
        candidates(shape, conv),
        key=lambda t: layer_cycles(shape, conv, x_bits, w_bits, y_bits, residual, r_bits, t).cycles,
    )
