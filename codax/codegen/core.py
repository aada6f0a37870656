"""The GEMM core of an accelerator, written in TVM VTA's idioms (hardware/xilinx/src/vta.cc `gemm`):
everything the accelerator fixes is a compile-time constant of the generated sources, everything a
network changes is a field of the run-time instruction.

Fixed here (from accel.yaml): the PE array's ROWS x COLS, the operand and accumulator widths (the
widest the array supports: narrower layers are widened by the load path, docs/engine_core.md), the
three buffers -- arrays of packed words, each word ROWS x COLS lanes, `col_vec_t buf[DEPTH][ROWS]`
with `col_vec_t = ap_uint<OP_BITS * COLS>`, reshaped so that one address returns a whole word -- and,
per spatial mode the array declares (a row dim of K / G x a column dim of C / Q), the lane mapping of
one step: which lanes of which words each PE multiplies, which operand is broadcast, which products
an adder tree sums. With R = ROWS and C = COLS:

    mode   weights of a step          inputs of a step             accumulators of a step
    K x C  one word: w[k][c]          C lanes, shared by the rows   R lanes (adder tree over C)
    G x C  one word: w[g][c]          one word: x[g][c]            R lanes (adder tree over C)
    K x Q  R lanes, one per row       C x-lanes, shared by rows     one word: one per PE
    G x Q  R lanes, one per row       R x C x-lanes                 one word: one per PE

An operand of fewer lanes than a word is addressed in its own units (C-lane input vectors, R-lane
weight vectors, R-lane accumulator vectors): the word is the address divided by the vectors a word
holds, the vector within it the remainder -- for the accumulators the other way round (word = address
mod words), so that consecutive outputs land in different words; all powers of two: shifts and
masks. So one buffer of each serves every mode at full capacity, and one multiply per PE serves every
mode: the modes differ only in the multiplexers in front of the multipliers and behind them.

Along Q the C lanes are C consecutive output columns; with stride s their inputs are s apart, so the
load path stores each input row in its x-phase layout (phase p holds x = p, p + s, p + 2s, ...) and
the inputs of a step are C consecutive lanes of one phase row from a lane the micro-op names: the
step reads two adjacent words (the two ports of the bank) and funnel-shifts them.

At run time (GemmInsn): the mode, the first micro-op (VTA's uops: per-step dst / src / wgt offsets,
plus the Q modes' lane offset) and LOOPS loops with trip counts and per-loop dst / src / wgt / micro-op
factors: the micro-op counter is one more offset, so the micro-ops may sit at any level of the nest
(VTA's sit innermost) and the outputs innermost keep updates of one accumulator apart. The step loop is
one flattened pipelined loop over all steps; the offsets advance by additions only (an odometer of
counters, each level holding the offset of the loops above it).
"""

from __future__ import annotations

from dataclasses import dataclass

from codax.codegen.engine import dram_beat_bytes
from codax.errors import UnsupportedError
from codax.ir import Accelerator

LOOPS = 5  # the odometer's loops, innermost first; one of them usually walks the micro-ops
UOP_DEPTH = 4096
UOP_FIELD_BITS = 16  # dst, src and wgt offsets of a micro-op; then the lane offset
LANE_FIELD_BITS = 8
UOP_BITS = 3 * UOP_FIELD_BITS + LANE_FIELD_BITS
MAX_DEPTH = 1 << UOP_FIELD_BITS
ROW_DIMS = ("K", "G")
COL_DIMS = ("C", "Q")
MODE_CODE = {("K", "C"): 0, ("G", "C"): 1, ("K", "Q"): 2, ("G", "Q"): 3}  # bit 0: rows over G; 1: Q
N_FIELDS = 4 + 5 * LOOPS  # GemmInsn's fields as the C-simulation entry takes them


@dataclass(frozen=True)
class CoreMode:
    """One spatial mode: the dim the rows unroll (K output channels or G groups) and the dim the
    columns unroll (C input channels or Q output columns), with the capacity of each buffer in the
    mode's own units (words, or the vectors of fewer lanes it addresses)."""

    row: str
    col: str
    wgt_depth: int
    inp_depth: int
    acc_depth: int

    @property
    def name(self) -> str:
        return f"{self.row.lower()}x{self.col.lower()}"

    @property
    def code(self) -> int:
        return MODE_CODE[(self.row, self.col)]

    @property
    def per_group_inputs(self) -> bool:
        """Rows over groups: each row reads its own group's inputs (else the rows share one vector)."""
        return self.row == "G"

    @property
    def x_lanes(self) -> bool:
        """Columns over output columns: weights broadcast along the row, one accumulator per PE."""
        return self.col == "Q"

    def wgt_lanes(self, rows: int, cols: int) -> tuple[int, ...]:
        return (rows,) if self.x_lanes else (rows, cols)

    def inp_lanes(self, rows: int, cols: int) -> tuple[int, ...]:
        return (rows, cols) if self.per_group_inputs else (cols,)

    def acc_lanes(self, rows: int, cols: int) -> tuple[int, ...]:
        return (rows, cols) if self.x_lanes else (rows,)


