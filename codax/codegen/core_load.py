"""The GEMM core's load IP (codax/codegen/core.py), written as TVM VTA's `load` (hardware/xilinx/src/
vta.cc): `core_load(load_queue, dram, g2l / l2g dependence queues, the buffers' bram ports)` executes
one 128-bit LOAD instruction from its queue (codax.codegen.core_isa) -- a 2-D strided read of DRAM
beats with zero padding, VTA's load_2d -- into one of the core's buffers, chosen by the instruction's
memory field:

    memory   unit               DRAM beats of a unit     written
    uop      one micro-op       1 (its low UOP_BITS)     uop_buf[unit]
    wgt      one weight word    ROWS x VB(w)             wgt_buf[unit]: ROWS rows, each a vector
    inp      one input vector   VB(w)                    inp_buf[unit >> LOG_ROWS][unit & (ROWS - 1)]
    param    one entry          1 (its low 128 bits)     param_buf[unit]: bias, M, MR (the store's)

The instruction writes (y_pad_0 + y_size + y_pad_1) rows of (x_pad_0 + x_size + x_pad_1) units,
consecutive from sram_base, the pad units zero; data unit (y, x) comes from beat dram_base + (y x
x_stride + x) x (beats of a unit).

Vectors (COLS lanes at the layer's width w, lane i at bits [i w, (i + 1) w)) start on a beat and
occupy VB(w) = ceil(COLS w / BEAT_BITS) whole beats, so no vector straddles another's beats and the IP
needs no gearbox: it collects a vector's VB(w) beats in a register, hands them to the fixed set of
unpackers -- one per width the accelerator declares, each a constant slicing sign-extended to
OP_BITS, the width code picking one -- and stages the vector in a register row of the word it builds.
The buffers are written a whole word at a time (ARRAY_RESHAPE: a partial write of a reshaped word
would be a read-modify-write), once per ROWS vectors; an input load starts on a word (sram_base a
multiple of ROWS) and its last word's rows past the data are zero.

DRAM is read in bursts, as VTA's load_2d does with a memcpy per row: per data row one pipelined loop
(DATA, II 1) reads the row's x_size x (beats of a unit) beats at consecutive addresses, one every
iteration and unconditionally -- what UG1399 ("Preconditions and Limitations of Burst Transfer") infers
as one burst -- and unpacks them as they come; the pad units are loops of their own (PAD, one unit an
iteration, no DRAM access), one per run of pads between the bursts. A loop over the beats rather than
hls::burst_maxi or a memcpy into a row buffer: the beats feed the unpackers as they arrive, with no
second pass over a buffered row. The loops' counters and the staging of a word's vectors carry from one
loop to the next, by additions and compares only; the products of an instruction -- the DRAM row step
x_stride x (beats of a unit) and a row's beats x_size x (beats of a unit) -- are formed before the
loops, by a constant per (memory, width) (a shift where the constant is a power of two).
"""

from __future__ import annotations

import math

from codax.codegen.core import UOP_BITS, UOP_DEPTH, CoreShape
from codax.codegen.core_isa import Field, InsnFormat, bits_for

MEMORIES = {"uop": 0, "wgt": 1, "inp": 2, "param": 3}
PARAM_DEPTH = 1024  # per-channel entries: 1,024 output channels of one layer tile and its records
PARAM_BITS = 128  # bias (32), M (32), MR (32), or a store's layer record (99 bits): one beat each
DRAM_BASE_BITS = 28
STRIDE_BITS = 16  # a DRAM row stride in units: bounded by the tensor in DRAM, not by a buffer (VTA's 16)
PAD_BITS = 4


def vector_beats(shape: CoreShape, width: int) -> int:
    """VB(w): the whole beats a COLS-lane vector at `width` bits occupies in DRAM."""
    return math.ceil(shape.cols * width / shape.beat_bits)


def unit_beats(shape: CoreShape, memory: str, width: int) -> int:
    """The DRAM beats of one unit of `memory` at `width` bits (width ignored for uop and param)."""
    return {"uop": 1, "param": 1, "inp": vector_beats(shape, width)}.get(
        memory, shape.rows * vector_beats(shape, width)
    )


def buffer_units(shape: CoreShape) -> dict[str, int]:
    """Each buffer's depth in the LOAD's unit of it."""
    return {
        "uop": UOP_DEPTH,
        "wgt": shape.wgt_words,
        "inp": shape.inp_words * shape.rows,
        "param": PARAM_DEPTH,
    }


