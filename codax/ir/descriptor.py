"""The layer descriptor's layout: the contract between the program (codax.codegen.program writes
descriptors), the engine (codax_engine.h reads them through the generated codax_program.h) and the cost
model (hw/cost.py charges the descriptor's fetch through the DRAM port on every call)."""

from __future__ import annotations

from codax.ir.layer import DIMS, OPERANDS

MAGIC = 0x43445832  # "CDX2": descriptor layout version
MAX_LEVELS = 6  # DRAM + on-chip levels of one engine
MAX_LOOPS = len(DIMS) * MAX_LEVELS
MAX_TRANSFERS = len(OPERANDS) * MAX_LEVELS
BUF_RANK = 5  # W[g][k][c][r][s], I[n][g][c][row][col], O[n][g][k][p][q]
MAX_WINDOW = 4096  # rows or cols of one input window (the engine's rank tables)

# (name, words): the descriptor's layout, in order. Arrays are flattened row-major.
FIELDS: tuple[tuple[str, int], ...] = (
    ("MAGIC", 1),
    ("ENGINE", 1),  # which engine of the accelerator runs the call
    ("IS_FLOAT", 1),
    ("DIM", len(DIMS)),  # N G K C P Q R S
    ("IN_HW", 2),
    ("STRIDE", 2),
    ("DILATION", 2),
    ("PAD", 2),  # top, left (bottom/right padding is implied by the bounds)
    ("BITS", 5),  # weight, input, output, accumulator, residual (storage widths, bits)
    ("SIGNED", 4),  # weight, input, output, residual
    ("ZERO", 4),  # zw, zx, zr, zy
    ("HAS_BIAS", 1),
    ("HAS_RES", 1),
    ("REQUANT", 1),
    ("CLAMP", 2),  # lo, hi as float32 bits
    ("M_RES", 1),  # residual multiplier as float32 bits
    ("W_OFF", 1),  # bytes into the weights blob: weights, bias, multipliers
    ("B_OFF", 1),
    ("M_OFF", 1),
    ("X_OFF", 1),  # bytes into the activation region: input, output, residual, partial-sum scratch
    ("Y_OFF", 1),
    ("R_OFF", 1),
    ("PS_OFF", 1),
    # element strides of the DRAM tensors (a layout, VTA-style): input n, g, c, row, col; output and
    # residual n, g, k, p, q; a run-time weight tensor g, k, c, r, s. The partial-sum scratch is
    # always dense [N][G*K][P][Q].
    ("X_STRIDE", 5),
    ("Y_STRIDE", 5),
    ("R_STRIDE", 5),
    ("W_SRC", 1),  # 0: weights blob (tile order); 1: a run-time tensor in the activation region
    ("W_STRIDE", 5),
    ("NLEV", 1),  # levels including DRAM
    ("NLOOPS", 1),
    ("LOOP_LEVEL", MAX_LOOPS),
    ("LOOP_DIM", MAX_LOOPS),
    ("LOOP_FACTOR", MAX_LOOPS),
    ("LOOP_BLK", MAX_LOOPS),
    ("SP_DIM", 2),  # rows, cols: the dim unrolled (-1: none)
    ("SP_K", 2),  # rows, cols: the spatial factor
    ("SP_BLK", len(DIMS)),  # index step of one spatial position per dim
    ("NTR", 1),
    ("TR_OP", MAX_TRANSFERS),  # 0 W, 1 I, 2 O; sorted by (pos, level, operand)
    ("TR_H", MAX_TRANSFERS),
    ("TR_PARENT", MAX_TRANSFERS),
    ("TR_POS", MAX_TRANSFERS),
    ("TR_TILE", MAX_TRANSFERS * len(DIMS)),
    ("BUF_SHAPE", len(OPERANDS) * MAX_LEVELS * BUF_RANK),  # [operand][level][5]
    ("BUF_BASE", len(OPERANDS) * MAX_LEVELS),  # byte offset of copy 0 in the level's array
    ("BUF_COPY", len(OPERANDS) * MAX_LEVELS),  # bytes from copy 0 to copy 1 (ping-pong)
    ("DB", MAX_LEVELS),
)


def _offsets() -> dict[str, int]:
    out, off = {}, 0
    for name, n in FIELDS:
        out[name] = off
        off += n
    return out


OFFSET = _offsets()
WORDS = sum(n for _, n in FIELDS)