@dataclass(frozen=True)
class CoreShape:
    """What the accelerator fixes for its GEMM core: the array, the widths, the depth in words of
    ROWS x COLS lanes of each buffer, and the modes."""

    name: str
    rows: int
    cols: int
    op_bits: int
    acc_bits: int
    wgt_words: int
    inp_words: int
    acc_words: int
    modes: tuple[CoreMode, ...]
    beat_bits: int = 0  # the DRAM port's beat (0: no load path generated)
    in_widths: tuple[int, ...] = ()  # the input widths the load path unpacks, widest first

    def mode(self, name: str) -> CoreMode:
        for m in self.modes:
            if m.name == name:
                return m
        raise KeyError(f"{self.name}: no spatial mode {name!r}; modes are {[m.name for m in self.modes]}")

    @property
    def has_group_rows(self) -> bool:
        return any(m.per_group_inputs for m in self.modes)

    @property
    def has_x_cols(self) -> bool:
        return any(m.x_lanes for m in self.modes)


def core_shape(accel: Accelerator, engine: str | None = None) -> CoreShape:
    """The core's fixed shape: the array, the widest operand width, and the buffers' words from the
    BUF level's bytes per operand (weights and inputs at the operand width, accumulators at the
    accumulator width)."""
    eng = accel.engine(engine)
    pa = eng.pe_array
    if accel.float_ok:
        raise UnsupportedError(f"{accel.name}: the GEMM core is integer only")
    for n, what in ((pa.rows, "rows"), (pa.cols, "columns")):
        if n & (n - 1):
            raise UnsupportedError(
                f"{accel.name}: {n} {what}; the core's vector addressing needs a power of two"
            )
    if pa.cols >= 1 << LANE_FIELD_BITS:
        raise UnsupportedError(f"{accel.name}: {pa.cols} columns exceed the micro-op's lane field")
    op_bits = max(*accel.weight_bits, *accel.act_bits)
    buf = next((lv for lv in eng.levels if not lv.per_pe and set("WIO") <= set(lv.operands)), None)
    if buf is None or buf.sizes is None:
        raise UnsupportedError(f"{accel.name}: the GEMM core needs a buffer level sized per operand")
    lanes = pa.rows * pa.cols
    words = {
        "W": buf.sizes["W"] * 8 // (op_bits * lanes),
        "I": buf.sizes["I"] * 8 // (op_bits * lanes),
        "O": buf.sizes["O"] * 8 // (accel.acc_bits * lanes),
    }
    words["O"] = 1 << (words["O"].bit_length() - 1)  # interleaved accumulator vectors: a power of two
    modes = []
    for row in pa.row_dims:
        for col in pa.col_dims:
            if row not in ROW_DIMS or col not in COL_DIMS:
                continue
            wgt = words["W"] * (pa.cols if col == "Q" else 1)
            inp = words["I"] * (1 if row == "G" else pa.rows)
            acc = words["O"] * (1 if col == "Q" else pa.cols)
            for op, d in (("W", wgt), ("I", inp), ("O", acc)):
                if not 2 <= d <= MAX_DEPTH:
                    raise UnsupportedError(
                        f"{accel.name}: mode {row} x {col} addresses {d} vectors of {op}; the micro-op's "
                        f"{UOP_FIELD_BITS}-bit offsets address 2..{MAX_DEPTH}"
                    )
            modes.append(CoreMode(row, col, wgt, inp, acc))
    if not modes:
        raise UnsupportedError(f"{accel.name}: no spatial mode of rows {ROW_DIMS} x columns {COL_DIMS}")
    return CoreShape(
        accel.name,
        pa.rows,
        pa.cols,
        op_bits,
        accel.acc_bits,
        words["W"],
        words["I"],
        words["O"],
        tuple(modes),
        8 * dram_beat_bytes(accel),
        tuple(sorted(set(accel.act_bits), reverse=True)),
    )


