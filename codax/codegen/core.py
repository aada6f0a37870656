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

At run time: one 128-bit GEMM instruction (VTA's, core_isa's table: `gemm_format`), decoded by the top
`core_gemm(insn_t)`: reset, the mode, a range of micro-ops (VTA's uops: per-step dst / src / wgt
offsets, plus the Q modes' lane offset) and two loops around it, each with its trip count and dst /
src / wgt factors. The step loop is one flattened pipelined loop over iter_out x iter_in x the
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
    try:
        gemm_format(shape)
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
typedef ap_uint<{lane}> lane_t;
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

STEP = """\
    const uop_t uop = uop_buf[upc];
    const idx_t dst = idx_t(uop.range(UOP_FIELD_BITS - 1, 0)) + dst_off;
    const idx_t src = idx_t(uop.range(2 * UOP_FIELD_BITS - 1, UOP_FIELD_BITS)) + src_off;
    const idx_t wgt = idx_t(uop.range(3 * UOP_FIELD_BITS - 1, 2 * UOP_FIELD_BITS)) + wgt_off;
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
void core_gemm(insn_t raw) {{
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
  const GemmInsn insn = decode_gemm(raw);
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
    // the program keeps updates of one accumulator word at least the pipeline's depth apart (VTA's
    // rule): outputs innermost in the micro-ops, short runs padded to a sink vector
#pragma HLS DEPENDENCE variable=acc_buf inter false
{step}
{advance}  }}
}}
"""


def core_header(shape: CoreShape) -> str:
    """codax_core.h for `shape`: what the accelerator fixes (array, widths, words) and the instruction."""
    codes = "\n".join(f"const int MODE_{m.name.upper()} = {m.code};" for m in shape.modes)
    fmt = gemm_format(shape)
    bits = {f.name: f.bits for f in fmt.fields}
    return HEAD.format(
        name=shape.name, rows=shape.rows, cols=shape.cols, log_rows=shape.rows.bit_length() - 1,
        log_cols=shape.cols.bit_length() - 1, op=shape.op_bits, acc=shape.acc_bits,
        wgt_words=shape.wgt_words, inp_words=shape.inp_words, acc_words=shape.acc_words,
        log_acc_words=shape.acc_words.bit_length() - 1, uop_depth=UOP_DEPTH, field=UOP_FIELD_BITS,
        lane=LANE_FIELD_BITS, uop=UOP_BITS, uop_cnt=bits["uop_end"], iter=bits["iter_out"],
        mode_codes=codes, isa=core_isa.isa_header(), gemm=fmt.cpp(),
    )  # fmt: skip


def core_unit(shape: CoreShape) -> str:
    """core.cpp for `shape`: the buffers, the synthesis top core_gemm(insn_t), the load and store IPs
    where the shape has them (codax/codegen/core_load.py, core_store.py), then the C-simulation entries
    (outside the synthesis view)."""
    from codax.codegen import core_load, core_store  # they build on this module's shape

    top = TOP.format(flags=_mode_flags(shape), step=STEP, advance=ADVANCE)
    load = core_load.load_supported(shape)
    store = load and core_store.store_supported(shape)  # the store reads param_buf, which the load declares
    load_top = core_load.load_source(shape) if load else ""
    store_top = core_store.store_source(shape) if store else ""
    sims = (core_load.LOAD_SIM if load else "") + (core_store.STORE_SIM if store else "")
    sim = SIM.replace('}  // extern "C"', sims + '}  // extern "C"')
    head = UNIT_HEAD
    if store:
        head = head.replace(CORE_INCLUDE, f'{CORE_INCLUDE}#include "{core_store.REQUANT_HEADER}"\n')
    return (
        head + top + load_top + store_top + "\n}  // namespace codax_core\n\n"
        "#if !defined(__SYNTHESIS__) && !defined(CODAX_SYNTHESIS_VIEW)\n" + sim + "#endif\n"
    )


CORE_INCLUDE = '#include "codax_core.h"\n'
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

// one GEMM instruction: the 128-bit word of gemm_format(shape).encode, low and high halves
void codax_core_run(unsigned long long lo, unsigned long long hi) {
  using namespace codax_core;
  core_gemm((insn_t(hi) << 64) | insn_t(lo));
}
}  // extern "C"
"""


def core_sources(shape: CoreShape) -> dict[str, str]:
    """{relative path: text}: the header, the requantizer's header where the store IP is built, and the
    core's translation unit."""
    from codax.codegen import core_store

    unit = core_unit(shape)
    files = {"include/codax_core.h": core_header(shape), "core.cpp": unit}
    if core_store.REQUANT_HEADER in unit:
        files[f"include/{core_store.REQUANT_HEADER}"] = core_store.requant_header()
    return files