def load_format(shape: CoreShape) -> InsnFormat:
    """The LOAD instruction of `shape`: buffer addresses sized by the deepest buffer (in its units), the
    sizes by the most units one load writes."""
    deepest = max(buffer_units(shape).values())
    size = bits_for(deepest)
    pads = ("y_pad_0", "y_pad_1", "x_pad_0", "x_pad_1")
    return InsnFormat(
        "load",
        (
            Field("memory", 2),
            Field("width", 2),
            Field("sram_base", bits_for(deepest - 1)),
            Field("dram_base", DRAM_BASE_BITS),
            Field("y_size", size),
            Field("x_size", size),
            Field("x_stride", STRIDE_BITS),
            *(Field(p, PAD_BITS) for p in pads),
            # inputs: the value of a pad lane (the layer's zero point in the lanes' representation), and
            # whether the data is unsigned: then each lane's sign bit is flipped, x - 2^(w-1), so that
            # an unsigned w-bit value fits the signed w-bit lane (codax.codegen.core_compile)
            Field("pad_value", shape.op_bits),
            Field("flip", 1),
        ),
    )


def load_supported(shape: CoreShape) -> bool:
    """Whether the load IP is generated: a DRAM port, at most four widths (the 2-bit width code), none
    wider than the lanes, and a beat that holds a micro-op and a parameter entry."""
    widths = shape.in_widths
    return (
        shape.beat_bits >= max(UOP_BITS, PARAM_BITS) and 0 < len(widths) <= 4 and max(widths) <= shape.op_bits
    )


def _table(code: str, values: list[str]) -> str:
    """A selection by the width code among per-width constants (the last one the default)."""
    out = values[-1]
    for i in range(len(values) - 2, -1, -1):
        out = f"{code} == {i} ? {values[i]} : {out}"
    return f"({out})"


def load_types(shape: CoreShape) -> str:
    """The load IP's constants, types and LOAD instruction (inside namespace codax_core, in the core's
    header: the block design and C-simulation name them too)."""
    vbs = [vector_beats(shape, w) for w in shape.in_widths]
    fmt = load_format(shape)
    size_bits = next(f.bits for f in fmt.fields if f.name == "x_size")
    return f"""
// ---- the load IP's types (VTA's load): DRAM beats of {shape.beat_bits} bits into uop / wgt / inp / param
const int BEAT_BITS = {shape.beat_bits};
typedef ap_uint<BEAT_BITS> beat_t;
const int VB_MAX = {max(vbs)};  // the most beats a vector occupies (the widest width)
typedef ap_uint<VB_MAX * BEAT_BITS> vec_beats_t;  // one vector's beats
const int PARAM_DEPTH = {PARAM_DEPTH};
typedef ap_uint<{PARAM_BITS}> param_t;  // bias | M | MR (float32 bits), or a layer record
const int MEM_UOP = {MEMORIES["uop"]};
const int MEM_WGT = {MEMORIES["wgt"]};
const int MEM_INP = {MEMORIES["inp"]};
const int MEM_PARAM = {MEMORIES["param"]};
typedef ap_uint<{size_bits + 2}> load_cnt_t;  // a size plus its pads
typedef ap_uint<32> dram_addr_t;  // beats from the port's base

{fmt.cpp()}"""


def _put(label: str) -> str:
    """The staging of a vector `vec` (when `stage`) in the word's register rows, and the write of the
    word at `sram` (the loop advances it after) when `word_end`: rows past the current one are zero (an
    input load's last word; a weight pad word). The same code in the data and the pad loops, under
    loop-unique labels."""
    return f"""\
    STAGE_{label}:
      for (int r = 0; r < ROWS; ++r)
        if (stage && r == row) rows[r] = vec;
      if (word_end) {{
      WRITE_{label}:
        for (int r = 0; r < ROWS; ++r) {{
          const col_vec_t w = r < row ? rows[r] : r == row ? vec : col_vec_t(0);
          if (is_wgt)
            wgt_buf[sram][r] = w;
          else
            inp_buf[sram][r] = w;
        }}
      }}
      if (word_end)
        row = 0;
      else if (stage)
        row = row + 1;"""