# ---- the header ---------------------------------------------------------------------------------------
HEAD = """\
// codax_core.h -- the GEMM core of {name}: a {rows} x {cols} PE array of {op}-bit operands and
// {acc}-bit accumulators (generated by codax/codegen/core.py). What the accelerator fixes is a constant
// here; what a network changes is a field of GemmInsn.
#pragma once
#include "ap_int.h"

namespace codax_core {{

const int ROWS = {rows};
const int COLS = {cols};
const int LOG_ROWS = {log_rows};
const int LOG_COLS = {log_cols};
const int OP_BITS = {op};
const int ACC_BITS = {acc};
const int WGT_WORDS = {wgt_words};
const int INP_WORDS = {inp_words};
const int ACC_WORDS = {acc_words};
const int LOG_ACC_WORDS = {log_acc_words};
const int LOOPS = {loops};
const int UOP_DEPTH = {uop_depth};
const int UOP_FIELD_BITS = {field};
// the spatial modes (GemmInsn::mode): bit 0 rows over groups (else output channels), bit 1 columns
// over output columns (else input channels)
{mode_codes}

typedef ap_int<OP_BITS> op_t;
typedef ap_int<2 * OP_BITS> prod_t;
typedef ap_int<ACC_BITS> acc_t;
typedef ap_uint<UOP_FIELD_BITS> idx_t;  // a buffer offset or a loop counter
typedef ap_uint<{lane}> lane_t;
typedef ap_uint<{uop}> uop_t;  // dst | src | wgt offsets, then the lane offset (Q modes)
typedef ap_uint<OP_BITS * COLS> col_vec_t;  // COLS lanes: one row of a buffer word
typedef ap_uint<2 * OP_BITS * COLS> col_pair_t;  // two adjacent input vectors, for the funnel shift

// What the network changes: one GEMM instruction (the decoder computes `steps`, the product of the
// trip counts and the micro-op range, so that no multiply is left in the core).
struct GemmInsn {{
  ap_uint<2> mode;
  idx_t uop_begin;
  int steps;
  bool reset;  // write zero instead of accumulating (VTA's reset_reg)
  idx_t trip[LOOPS];  // innermost first
  idx_t dst_factor[LOOPS];
  idx_t src_factor[LOOPS];
  idx_t wgt_factor[LOOPS];
  idx_t uop_factor[LOOPS];
}};

// Lane i of a packed vector, as the signed operand.
#define CODAX_LANE(vec, i) op_t((vec).range(OP_BITS * (i) + OP_BITS - 1, OP_BITS * (i)))

}}  // namespace codax_core
"""

UNIT_HEAD = """\
// core.cpp -- the GEMM core's buffers and its compute IP (synthesis top core_gemm), generated by
// codax/codegen/core.py; the C-simulation entries at the end.
#include "codax_core.h"

namespace codax_core {

static uop_t uop_buf[UOP_DEPTH];
static col_vec_t wgt_buf[WGT_WORDS][ROWS];  // ROWS x COLS weights a word
static col_vec_t inp_buf[INP_WORDS][ROWS];  // ROWS x COLS inputs a word
static acc_t acc_buf[ACC_WORDS][ROWS][COLS];  // ROWS x COLS accumulators a word
"""

COUNTERS_INIT = """\
  // the odometer: cnt[l] counts loop l; *_base[l] is the offset of loops l.. (so *_base[0] is the
  // offset of the step), *_base[LOOPS] stays 0; every one a register, advanced by additions only
  idx_t last[LOOPS], dst_f[LOOPS], src_f[LOOPS], wgt_f[LOOPS], uop_f[LOOPS], cnt[LOOPS];
  idx_t dst_base[LOOPS + 1], src_base[LOOPS + 1], wgt_base[LOOPS + 1], uop_base[LOOPS + 1];
#pragma HLS ARRAY_PARTITION variable=last complete
#pragma HLS ARRAY_PARTITION variable=dst_f complete
#pragma HLS ARRAY_PARTITION variable=src_f complete
#pragma HLS ARRAY_PARTITION variable=wgt_f complete
#pragma HLS ARRAY_PARTITION variable=uop_f complete
#pragma HLS ARRAY_PARTITION variable=cnt complete
#pragma HLS ARRAY_PARTITION variable=dst_base complete
#pragma HLS ARRAY_PARTITION variable=src_base complete
#pragma HLS ARRAY_PARTITION variable=wgt_base complete
#pragma HLS ARRAY_PARTITION variable=uop_base complete
INIT:
  for (int l = 0; l < LOOPS; ++l) {
#pragma HLS UNROLL
    last[l] = insn.trip[l] - 1;
    dst_f[l] = insn.dst_factor[l];
    src_f[l] = insn.src_factor[l];
    wgt_f[l] = insn.wgt_factor[l];
    uop_f[l] = insn.uop_factor[l];
    cnt[l] = 0;
    dst_base[l] = 0;
    src_base[l] = 0;
    wgt_base[l] = 0;
    uop_base[l] = 0;
  }
  dst_base[LOOPS] = 0;
  src_base[LOOPS] = 0;
  wgt_base[LOOPS] = 0;
  uop_base[LOOPS] = 0;
"""

