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

At run time: one 128-bit GEMM instruction (VTA's, core_isa's table: `gemm_format`), read from its
queue and decoded by the top `core_gemm` (VTA's `compute`; its ports and the block design that wires
them: codax/codegen/core_system.py): reset, the mode, a range of micro-ops (VTA's uops: per-step
dst / src / wgt offsets, plus the Q modes' lane offset) and two loops around it, each with its trip
count and dst / src / wgt factors. The step loop is one flattened pipelined loop over iter_out x iter_in x the
micro-ops; the offsets advance by additions only and the loop ends when the counters wrap, so the core
holds no multiply outside the PEs.
"""

from __future__ import annotations

from dataclasses import dataclass

from codax.codegen import core_isa
from codax.codegen.core_isa import Field, InsnFormat, bits_for
from codax.codegen.engine import dram_beat_bytes
from codax.errors import UnsupportedError
from codax.ir import Accelerator

# 2,048 micro-ops: at 4,096 the GEMM instruction of zc706-int8 and zcu102-int8 needs 129 bits (its
# micro-op range takes 12 + 13 bits), one more than VTA's 128-bit word
UOP_DEPTH = 2048
UOP_FIELD_BITS = 16  # dst, src and wgt offsets of a micro-op; then the lane offset
LANE_FIELD_BITS = 8
UOP_BITS = 3 * UOP_FIELD_BITS + LANE_FIELD_BITS
MAX_DEPTH = 1 << UOP_FIELD_BITS
ROW_DIMS = ("K", "G")
COL_DIMS = ("C", "Q")
MODE_CODE = {("K", "C"): 0, ("G", "C"): 1, ("K", "Q"): 2, ("G", "Q"): 3}  # bit 0: rows over G; 1: Q
# the step's pipeline depth: two updates of one accumulator word must be this many steps apart (the
# read-modify-write carries no inter-iteration dependence), and an instruction costs its steps plus
# this many cycles to drain (VTA's cycle model)
PIPELINE_DEPTH = 8


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
    shape = CoreShape(
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
    from codax.codegen import core_load, core_store  # they build on this module's shape

    try:  # every instruction the shape's IPs take must fit its 128 bits
        gemm_format(shape)
        if core_load.load_supported(shape):
            core_load.load_format(shape)
        if core_store.store_supported(shape):
            core_store.store_format(shape)
    except UnsupportedError as e:
        raise UnsupportedError(f"{accel.name}: {e}") from None
    return shape


# ---- the GEMM instruction ---------------------------------------------------------------------------
def loop_bound(shape: CoreShape) -> int:
    """The largest trip count a loop of a convolution's GEMM can need. Each step of a convolution
    pairs an output with one weight and one input, and no pair (output, weight) or (output, input)
    recurs, so a loop either moves the outputs -- at most all accumulator vectors but the sink the
    program reserves (the last one) -- or walks the reduction, moving both the weights and the inputs:
    at most the smaller depth, and in Q modes one input vector less (a step reads vector src + 1 too)."""
    out = 0
    for m in shape.modes:
        reduction = min(m.wgt_depth, m.inp_depth - (1 if m.x_lanes else 0))
        out = max(out, m.acc_depth - 1, reduction)
    return out


def gemm_format(shape: CoreShape) -> InsnFormat:
    """VTA's GEMM instruction for `shape`: reset, the mode, the micro-op range [uop_bgn, uop_end), the
    trip counts of the two loops around it (outer, inner) and each loop's dst / src / wgt factor, each
    as wide as the buffer it steps through (the deepest over the modes, in the mode's units)."""
    iters = bits_for(loop_bound(shape))
    depth = {
        "dst": max(m.acc_depth for m in shape.modes),
        "src": max(m.inp_depth for m in shape.modes),
        "wgt": max(m.wgt_depth for m in shape.modes),
    }
    factors = [Field(f"{op}_factor_{lp}", bits_for(d - 1)) for op, d in depth.items() for lp in ("out", "in")]
    return InsnFormat(
        "gemm",
        (
            Field("reset", 1),
            Field("mode", 2),
            Field("uop_bgn", bits_for(UOP_DEPTH - 1)),
            Field("uop_end", bits_for(UOP_DEPTH)),
            Field("iter_out", iters),
            Field("iter_in", iters),
            *factors,
        ),
    )


def gemm_steps(fields: dict[str, int]) -> int:
    """The steps (cycles at II 1) one GEMM instruction runs: iter_out x iter_in x its micro-ops."""
    uops = max(0, int(fields.get("uop_end", 0)) - int(fields.get("uop_bgn", 0)))
    return int(fields.get("iter_out", 0)) * int(fields.get("iter_in", 0)) * uops


def gemm_cycles(fields: dict[str, int]) -> int:
    """The cycles of one GEMM instruction: its steps, then the pipeline drains (VTA's count)."""
    return gemm_steps(fields) + PIPELINE_DEPTH


# ---- the header ---------------------------------------------------------------------------------------
HEAD = """\
// codax_core.h -- the GEMM core of {name}: a {rows} x {cols} PE array of {op}-bit operands and
// {acc}-bit accumulators (generated by codax/codegen/core.py). What the accelerator fixes is a constant
// here; what a network changes is a field of an instruction.
#pragma once
#include "ap_int.h"
#include "hls_stream.h"

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
const int UOP_DEPTH = {uop_depth};
const int UOP_FIELD_BITS = {field};
// the spatial modes (GemmInsn::mode): bit 0 rows over groups (else output channels), bit 1 columns
// over output columns (else input channels)
{mode_codes}

typedef ap_int<OP_BITS> op_t;
typedef ap_int<2 * OP_BITS> prod_t;
typedef ap_int<ACC_BITS> acc_t;
typedef ap_uint<UOP_FIELD_BITS> idx_t;  // a buffer offset
typedef ap_uint<{lane}> lane_t;  // a lane of COLS: the funnel's shift is a COLS:1 select
typedef ap_uint<{uop}> uop_t;  // dst | src | wgt offsets, then the lane offset (Q modes)
typedef ap_uint<{uop_cnt}> uop_cnt_t;  // a micro-op index, up to UOP_DEPTH
typedef ap_uint<{iter}> iter_t;  // a loop counter
typedef ap_uint<OP_BITS * COLS> col_vec_t;  // COLS lanes: one row of a buffer word
typedef ap_uint<2 * OP_BITS * COLS> col_pair_t;  // two adjacent input vectors, for the funnel shift

// the instruction words (codax/codegen/core_isa.py): 128 bits, opcode and dependence flags first
{isa}
{gemm}
// Lane i of a packed vector, as the signed operand.
#define CODAX_LANE(vec, i) op_t((vec).range(OP_BITS * (i) + OP_BITS - 1, OP_BITS * (i)))
{tail}
}}  // namespace codax_core
"""

UNIT_HEAD = """\
// core.cpp -- the core engine's IPs, each a synthesis top of its own (TVM VTA's fetch, load, compute and
// store), generated by codax/codegen/core.py. No buffer is declared here: each IP reaches the shared
// buffers through its `bram` ports, and the block design (core_system.cpp) instantiates each buffer once
// and wires the ports. C-simulation reaches the IPs through hooks (core_hooks.h) only.
#include "codax_core.h"
#include "core_hooks.h"

namespace codax_core {
"""

STEP = """\
    const uop_t uop = uop_buf[upc];
    const idx_t dst = idx_t(uop.range(UOP_FIELD_BITS - 1, 0)) + dst_off;
    const idx_t src = idx_t(uop.range(2 * UOP_FIELD_BITS - 1, UOP_FIELD_BITS)) + src_off;
    const idx_t wgt = idx_t(uop.range(3 * UOP_FIELD_BITS - 1, 2 * UOP_FIELD_BITS)) + wgt_off;
    const lane_t lane = uop.range(uop_t::width - 1, 3 * UOP_FIELD_BITS);  // the field holds < COLS

    // one word of each buffer (two adjacent input words: the funnel may cross into the next); an
    // operand of fewer lanes than a word is a vector of the word, addressed in its own units
    const idx_t w_word = x_cols ? idx_t(wgt >> LOG_COLS) : wgt;  // Q: ROWS-lane weight vectors
    const lane_t w_lane = wgt & (COLS - 1);
    const idx_t i_word = group_rows ? src : idx_t(src >> LOG_ROWS);  // K: COLS-lane input vectors
    const idx_t i_row = src & (ROWS - 1);
    const idx_t i_next = i_word == INP_WORDS - 1 ? idx_t(0) : idx_t(i_word + 1);  // stays in the buffer
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
      // only the Q modes' funnel reads the next word: the C modes leave port A to the load's writes
      x_next[r] = x_cols ? inp_buf[i_next][r] : col_vec_t(0);
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
#pragma HLS BIND_OP variable=p op=mul impl=dsp
        prod[r][c] = p;
        sum += p;  // C: the adder tree over the row
      }
      row_sum[r] = sum;
    }

    // one read-modify-write of one accumulator word: Q every PE's own, C one column of row sums; reset
    // writes zero (VTA's reset_reg: the products are not used)
  ACC:
    for (int r = 0; r < ROWS; ++r) {
      for (int c = 0; c < COLS; ++c) {
        const bool mine = x_cols || c == a_col;
        const acc_t add = x_cols ? acc_t(prod[r][c]) : row_sum[r];
        const acc_t old = acc_buf[a_word][r][c];
        acc_buf[a_word][r][c] = !mine ? old : reset ? acc_t(0) : acc_t(old + add);
      }
    }
"""

ADVANCE = """\
    // advance VTA's three loops (micro-ops innermost, then iter_in, then iter_out), flattened: the
    // offsets of a loop grow by its factors, a wrapped inner loop restarts from the outer offsets, and
    // the step loop ends when every counter wraps
    if (upc != uop_last) {
      upc = upc + 1;
    } else {
      upc = insn.uop_bgn;
      if (i_in != in_last) {
        i_in = i_in + 1;
        dst_off = dst_off + insn.dst_factor_in;
        src_off = src_off + insn.src_factor_in;
        wgt_off = wgt_off + insn.wgt_factor_in;
      } else {
        i_in = 0;
        const idx_t dst_next = dst_out + insn.dst_factor_out;
        const idx_t src_next = src_out + insn.src_factor_out;
        const idx_t wgt_next = wgt_out + insn.wgt_factor_out;
        dst_out = dst_next;
        src_out = src_next;
        wgt_out = wgt_next;
        dst_off = dst_next;
        src_off = src_next;
        wgt_off = wgt_next;
        more = i_out != out_last;
        i_out = i_out + 1;
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
void core_gemm(hls::stream<insn_t> &gemm_queue, hls::stream<bool> &l2g_dep_queue,
               hls::stream<bool> &s2g_dep_queue, hls::stream<bool> &g2l_dep_queue,
               hls::stream<bool> &g2s_dep_queue, const uop_t uop_buf[UOP_DEPTH],
               const col_vec_t wgt_buf[WGT_WORDS][ROWS], const col_vec_t inp_buf[INP_WORDS][ROWS],
               acc_t acc_buf[ACC_WORDS][ROWS][COLS]) {{
#pragma HLS INTERFACE axis port=gemm_queue
#pragma HLS INTERFACE axis port=l2g_dep_queue
#pragma HLS INTERFACE axis port=s2g_dep_queue
#pragma HLS INTERFACE axis port=g2l_dep_queue
#pragma HLS INTERFACE axis port=g2s_dep_queue
  // the buffers' ports (core_system.cpp wires them): a micro-op, a weight word and an accumulator word
  // read a step on the read ports of simple dual-port RAMs, the accumulator word written back through
  // the write port; the inputs on both ports of a true dual-port RAM (the funnel's two words)
#pragma HLS INTERFACE bram port=uop_buf storage_type=ram_s2p
#pragma HLS INTERFACE bram port=wgt_buf storage_type=ram_s2p
#pragma HLS INTERFACE bram port=inp_buf storage_type=ram_t2p
#pragma HLS INTERFACE bram port=acc_buf storage_type=ram_s2p
#pragma HLS INTERFACE s_axilite port=return bundle=CONTROL_BUS
#pragma HLS ARRAY_RESHAPE variable=wgt_buf complete dim=2
#pragma HLS ARRAY_RESHAPE variable=inp_buf complete dim=2
#pragma HLS ARRAY_RESHAPE variable=acc_buf complete dim=2
#pragma HLS ARRAY_RESHAPE variable=acc_buf complete dim=3
  const GemmInsn insn = decode_gemm(gemm_queue.read());
  // VTA's handshake: the loads it reads are in (l2g), the store has read what it overwrites (s2g)
  if (insn.pop_prev) l2g_dep_queue.read();
  if (insn.pop_next) s2g_dep_queue.read();
{flags}  const bool reset = insn.reset == 1;
  // the counters and offsets: registers, advanced by additions only (the last values are computed
  // once; an empty range or loop runs no step)
  const uop_cnt_t uop_last = insn.uop_end - 1;
  const iter_t in_last = insn.iter_in - 1;
  const iter_t out_last = insn.iter_out - 1;
  uop_cnt_t upc = insn.uop_bgn;
  iter_t i_in = 0, i_out = 0;
  idx_t dst_out = 0, src_out = 0, wgt_out = 0;  // the outer loop's offsets
  idx_t dst_off = 0, src_off = 0, wgt_off = 0;  // both loops': the step's
  bool more = insn.iter_out != 0 && insn.iter_in != 0 && insn.uop_end > insn.uop_bgn;
STEP:
  while (more) {{
#pragma HLS PIPELINE II=1
    // the program keeps updates of one accumulator word at least PIPELINE_DEPTH (8) steps apart (VTA's
    // rule: outputs innermost in the micro-ops, runs padded to a multiple of 8): stated as the
    // dependence's distance, HLS schedules the read-modify-write within it or raises the II, rather than
    // the hazard going unreported
#pragma HLS DEPENDENCE variable=acc_buf type=inter direction=RAW dependent=true distance=8
    CODAX_CORE_TRIP(CODAX_TRIP_GEMM);
{step}
{advance}  }}
  // the buffers it read are free for the next load (g2l), the accumulators ready for the store (g2s)
  if (insn.push_prev) g2l_dep_queue.write(true);
  if (insn.push_next) g2s_dep_queue.write(true);
}}
"""


FETCH = """
// ---- the fetch IP (VTA's fetch): the program's instructions, from DRAM, into each module's queue ----
// Two processes in a DATAFLOW region: one reads the program's beats as one burst (a sequential,
// unconditional read: UG1399's burst conditions), one takes INSNS_PER_BEAT instructions from each beat
// and writes each to its module's queue, one a cycle.
const int INSNS_PER_BEAT = BEAT_BITS / INSN_BITS;
const int LOG_INSNS_PER_BEAT = {log_ipb};

static void fetch_beats(ap_uint<32> beats, const beat_t *insns, hls::stream<beat_t> &program) {{
BEATS_IN:
  for (ap_uint<32> b = 0; b < beats; ++b) {{
#pragma HLS PIPELINE II=1
    program.write(insns[b]);
  }}
}}

static void fetch_dispatch(ap_uint<32> insn_count, hls::stream<beat_t> &program,
                           hls::stream<insn_t> &load_queue, hls::stream<insn_t> &gemm_queue,
                           hls::stream<insn_t> &store_queue) {{
  beat_t beat = 0;
INSNS:
  for (ap_uint<32> pc = 0; pc < insn_count; ++pc) {{
#pragma HLS PIPELINE II=1
    // instruction pc is word (pc mod INSNS_PER_BEAT) of the current beat; a new beat every INSNS_PER_BEAT
    if ((pc & (INSNS_PER_BEAT - 1)) == 0) beat = program.read();
    insn_t raw = 0;
  PICK:
    for (int j = 0; j < INSNS_PER_BEAT; ++j)
      if (j == (pc & (INSNS_PER_BEAT - 1))) raw = beat.range(INSN_BITS * j + INSN_BITS - 1, INSN_BITS * j);
    const int op = raw.range(2, 0).to_int();
    // FINISH ends the program on the host's side: no module runs it
    if (op == OP_LOAD)
      load_queue.write(raw);
    else if (op == OP_GEMM)
      gemm_queue.write(raw);
    else if (op == OP_STORE)
      store_queue.write(raw);
  }}
}}

void core_fetch(ap_uint<32> insn_count, const beat_t *insns, hls::stream<insn_t> &load_queue,
                hls::stream<insn_t> &gemm_queue, hls::stream<insn_t> &store_queue) {{
#pragma HLS INTERFACE s_axilite port=insn_count bundle=CONTROL_BUS
#pragma HLS INTERFACE m_axi port=insns offset=slave bundle=ins_port
#pragma HLS INTERFACE axis port=load_queue
#pragma HLS INTERFACE axis port=gemm_queue
#pragma HLS INTERFACE axis port=store_queue
#pragma HLS INTERFACE s_axilite port=return bundle=CONTROL_BUS
#pragma HLS DATAFLOW
  hls::stream<beat_t> program("program");
#pragma HLS STREAM variable=program depth=16
  fetch_beats((insn_count + INSNS_PER_BEAT - 1) >> LOG_INSNS_PER_BEAT, insns, program);
  fetch_dispatch(insn_count, program, load_queue, gemm_queue, store_queue);
}}
"""

GEMM_PROTO = """
void core_gemm(hls::stream<insn_t> &gemm_queue, hls::stream<bool> &l2g_dep_queue,
               hls::stream<bool> &s2g_dep_queue, hls::stream<bool> &g2l_dep_queue,
               hls::stream<bool> &g2s_dep_queue, const uop_t uop_buf[UOP_DEPTH],
               const col_vec_t wgt_buf[WGT_WORDS][ROWS], const col_vec_t inp_buf[INP_WORDS][ROWS],
               acc_t acc_buf[ACC_WORDS][ROWS][COLS]);
"""

ENGINE_PROTOS = """
void core_fetch(ap_uint<32> insn_count, const beat_t *insns, hls::stream<insn_t> &load_queue,
                hls::stream<insn_t> &gemm_queue, hls::stream<insn_t> &store_queue);
void core_load(hls::stream<insn_t> &load_queue, const beat_t *dram, hls::stream<bool> &g2l_dep_queue,
               hls::stream<bool> &l2g_dep_queue, uop_t uop_buf[UOP_DEPTH], col_vec_t wgt_buf[WGT_WORDS][ROWS],
               col_vec_t inp_buf[INP_WORDS][ROWS], param_t param_buf[PARAM_DEPTH]);
void core_store(hls::stream<insn_t> &store_queue, hls::stream<bool> &g2s_dep_queue,
                hls::stream<bool> &s2g_dep_queue, beat_t *out, const beat_t *res,
                const acc_t acc_buf[ACC_WORDS][ROWS][COLS], const param_t param_buf[PARAM_DEPTH]);
"""


def full_engine(shape: CoreShape) -> bool:
    """Whether the shape gets the whole engine -- fetch, load, GEMM and store -- rather than the GEMM
    alone (whose buffers C-simulation fills)."""
    from codax.codegen import core_load, core_store

    return core_load.load_supported(shape) and core_store.store_supported(shape)


def core_tops(shape: CoreShape) -> tuple[str, ...]:
    """The synthesis tops core.cpp defines for `shape`, each an IP of the block design."""
    return ENGINE_TOPS if full_engine(shape) else CORE_TOPS


def core_header(shape: CoreShape) -> str:
    """codax_core.h for `shape`: what the accelerator fixes (array, widths, words), the instructions,
    and the IPs' prototypes (the block design and C-simulation call them)."""
    from codax.codegen import core_load

    codes = "\n".join(f"const int MODE_{m.name.upper()} = {m.code};" for m in shape.modes)
    fmt = gemm_format(shape)
    bits = {f.name: f.bits for f in fmt.fields}
    full = full_engine(shape)
    tail = (core_load.load_types(shape) if full else "") + GEMM_PROTO + (ENGINE_PROTOS if full else "")
    return HEAD.format(
        name=shape.name, rows=shape.rows, cols=shape.cols, log_rows=shape.rows.bit_length() - 1,
        log_cols=shape.cols.bit_length() - 1, op=shape.op_bits, acc=shape.acc_bits,
        wgt_words=shape.wgt_words, inp_words=shape.inp_words, acc_words=shape.acc_words,
        log_acc_words=shape.acc_words.bit_length() - 1, uop_depth=UOP_DEPTH, field=UOP_FIELD_BITS,
        lane=max(1, shape.cols.bit_length() - 1), uop=UOP_BITS, uop_cnt=bits["uop_end"],
        iter=bits["iter_out"],
        mode_codes=codes, isa=core_isa.isa_header() + f"const int INSN_BITS = {core_isa.INSN_BITS};\n",
        gemm=fmt.cpp(), tail=tail,
    )  # fmt: skip


def core_unit(shape: CoreShape) -> str:
    """core.cpp for `shape`: the synthesis tops only -- core_gemm(queue, tokens, buffers), and where
    the shape has the load and store paths core_fetch, core_load (codax/codegen/core_load.py) and
    core_store (core_store.py). No buffer and no C-simulation code: core_system.cpp and core_csim.cpp."""
    from codax.codegen import core_load, core_store

    top = TOP.format(flags=_mode_flags(shape), step=STEP, advance=ADVANCE)
    head = UNIT_HEAD
    rest = ""
    if full_engine(shape):
        head = head.replace(CORE_INCLUDE, f'{CORE_INCLUDE}#include "{core_store.REQUANT_HEADER}"\n')
        log_ipb = (shape.beat_bits // core_isa.INSN_BITS).bit_length() - 1
        rest = FETCH.format(log_ipb=log_ipb) + core_load.load_source(shape) + core_store.store_source(shape)
    return head + top + rest + "\n}  // namespace codax_core\n"


CORE_INCLUDE = '#include "codax_core.h"\n'
CORE_TOPS = ("core_gemm",)
ENGINE_TOPS = ("core_fetch", "core_load", "core_gemm", "core_store")

SIM = """\
// C-simulation: fill the buffers (what the load path writes) and read the accumulators back
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
"""
LOAD_SIM = """
// C-simulation: one LOAD from DRAM bytes through core_load, the buffers it writes filled and read back
void codax_core_load_run(const unsigned long long *insn, const unsigned char *bytes, int beats) {
  using namespace codax_core;
  beat_t *dram = new beat_t[beats];
  for (int b = 0; b < beats; ++b)
    for (int i = 0; i < BEAT_BITS / 8; ++i)
      dram[b].range(8 * i + 7, 8 * i) = bytes[b * (BEAT_BITS / 8) + i];
  insn_t raw = 0;
  raw.range(63, 0) = insn[0];
  raw.range(127, 64) = insn[1];
  dispatch(raw, dram, 0, 0);
  delete[] dram;
}

// every bit of the four buffers set to the byte's pattern, so that a test sees what a load left alone
void codax_core_load_fill(int byte) {
  using namespace codax_core;
  for (int i = 0; i < UOP_DEPTH; ++i)
    for (int b = 0; b < uop_t::width; ++b) uop_buf[i][b] = (byte >> (b % 8)) & 1;
  for (int i = 0; i < PARAM_DEPTH; ++i)
    for (int b = 0; b < param_t::width; ++b) param_buf[i][b] = (byte >> (b % 8)) & 1;
  for (int d = 0; d < WGT_WORDS; ++d)
    for (int r = 0; r < ROWS; ++r)
      for (int b = 0; b < col_vec_t::width; ++b) wgt_buf[d][r][b] = (byte >> (b % 8)) & 1;
  for (int d = 0; d < INP_WORDS; ++d)
    for (int r = 0; r < ROWS; ++r)
      for (int b = 0; b < col_vec_t::width; ++b) inp_buf[d][r][b] = (byte >> (b % 8)) & 1;
}

void codax_core_load_read_uop(unsigned long long *out) {
  using namespace codax_core;
  for (int i = 0; i < UOP_DEPTH; ++i) out[i] = uop_buf[i].to_uint64();
}

// 16 bytes an entry, little-endian
void codax_core_load_read_param(unsigned char *out) {
  using namespace codax_core;
  for (int i = 0; i < PARAM_DEPTH; ++i)
    for (int j = 0; j < param_t::width / 8; ++j)
      out[i * (param_t::width / 8) + j] = param_buf[i].range(8 * j + 7, 8 * j);
}

// memory MEM_WGT or MEM_INP: [words][ROWS][COLS] lanes as int
void codax_core_load_read_words(int memory, int *out) {
  using namespace codax_core;
  const int words = memory == MEM_WGT ? WGT_WORDS : INP_WORDS;
  for (int d = 0; d < words; ++d)
    for (int r = 0; r < ROWS; ++r)
      for (int c = 0; c < COLS; ++c) {
        const col_vec_t v = memory == MEM_WGT ? wgt_buf[d][r] : inp_buf[d][r];
        out[(d * ROWS + r) * COLS + c] = CODAX_LANE(v, c).to_int();
      }
}
"""

STORE_SIM = """
// C-simulation: the accumulators and param_buf as the GEMM and the loads leave them (acc: int32
// [ACC_WORDS][ROWS][COLS]; params: PARAM_DEPTH entries of param_t::width / 8 little-endian bytes), then one
// STORE through core_store on DRAM bytes (insn: 16 bytes, little-endian)
void codax_store_set(const int *acc, const unsigned char *params) {
  using namespace codax_core;
  for (int d = 0; d < ACC_WORDS; ++d)
    for (int r = 0; r < ROWS; ++r)
      for (int c = 0; c < COLS; ++c) acc_buf[d][r][c] = acc[(d * ROWS + r) * COLS + c];
  for (int e = 0; e < PARAM_DEPTH; ++e)
    for (int i = 0; i < param_t::width / 8; ++i)
      param_buf[e].range(8 * i + 7, 8 * i) = params[e * (param_t::width / 8) + i];
}

void codax_store_run(const unsigned char *insn, unsigned char *out, int out_beats, const unsigned char *res,
                     int res_beats) {
  using namespace codax_core;
  insn_t raw = 0;
  for (int i = 0; i < 16; ++i) raw.range(8 * i + 7, 8 * i) = insn[i];
  beat_t *o = new beat_t[out_beats];
  beat_t *r = new beat_t[res_beats > 0 ? res_beats : 1];
  for (int b = 0; b < out_beats; ++b)
    for (int i = 0; i < BEAT_BITS / 8; ++i) o[b].range(8 * i + 7, 8 * i) = out[b * (BEAT_BITS / 8) + i];
  for (int b = 0; b < res_beats; ++b)
    for (int i = 0; i < BEAT_BITS / 8; ++i) r[b].range(8 * i + 7, 8 * i) = res[b * (BEAT_BITS / 8) + i];
  dispatch(raw, 0, o, r);
  for (int b = 0; b < out_beats; ++b)
    for (int i = 0; i < BEAT_BITS / 8; ++i)
      out[b * (BEAT_BITS / 8) + i] = o[b].range(8 * i + 7, 8 * i).to_uint();
  delete[] o;
  delete[] r;
}
"""


def core_sources(shape: CoreShape) -> dict[str, str]:
    """{relative path: text}: the header, the hooks and the C-simulation header, the requantizer's
    header where the store IP is built, the IPs (core.cpp), the block design (core_system.cpp) and the
    C-simulation entries (core_csim.cpp)."""
    from codax.codegen import core_store
    from codax.codegen import core_system as S

    full = full_engine(shape)
    entries = SIM + (LOAD_SIM + STORE_SIM if full else "")
    files = {
        "include/codax_core.h": core_header(shape),
        f"include/{S.HOOKS_HEADER}": S.hooks_header(),
        f"include/{S.CSIM_HEADER}": S.csim_header(full),
        f"include/{S.SYSTEM_HEADER}": S.system_header(full),
        "core.cpp": core_unit(shape),
        S.SYSTEM_UNIT: S.system_unit(full),
        S.CSIM_UNIT: S.csim_unit(full, entries),
    }
    if full:
        files[f"include/{core_store.REQUANT_HEADER}"] = core_store.requant_header()
    return files