def load_source(shape: CoreShape) -> str:
    """The C++ of the synthesis top core_load (inside namespace codax_core; its types are
    load_types(shape), in the core's header): VTA's load, one instruction from its queue a call."""
    widths = shape.in_widths
    vbs = [vector_beats(shape, w) for w in widths]
    fmt = load_format(shape)
    unpackers = "\n".join(
        f"        const op_t v{i} =\n"
        f"            op_t(ap_int<{w}>(ap_uint<{w}>(cur.range({w} * c + {w - 1}, {w} * c)) ^ flip{i}));"
        for i, w in enumerate(widths)
    )
    flips = "\n".join(
        f"  const ap_uint<{w}> flip{i} = insn.flip ? ap_uint<{w}>(1) << {w - 1} : ap_uint<{w}>(0);"
        for i, w in enumerate(widths)
    )
    pick = _table("code", [f"v{i}" for i in range(len(widths))])
    vb = _table("code", [str(v) for v in vbs])
    # per (memory, width) constants times a field: the DRAM row step (x_stride units) and a row's data
    # beats (x_size units), uop and param 1 beat a unit
    inp_step = _table("code", [f"stride * {unit_beats(shape, 'inp', w)}" for w in widths])
    wgt_step = _table("code", [f"stride * {unit_beats(shape, 'wgt', w)}" for w in widths])
    inp_beats = _table("code", [f"xs * {unit_beats(shape, 'inp', w)}" for w in widths])
    wgt_beats = _table("code", [f"xs * {unit_beats(shape, 'wgt', w)}" for w in widths])
    sram_bits = next(f.bits for f in fmt.fields if f.name == "sram_base")
    return f"""
// ---- the load IP (VTA's load): one LOAD from its queue, DRAM beats into uop / wgt / inp / param ----
void core_load(hls::stream<insn_t> &load_queue, const beat_t *dram, hls::stream<bool> &g2l_dep_queue,
               hls::stream<bool> &l2g_dep_queue, uop_t uop_buf[UOP_DEPTH], col_vec_t wgt_buf[WGT_WORDS][ROWS],
               col_vec_t inp_buf[INP_WORDS][ROWS], param_t param_buf[PARAM_DEPTH]) {{
#pragma HLS INTERFACE axis port=load_queue
#pragma HLS INTERFACE axis port=g2l_dep_queue
#pragma HLS INTERFACE axis port=l2g_dep_queue
#pragma HLS INTERFACE m_axi port=dram offset=slave bundle=load_port
  // the write port of each buffer it fills (core_system.cpp wires them): one word an iteration at most
#pragma HLS INTERFACE bram port=uop_buf storage_type=ram_s2p
#pragma HLS INTERFACE bram port=wgt_buf storage_type=ram_s2p
#pragma HLS INTERFACE bram port=inp_buf storage_type=ram_t2p
#pragma HLS INTERFACE bram port=param_buf storage_type=ram_s2p
#pragma HLS INTERFACE s_axilite port=return bundle=CONTROL_BUS
#pragma HLS ARRAY_RESHAPE variable=wgt_buf complete dim=2
#pragma HLS ARRAY_RESHAPE variable=inp_buf complete dim=2
  const LoadInsn insn = decode_load(load_queue.read());
  // VTA's handshake: the GEMM has done with what this load overwrites (g2l)
  if (insn.pop_next) g2l_dep_queue.read();
  const ap_uint<2> code = insn.width;
  const bool is_uop = insn.memory == MEM_UOP;
  const bool is_wgt = insn.memory == MEM_WGT;
  const bool is_inp = insn.memory == MEM_INP;
  const bool is_param = insn.memory == MEM_PARAM;
  const bool is_vec = is_wgt || is_inp;  // units built of vectors, written as whole words
  const ap_uint<8> vb_last = {vb} - 1;  // VB(w) - 1 at this width
  // unsigned inputs: each width's sign-bit flip; a pad lane of an input holds the zero point
{flips}
  const op_t pad = is_inp ? op_t(insn.pad_value) : op_t(0);
  col_vec_t pad_vec = 0;
PAD_LANES:
  for (int c = 0; c < COLS; ++c) {{
#pragma HLS UNROLL
    pad_vec.range(OP_BITS * c + OP_BITS - 1, OP_BITS * c) = pad;
  }}

  // the instruction's products, outside the loops, each a field times a constant per (memory, width):
  // the DRAM row step and a row's data beats (one burst)
  const dram_addr_t stride = insn.x_stride, xs = insn.x_size;
  dram_addr_t row_step = stride, row_beats = xs;
#pragma HLS BIND_OP variable=row_step op=mul impl=fabric
#pragma HLS BIND_OP variable=row_beats op=mul impl=fabric
  if (is_inp) row_step = {inp_step};
  if (is_wgt) row_step = {wgt_step};
  if (is_inp) row_beats = {inp_beats};
  if (is_wgt) row_beats = {wgt_beats};

  // the pad runs between the data rows' bursts, in units: before the first (y_pad_0 rows and x_pad_0),
  // between two (x_pad_1 + x_pad_0), after the last (x_pad_1 and y_pad_1 rows); without data rows the
  // whole grid is one run. Rows of pads as additions (y_pad_0, y_pad_1 < 2^{PAD_BITS})
  const load_cnt_t ys = insn.y_size;
  const dram_addr_t units = dram_addr_t(insn.x_pad_0) + xs + insn.x_pad_1;  // a row of the grid
  dram_addr_t lead = ys == 0 ? dram_addr_t(0) : dram_addr_t(insn.x_pad_0);
  dram_addr_t tail = ys == 0 ? dram_addr_t(0) : dram_addr_t(insn.x_pad_1);
PAD_ROWS:
  for (int j = 0; j < {(1 << PAD_BITS) - 1}; ++j) {{
#pragma HLS UNROLL
    if (j < insn.y_pad_0) lead += units;
    if (j < insn.y_pad_1) tail += units;
  }}
  const dram_addr_t between = dram_addr_t(insn.x_pad_1) + insn.x_pad_0;
  dram_addr_t n_pad = ys == 0 ? dram_addr_t(lead + tail) : lead;

  // the state the loops share (registers): the beat in the vector, the row in the word and the word's
  // rows, the buffer address (a unit, or a word for wgt / inp), the DRAM row's first beat
  ap_uint<8> k = 0;
  ap_uint<LOG_ROWS + 1> row = 0;
  ap_uint<{sram_bits}> sram = is_inp ? ap_uint<{sram_bits}>(insn.sram_base >> LOG_ROWS) : insn.sram_base;
  dram_addr_t rd = insn.dram_base;
  vec_beats_t bits = 0;
  col_vec_t rows[ROWS];
#pragma HLS ARRAY_PARTITION variable=rows complete
RUNS:
  for (load_cnt_t y = 0;; y = y + 1) {{
    // a pad run: one unit an iteration, no DRAM access (an input vector of pad lanes, a whole zero
    // weight word, a zero micro-op or entry)
  PAD:
    for (dram_addr_t u = 0; u < n_pad; ++u) {{
#pragma HLS PIPELINE II=1
      CODAX_CORE_TRIP(CODAX_TRIP_LOAD);
      const col_vec_t vec = pad_vec;
      const bool stage = is_inp;
      const bool word_end = is_wgt || is_inp && row == ROWS - 1;
{_put("PAD")}
      if (is_uop) uop_buf[sram] = uop_t(0);
      if (is_param) param_buf[sram] = param_t(0);
      if (word_end || !is_vec) sram = sram + 1;
    }}
    if (y == ys) break;
    // data row y: its x_size units are row_beats consecutive beats from rd, read unconditionally, one
    // an iteration (UG1399: a sequential access in a pipelined loop, inferred as one burst)
  DATA:
    for (dram_addr_t t = 0; t < row_beats; ++t) {{
#pragma HLS PIPELINE II=1
      CODAX_CORE_TRIP(CODAX_TRIP_LOAD);
      const beat_t beat = dram[rd + t];
      // a vector's beats: beat k at bits [k x BEAT_BITS, (k + 1) x BEAT_BITS)
      vec_beats_t cur = bits;
    GATHER:
      for (int b = 0; b < VB_MAX; ++b)
        if (b == k) cur.range(BEAT_BITS * b + BEAT_BITS - 1, BEAT_BITS * b) = beat;
      bits = cur;
      col_vec_t vec = 0;
    UNPACK:  // the fixed set of unpackers, one per width; the width code picks one per lane
      for (int c = 0; c < COLS; ++c) {{
{unpackers}
        vec.range(OP_BITS * c + OP_BITS - 1, OP_BITS * c) = {pick};
      }}
      const bool vec_end = k == vb_last;
      const bool stage = is_vec && vec_end;
      const bool word_end = stage && row == ROWS - 1;  // a weight unit is one whole word
      k = vec_end ? ap_uint<8>(0) : ap_uint<8>(k + 1);
{_put("DATA")}
      if (is_uop) uop_buf[sram] = uop_t(beat);
      if (is_param) param_buf[sram] = param_t(beat);
      if (word_end || !is_vec) sram = sram + 1;
    }}
    rd = rd + row_step;
    n_pad = y == ys - 1 ? tail : between;
  }}
  // an input load's last word, when its ROWS vectors are not all in: the rows past the data zero
  if (is_inp && row != 0) {{
  FLUSH:
    for (int r = 0; r < ROWS; ++r) inp_buf[sram][r] = r < row ? rows[r] : col_vec_t(0);
  }}
  // what it wrote is ready for the GEMM (l2g)
  if (insn.push_next) l2g_dep_queue.write(true);
}}
"""