STEP_HEAD = """\
    const uop_t uop = uop_buf[idx_t(insn.uop_begin + uop_base[0])];
    const idx_t dst = idx_t(uop.range(UOP_FIELD_BITS - 1, 0)) + dst_base[0];
    const idx_t src = idx_t(uop.range(2 * UOP_FIELD_BITS - 1, UOP_FIELD_BITS)) + src_base[0];
    const idx_t wgt = idx_t(uop.range(3 * UOP_FIELD_BITS - 1, 2 * UOP_FIELD_BITS)) + wgt_base[0];
    const lane_t lane = uop.range(3 * UOP_FIELD_BITS + lane_t::width - 1, 3 * UOP_FIELD_BITS);

    // one word of each buffer (two adjacent input words: the funnel may cross into the next); an
    // operand of fewer lanes than a word is a vector of the word, addressed in its own units
    const idx_t w_word = x_cols ? idx_t(wgt >> LOG_COLS) : wgt;  // Q: ROWS-lane weight vectors
    const lane_t w_lane = wgt & (COLS - 1);
    const idx_t i_word = group_rows ? src : idx_t(src >> LOG_ROWS);  // K: COLS-lane input vectors
    const idx_t i_row = src & (ROWS - 1);
    const idx_t i_next = i_word + 1;
    // C: ROWS-lane accumulator vectors interleaved over the words (vector v in word v % ACC_WORDS), so
    // that consecutive outputs update different words
    const idx_t a_word = x_cols ? dst : idx_t(dst & (ACC_WORDS - 1));
    const lane_t a_col = dst >> LOG_ACC_WORDS;
    col_vec_t w_rows[ROWS], x_rows[ROWS], x_next[ROWS];
#pragma HLS ARRAY_PARTITION variable=w_rows complete
#pragma HLS ARRAY_PARTITION variable=x_rows complete
#pragma HLS ARRAY_PARTITION variable=x_next complete
  READ:
    for (int r = 0; r < ROWS; ++r) {
      w_rows[r] = wgt_buf[w_word][r];
      x_rows[r] = inp_buf[i_word][r];
      x_next[r] = inp_buf[i_next][r];
    }

    // the PE array: one multiply per PE, whatever the mode; the modes are the multiplexers around it
    prod_t prod[ROWS][COLS];
    acc_t row_sum[ROWS];
#pragma HLS ARRAY_PARTITION variable=prod complete dim=0
#pragma HLS ARRAY_PARTITION variable=row_sum complete
  ROW:
    for (int r = 0; r < ROWS; ++r) {
      // this row's input vector and the one after it (G: its group's; K: the shared vector i_row)
      const col_vec_t lo = group_rows ? x_rows[r] : x_rows[i_row];
      const col_vec_t hi = group_rows ? x_next[r] : (i_row == ROWS - 1 ? x_next[0] : x_rows[i_row + 1]);
      // Q: the COLS x-lanes start `lane` lanes into lo (the x-phase row runs on into hi)
      const col_pair_t pair = (col_pair_t(hi) << (OP_BITS * COLS)) | lo;
      const col_vec_t x_vec = x_cols ? col_vec_t(pair >> (lane * OP_BITS)) : lo;
      acc_t sum = 0;
    COL:
      for (int c = 0; c < COLS; ++c) {
        // C: the weight of (row, column); Q: the row's weight, broadcast along the row
        const op_t w = x_cols ? CODAX_LANE(w_rows[r], w_lane) : CODAX_LANE(w_rows[r], c);
        const op_t x = CODAX_LANE(x_vec, c);
        const prod_t p = w * x;
        prod[r][c] = p;
        sum += p;  // C: the adder tree over the row
      }
      row_sum[r] = sum;
    }

    // one read-modify-write of one accumulator word: Q every PE's own, C one column of row sums
  ACC:
    for (int r = 0; r < ROWS; ++r) {
      for (int c = 0; c < COLS; ++c) {
        const bool mine = x_cols || c == a_col;
        const acc_t add = x_cols ? acc_t(prod[r][c]) : row_sum[r];
        const acc_t old = acc_buf[a_word][r][c];
        acc_buf[a_word][r][c] = !mine ? old : insn.reset ? acc_t(0) : acc_t(old + add);
      }
    }
"""

