"""The core engine's cycles for one layer, from its dimensions and tiling alone: the timeline of the
program codax.codegen.core_compile emits, as codax.codegen.core_sim's scheduler times it, without
building the instructions or running C-simulation (a search calls it per layer and accelerator).

The program is a sequence of steps (one per tile and reduction chunk, tiles over row blocks, then output
rows, then x-tiles within a row). Per step k:
  [barrier]   a GEMM of no steps before the first step of each parameter window after the first: it
              starts when the GEMM module is free and the stores are done, and the group waits for it
  load group  [parameters, a window's first step] [micro-op kernel, when the buffer half holds another
              tile height]
              the chunk's weights, one input load per channel block (the tile's input window: its
              real rows x columns, with the padding around them);
  GEMM module [reset, when k opens a tile] the accumulating GEMM;
  stores      one per output vector block, after the GEMM that closes a tile.
Each instruction costs codax.codegen.core_cycles.insn_cycles of its fields, and starts when its module
is free and the tokens it pops were pushed, so (D = 2 double-buffered, 1 single):
  load k   starts at max(end of load k-1, end of GEMM k-D)       (the half it overwrites is read)
  reset k  starts at max(end of GEMM k-1, end of load k, end of the previous tile's stores)
  GEMM k   starts at max(end of the GEMM module, end of load k)  (after its reset, if any)
  stores   start at max(end of the previous stores, end of the tile's last GEMM), back to back.
The layer ends with its last store. The recurrence is max-plus over the steps, exact for the program
the compiler emits; it costs a few microseconds per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from codax.codegen.core import CoreShape
from codax.codegen.core_compile import (
    Tiling,
    channel_window,
    in_cols,
    in_rows,
    output_tiles,
    padding_rows,
    param_windows,
    row_block_tiles,
    store_slot,
    tile_pixels,
    tile_stores,
    width_code,
)
from codax.codegen.core_cycles import insn_cycles
from codax.codegen.core_layout import Conv


@dataclass(frozen=True)
class LayerCycles:
    """A layer's cycles and where they go. The GEMM module's time is its busy cycles plus the cycles it
    waits: `exposed_load` (for a load group it needs: the loads double buffering does not hide) and
    `exposed_store` (for the previous tile's stores before a reset, and the last tile's stores after
    the last GEMM), so cycles = gemm + exposed_load + exposed_store."""

    cycles: int
    load: int  # busy cycles of each module
    gemm: int
    store: int
    exposed_load: int
    exposed_store: int
    steps: int  # GEMMs that accumulate (tiles x reduction chunks)
    tiles: int


def layer_cycles(
    shape: CoreShape, conv: Conv, x_bits: int, w_bits: int, y_bits: int, residual: bool = False,
    r_bits: int = 8, tiling: Tiling | None = None,
) -> LayerCycles:  # fmt: skip
    """The cycles of the layer's program under core_sim's timing (`residual` and `r_bits`: the layer's
    residual, which the store reads)."""
    if tiling is None:  # the compiler's choice (codax.codegen.core_compile.compile_layer)
        from codax.codegen.core_tiling import best_tiling

        tiling = best_tiling(shape, conv, x_bits, w_bits, y_bits, residual, r_bits)
    xcode, wcode, ycode = (width_code(shape, b, w) for b, w in ((x_bits, "input"), (w_bits, "weight"),
                                                                 (y_bits, "output")))  # fmt: skip
    taps = conv.r * conv.s
    k_all = conv.groups * conv.kg
    windows = param_windows(shape, k_all, tiling.blocks)
    depth = 2 if tiling.double else 1

    # the instructions' cycles by their fields, once per distinct instruction (tiles repeat)
    @cache
    def cycles(kind: str, *fields: tuple[str, int]) -> int:
        return insn_cycles(shape, kind, dict(fields), res_bits=r_bits)

    def load(**f) -> int:
        return cycles("load", *f.items())

    def gemm(steps: int) -> int:
        return cycles("gemm", ("iter_out", 1), ("iter_in", 1), ("uop_end", steps))

    # the timeline: the end of each module's last instruction, and of every GEMM (load k waits for k - D)
    load_end = gemm_end = store_end = 0
    gemm_ends: list[int] = []
    busy_load = busy_gemm = busy_store = 0
    exp_load = exp_store = 0
    resident: dict[int, tuple[int, int]] = {}  # buffer half -> the tile shape whose micro-ops it holds
    k = tiles = 0
    for b0, nb, w_index, w_lo in row_block_tiles(windows, tiling.blocks):
        cb_lo, cb_hi = channel_window(shape, conv, b0, nb)
        opens_window = b0 == w_lo
        for y0, x0, th, tw in output_tiles(conv, tiling):
            p, rows_in = tile_pixels(th, tw), in_rows(conv, th)
            _, n_cols, left, right = in_cols(conv, x0, tw)
            _, top, bot = padding_rows(conv, y0, rows_in)
            real = max(0, rows_in - top - bot)
            rows_pad = (top, bot) if real else (rows_in, 0)  # a window of padding rows only: all before
            inp = load(memory=2, width=xcode, y_pad_0=rows_pad[0], y_size=real, y_pad_1=rows_pad[1],
                       x_size=n_cols - left - right, x_pad_0=left, x_pad_1=right)  # fmt: skip
            uops = load(memory=0, y_size=1, x_size=p * (1 + taps))
            for c0 in range(cb_lo, cb_hi, tiling.chunk):
                nc = min(tiling.chunk, cb_hi - c0)
                half = k % depth
                group = 0
                barrier_end = 0
                if opens_window and y0 == 0 and x0 == 0 and c0 == cb_lo:  # the window's parameters
                    entries = 1 + min(windows[w_index][1] * shape.rows, k_all) - w_lo * shape.rows
                    group = load(memory=3, y_size=1, x_size=entries)
                    if k:  # a later window: the barrier GEMM waits for the stores, the group for it
                        ready = max(gemm_end, store_end)
                        exp_store += ready - gemm_end
                        barrier_end = gemm_end = ready + gemm(0)
                        busy_gemm += gemm(0)
                if resident.get(half) != (th, tw):
                    group += uops
                    resident[half] = (th, tw)
                group += load(memory=1, width=wcode, y_size=nb, x_size=nc * taps) + nc * inp
                start = max(load_end, gemm_ends[k - depth]) if k >= depth else load_end
                start = max(start, barrier_end)
                load_end = start + group
                busy_load += group
                # the GEMM module: a reset opening the tile, then the chunk's GEMM
                ready = max(gemm_end, load_end)
                exp_load += ready - gemm_end
                if c0 == cb_lo:  # the tile opens: its reset
                    if store_end > ready:
                        exp_store += store_end - ready
                        ready = store_end
                    reset = gemm(nb * p)
                    ready += reset
                    busy_gemm += reset
                run = gemm(nb * nc * p * taps)
                gemm_end = ready + run
                busy_gemm += run
                gemm_ends.append(gemm_end)
                k += 1
            # the tile's stores, one per output vector block, after its last GEMM
            stores = sum(
                cycles("store", ("y_size", th), ("x_size", tw), ("width", ycode),
                       *store_slot(shape, blocks, part).items(), ("res", int(residual)))
                for _, _, blocks, part in tile_stores(shape, k_all, b0, nb)
            )  # fmt: skip
            store_end = max(store_end, gemm_end) + stores
            busy_store += stores
            tiles += 1
    exp_store += store_end - gemm_end
    return LayerCycles(store_end, busy_load, busy_gemm, busy_store, exp_load, exp_store, k, tiles)