COUNTERS_ADVANCE = """\
    // advance: the innermost loop, then each loop whose inner loops all wrapped
    bool carry = true;
    bool bump[LOOPS], wrap[LOOPS];
#pragma HLS ARRAY_PARTITION variable=bump complete
#pragma HLS ARRAY_PARTITION variable=wrap complete
  CARRY:
    for (int l = 0; l < LOOPS; ++l) {
      bump[l] = carry && cnt[l] != last[l];
      wrap[l] = carry && cnt[l] == last[l];
      carry = wrap[l];
    }
  ADVANCE:  // outermost first: a wrapped loop restarts from the (new) offset of the loops above it
    for (int i = 0; i < LOOPS; ++i) {
      if (bump[LOOPS - 1 - i]) {
        cnt[LOOPS - 1 - i] = cnt[LOOPS - 1 - i] + 1;
        dst_base[LOOPS - 1 - i] = dst_base[LOOPS - 1 - i] + dst_f[LOOPS - 1 - i];
        src_base[LOOPS - 1 - i] = src_base[LOOPS - 1 - i] + src_f[LOOPS - 1 - i];
        wgt_base[LOOPS - 1 - i] = wgt_base[LOOPS - 1 - i] + wgt_f[LOOPS - 1 - i];
        uop_base[LOOPS - 1 - i] = uop_base[LOOPS - 1 - i] + uop_f[LOOPS - 1 - i];
      } else if (wrap[LOOPS - 1 - i]) {
        cnt[LOOPS - 1 - i] = 0;
        dst_base[LOOPS - 1 - i] = dst_base[LOOPS - i];
        src_base[LOOPS - 1 - i] = src_base[LOOPS - i];
        wgt_base[LOOPS - 1 - i] = wgt_base[LOOPS - i];
        uop_base[LOOPS - 1 - i] = uop_base[LOOPS - i];
      }
    }
"""


def _mode_flags(shape: CoreShape) -> str:
    """The run-time mode bits, or constants where the accelerator has one choice (HLS then drops the
    multiplexers of the modes it lacks)."""
    rows = "insn.mode[0] == 1" if shape.has_group_rows else "false"
    cols = "insn.mode[1] == 1" if shape.has_x_cols else "false"
    if shape.has_group_rows and not any(m.row == "K" for m in shape.modes):
        rows = "true"
    if shape.has_x_cols and not any(m.col == "C" for m in shape.modes):
        cols = "true"
    return f"  const bool group_rows = {rows};\n  const bool x_cols = {cols};\n"


TOP = """
void core_gemm(GemmInsn insn) {{
#pragma HLS ARRAY_RESHAPE variable=wgt_buf complete dim=2
#pragma HLS ARRAY_RESHAPE variable=inp_buf complete dim=2
#pragma HLS ARRAY_RESHAPE variable=acc_buf complete dim=2
#pragma HLS ARRAY_RESHAPE variable=acc_buf complete dim=3
  // the core reads one word of each and writes one accumulator word a step (the load path writes
  // through the other port): simple dual-port, whose 36-bit ports halve the block RAMs of these wide
  // words; the inputs keep both ports for the funnel's two reads
#pragma HLS BIND_STORAGE variable=wgt_buf type=ram_s2p impl=bram
#pragma HLS BIND_STORAGE variable=acc_buf type=ram_s2p impl=bram
#pragma HLS BIND_STORAGE variable=uop_buf type=ram_s2p impl=bram
{flags}{init}
STEP:
  for (int n = 0; n < insn.steps; ++n) {{
#pragma HLS PIPELINE II=1
    // the program keeps updates of one accumulator word at least the pipeline's depth apart (VTA's
    // rule): the reduction loops outside the loops over outputs
#pragma HLS DEPENDENCE variable=acc_buf inter false
{step}{advance}  }}
}}
"""


def core_header(shape: CoreShape) -> str:
    """codax_core.h for `shape`: what the accelerator fixes (array, widths, words) and the instruction."""
    codes = "\n".join(f"const int MODE_{m.name.upper()} = {m.code};" for m in shape.modes)
    return HEAD.format(
        name=shape.name, rows=shape.rows, cols=shape.cols, log_rows=shape.rows.bit_length() - 1,
        log_cols=shape.cols.bit_length() - 1, op=shape.op_bits, acc=shape.acc_bits,
        wgt_words=shape.wgt_words, inp_words=shape.inp_words, acc_words=shape.acc_words,
        log_acc_words=shape.acc_words.bit_length() - 1, loops=LOOPS,
        uop_depth=UOP_DEPTH, field=UOP_FIELD_BITS, lane=LANE_FIELD_BITS, uop=UOP_BITS, mode_codes=codes,
    )  # fmt: skip


def core_unit(shape: CoreShape) -> str:
    """core.cpp for `shape`: the buffers, the synthesis top core_gemm(GemmInsn), then the C-simulation
    entries (outside the synthesis view)."""
    from codax.codegen import core_load  # it builds on this module's shape

    top = TOP.format(flags=_mode_flags(shape), init=COUNTERS_INIT, step=STEP_HEAD, advance=COUNTERS_ADVANCE)
    load = core_load.load_supported(shape)
    load_top = core_load.load_source(shape) if load else ""
    sim = SIM.replace('}  // extern "C"', (core_load.LOAD_SIM if load else "") + '}  // extern "C"')
    return (
        UNIT_HEAD + top + load_top + "\n}  // namespace codax_core\n\n"
        "#if !defined(__SYNTHESIS__) && !defined(CODAX_SYNTHESIS_VIEW)\n" + sim + "#endif\n"
    )


CORE_TOPS = ("core_gemm",)

SIM = """\
// C-simulation only: ctypes entries that fill the buffers (what the load path writes), run one
// instruction and read the accumulators back. No synthesis top reaches them.
extern "C" {
void codax_core_load(const unsigned long long *uops, int n_uops, const signed char *wgt,
                     const signed char *inp, const int *acc) {
  using namespace codax_core;
  for (int i = 0; i < n_uops; ++i) uop_buf[i] = uops[i];
  for (int d = 0; d < WGT_WORDS; ++d)
    for (int r = 0; r < ROWS; ++r)
      for (int c = 0; c < COLS; ++c)
        wgt_buf[d][r].range(OP_BITS * c + OP_BITS - 1, OP_BITS * c) = wgt[(d * ROWS + r) * COLS + c];
  for (int d = 0; d < INP_WORDS; ++d)
    for (int r = 0; r < ROWS; ++r)
      for (int c = 0; c < COLS; ++c)
        inp_buf[d][r].range(OP_BITS * c + OP_BITS - 1, OP_BITS * c) = inp[(d * ROWS + r) * COLS + c];
  for (int d = 0; d < ACC_WORDS; ++d)
    for (int r = 0; r < ROWS; ++r)
      for (int c = 0; c < COLS; ++c) acc_buf[d][r][c] = acc[(d * ROWS + r) * COLS + c];
}

void codax_core_read(int *acc) {
  using namespace codax_core;
  for (int d = 0; d < ACC_WORDS; ++d)
    for (int r = 0; r < ROWS; ++r)
      for (int c = 0; c < COLS; ++c) acc[(d * ROWS + r) * COLS + c] = acc_buf[d][r][c].to_int();
}

// f: mode, uop_begin, steps, reset, then trip / dst / src / wgt / uop factor of each loop
void codax_core_run(const int *f) {
  using namespace codax_core;
  GemmInsn insn;
  insn.mode = f[0];
  insn.uop_begin = f[1];
  insn.steps = f[2];
  insn.reset = f[3] != 0;
  for (int l = 0; l < LOOPS; ++l) {
    insn.trip[l] = f[4 + l];
    insn.dst_factor[l] = f[4 + LOOPS + l];
    insn.src_factor[l] = f[4 + 2 * LOOPS + l];
    insn.wgt_factor[l] = f[4 + 3 * LOOPS + l];
    insn.uop_factor[l] = f[4 + 4 * LOOPS + l];
  }
  core_gemm(insn);
}
}  // extern "C"
"""


def core_sources(shape: CoreShape) -> dict[str, str]:
    """{relative path: text}: the header and the core's translation unit."""
    return {"include/codax_core.h": core_header(shape), "core.cpp": core_unit(shape)}
