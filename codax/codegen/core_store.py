"""The GEMM core's store path (TVM VTA's `store`, hardware/xilinx/src/vta.cc): the synthesis top
`core_store` executes one STORE instruction (codax.codegen.core_isa) -- accumulator vectors of the K x C
mode, plus the channel's bias, through the project's integer requantizer (include/codax_requant.h, the
one codax_engine.h uses), clamped, packed at the layer's output width and written to DRAM as whole
beats, one burst per row of pixels.

What a STORE names (docs/engine_core.md, "The STORE instruction"): a tile of y_size x x_size pixels
whose block b (ROWS output channels) of pixel p = y * x_size + x is accumulator vector
sram_base + b * block_stride + p (vector v: word v % ACC_WORDS, column v / ACC_WORDS); `blocks` of them
make one COLS-lane output vector, written as VB(w) beats at dram_base + (y * x_stride + x) * VB(w).
Where ROWS > COLS an accumulator vector is ROWS / COLS output vectors (the next layer's COLS-channel
blocks): the instruction has `part` instead of `blocks`, and writes rows part * COLS .. part * COLS +
COLS - 1 of each pixel's accumulator vector as its output vector -- a ROWS / COLS : 1 multiplexer per
lane, set once per instruction -- so the compiler issues ROWS / COLS STOREs per row block. The store
requantizes min(ROWS, COLS) lanes a cycle either way.
param_buf holds one beat per channel (bias, M and MR as float32 bit patterns) from param_base, and the
layer's record (zero points, clamp, residual width and signedness, requantize or not) in entry 0; a
layer of more than PARAM_DEPTH - 1 channels has its parameters loaded per window of channels
(codax.codegen.core_compile.param_windows); `res` adds the residual tensor, read from DRAM in the
output's layout at the record's width.

The datapath of one row of pixels, as VTA's store writes DRAM (a memcpy per row): three pipelined
loops at II 1 -- RES_IN reads the row's residual beats (x_size x VB(w_res)) into a row buffer of
vectors, PIXELS requantizes one accumulator vector (a block: the buffer is simple dual-port, its write
port the GEMM's) a cycle into a row buffer of output vectors, BEATS_OUT writes the row's x_size x VB(w)
output beats. The two DRAM loops access their port every iteration at the loop's base plus its counter,
what UG1399 ("Preconditions and Limitations of Burst Transfer") infers as one burst each; PIXELS has no
DRAM access. A row costs x_size x (VB(w_res) + blocks + VB(w)) iterations. The parameters of the
instruction's channels are read into registers first (COLS cycles): a cycle's ROWS lanes need ROWS
entries, param_buf gives two.

Output widths are the accelerator's `precision.act` (codax.hw.precision runs a layer's output at the
narrowest listed width holding it), so the packers are one per act width; an integer layer's output is
never int32 (the frontends quantize every integer layer's output), so there is no 32-bit packer.
"""

from __future__ import annotations

import math
from pathlib import Path

from codax.codegen import core_isa
from codax.codegen.core import CoreShape
from codax.codegen.core_load import PARAM_BITS, PARAM_DEPTH  # param_buf, which the load IP fills
from codax.errors import UnsupportedError

DRAM_BASE_BITS = 28
MIN_DRAM_BASE_BITS = 24  # a STORE's DRAM bases: 2^24 beats (256 MiB of 128-bit beats) at least
WIDTH_CODE_BITS = 2
REQUANT_HEADER = "codax_requant.h"
REQUANT_PATH = Path(__file__).parent / "include" / REQUANT_HEADER
STORE_TOPS = ("core_store",)

# One param_buf entry (a beat): a channel's [bias | M | MR], or the layer's record (entry RECORD_ENTRY).
RECORD_ENTRY = 0
BIAS_LO, M_LO, MR_LO = 0, 32, 64
ZY_LO, ZR_LO, LO_LO, HI_LO, RES_CODE_LO, REQUANT_BIT, RES_SIGNED_BIT = 0, 16, 32, 64, 96, 98, 99


def requant_header() -> str:
    """include/codax_requant.h: the requantizer the store IP calls (codax::requant)."""
    return REQUANT_PATH.read_text()


def vector_beats(shape: CoreShape, width: int) -> int:
    """VB(w): the whole beats one COLS-lane vector at `width` bits occupies in DRAM."""
    return math.ceil(shape.cols * width / shape.beat_bits)


def max_blocks(shape: CoreShape) -> int:
    """ROWS-lane accumulator vectors per COLS-lane output vector (1 when ROWS >= COLS)."""
    return max(1, shape.cols // shape.rows)


def vector_parts(shape: CoreShape) -> int:
    """COLS-lane output vectors per ROWS-lane accumulator vector (1 when COLS >= ROWS): a STORE writes
    one of them, its `part` field naming which."""
    return max(1, shape.rows // shape.cols)


def store_lanes(shape: CoreShape) -> int:
    """Lanes the store requantizes a cycle: one accumulator vector (ROWS), or one output vector (COLS)
    when an accumulator vector spans several."""
    return min(shape.rows, shape.cols)


def _acc_vectors(shape: CoreShape) -> int:
    try:
        return shape.mode("kxc").acc_depth
    except KeyError:
        raise UnsupportedError(
            f"{shape.name}: the store IP reads K x C accumulators; no K x C mode"
        ) from None


def store_supported(shape: CoreShape) -> bool:
    """Whether core_store can be built: a K x C mode, one to four output widths of at most 16 bits, and a
    param_buf beat wide enough for an entry (99 bits)."""
    return (
        any(m.name == "kxc" for m in shape.modes)
        and bool(shape.in_widths)
        and len(shape.in_widths) <= 1 << WIDTH_CODE_BITS
        and max(shape.in_widths) <= 16
        and PARAM_BITS > RES_SIGNED_BIT
    )


def store_format(shape: CoreShape) -> core_isa.InsnFormat:
    """The STORE instruction of `shape`: accumulator vector addresses and pixel counts at the K x C
    buffer's depth (a tile side of at most depth - 1 pixels), DRAM bases in beats, and the DRAM row
    stride (output vectors per row) taking the bits the others leave, at least a tile side's. `blocks`
    (accumulator vectors an output vector) where COLS >= ROWS, else `part` (which output vector of the
    accumulator vector). Where a deep accumulator buffer leaves the stride less than a tile side, the
    DRAM bases give up bits instead, down to MIN_DRAM_BASE_BITS."""
    vec = core_isa.bits_for(_acc_vectors(shape) - 1)
    if vector_parts(shape) == 1:
        slot = ("blocks", core_isa.bits_for(max_blocks(shape)))
    else:
        slot = ("part", core_isa.bits_for(vector_parts(shape) - 1))
    fixed = 4 * vec + core_isa.bits_for(PARAM_DEPTH - 1) + WIDTH_CODE_BITS + 1 + slot[1]
    left = core_isa.INSN_BITS - sum(f.bits for f in core_isa.HEAD) - fixed  # the bases and the stride
    dram = max(MIN_DRAM_BASE_BITS, min(DRAM_BASE_BITS, (left - vec) // 2))
    head = [("sram_base", vec), ("dram_base", dram), ("y_size", vec), ("x_size", vec)]
    tail = [
        slot,
        ("block_stride", vec),
        ("param_base", core_isa.bits_for(PARAM_DEPTH - 1)),
        ("width", WIDTH_CODE_BITS),
        ("res", 1),
        ("res_base", dram),
    ]
    stride = max(vec, left - 2 * dram)
    fields = [*head, ("x_stride", stride), *tail]
    return core_isa.InsnFormat("store", tuple(core_isa.Field(n, b) for n, b in fields))


def _u(value: int, bits: int, what: str, signed: bool = True) -> int:
    """`value` as a `bits`-bit field (two's complement when `signed`); out of range is an error."""
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    if not lo <= value < hi:
        raise UnsupportedError(f"param_buf {what} = {value} does not fit {bits} {'signed ' * signed}bits")
    return value & ((1 << bits) - 1)


def param_entry(bias: int, m_bits: int, mr_bits: int) -> int:
    """A channel's param_buf beat: bias (int32), M and MR (float32 bit patterns)."""
    return (
        _u(bias, 32, "bias") << BIAS_LO
        | _u(m_bits, 32, "M", False) << M_LO
        | _u(mr_bits, 32, "MR", False) << MR_LO
    )


def layer_record(
    zy: int, zr: int, lo: int, hi: int, res_code: int, requant: bool, res_signed: bool = True
) -> int:
    """A layer's record, param_buf entry RECORD_ENTRY: zero points (int16), the clamp
    bounds (int32), the residual's width code, and whether the output is requantized (else it is
    clamp(acc + bias + res - zr, lo, hi), golden.py's rule without requantization)."""
    return (
        _u(zy, 16, "zy") << ZY_LO
        | _u(zr, 16, "zr") << ZR_LO
        | _u(lo, 32, "lo") << LO_LO
        | _u(hi, 32, "hi") << HI_LO
        | _u(res_code, WIDTH_CODE_BITS, "res width code", False) << RES_CODE_LO
        | int(bool(requant)) << REQUANT_BIT
        | int(bool(res_signed)) << RES_SIGNED_BIT
    )


def _by_code(codes: list[str], code: str) -> str:
    """A multiplexer over the width codes: `code == 0 ? codes[0] : ... : codes[-1]`."""
    out = codes[-1]
    for i in range(len(codes) - 2, -1, -1):
        out = f"{code} == {i} ? {codes[i]} : ({out})"
    return out


def store_source(shape: CoreShape) -> str:
    """The C++ of core_store (inside namespace codax_core, after the load IP): it needs
    BEAT_BITS, beat_t, param_t and PARAM_DEPTH (core_load.load_types, in the header), insn_t
    (core_isa.isa_header) in scope, and include/codax_requant.h included before the namespace."""
    if not store_supported(shape):
        raise UnsupportedError(
            f"{shape.name}: no store IP (it needs a K x C mode, at most 4 output widths of at "
            f"most 16 bits and a beat of at least {REQUANT_BIT + 1} bits)"
        )
    widths = shape.in_widths
    vbs = [vector_beats(shape, w) for w in widths]
    vb_max, nb = max(vbs), max_blocks(shape)
    vec = core_isa.bits_for(_acc_vectors(shape) - 1)
    fmt = store_format(shape)
    x_bits = vec  # y_size, x_size
    slot_bits = core_isa.bits_for(max(nb, vb_max))
    vb_code = lambda code: _by_code([str(v) for v in vbs], code)  # noqa: E731
    unpack = "\n".join(
        f"            const ap_uint<{w}> u{i} = res_cur.range({w} * l + {w - 1}, {w} * l);\n"
        f"            const ap_int<{w + 1}> r{i} = res_signed ? ap_int<{w + 1}>(ap_int<{w}>(u{i})) : "
        f"ap_int<{w + 1}>(u{i});"
        for i, w in enumerate(widths)
    )
    res_lane = _by_code([f"st_res_t(r{i})" for i in range(len(widths))], "res_code")
    pack = "\n".join(
        f"            if (insn.width == {i}) cur.range({w} * l + {w - 1}, {w} * l) = q.range({w - 1}, 0);"
        for i, w in enumerate(widths)
    )
    parts = vector_parts(shape)
    if parts == 1:  # ROWS lanes a cycle: accumulator vector `slot` of the output vector
        lanes, lane_doc = "ROWS", "slot * ROWS + r"
        lane_of = "(l & (ROWS - 1)) == r && (l >> LOG_ROWS) == slot"
        acc_read = "        const acc_t acc = acc_buf[word][r][col];"
    else:  # COLS lanes a cycle: rows part * COLS .. of the accumulator vector (a fixed multiplexer)
        lanes, lane_of, lane_doc = "COLS", "l == r", "r"
        acc_read = (
            "        acc_t acc = 0;\n"
            "      PART:  // lane r of the output vector: row part * COLS + r of the accumulator vector\n"
            "        for (int h = 0; h < ST_PARTS; ++h)\n"
            "          if (h == part) acc = acc_buf[word][h * COLS + r][col];"
        )
    part_decl = "\n  const st_part_t part = insn.part;" if parts > 1 else ""
    return f"""
// ---- the store IP: accumulator vectors + bias -> requantized, clamped, packed output vectors --------
// output widths {"/".join(map(str, widths))} bits (width code i: the i-th), {vb_max} beat(s) of
// {shape.beat_bits} bits for the widest vector; up to {nb} ROWS-lane accumulator vector(s) an output vector,
// {parts} output vector(s) an accumulator vector
{fmt.cpp()}
const int ST_VB_MAX = {vb_max};
const int ST_PARTS = {parts};  // output vectors an accumulator vector spans (ROWS / COLS, at least 1)
typedef ap_uint<{core_isa.bits_for(parts - 1)}> st_part_t;
const int ST_ROW_MAX = {1 << x_bits};  // the most pixels of a row (x_size)
typedef ap_uint<ST_VB_MAX * BEAT_BITS> st_vec_t;  // one output or residual vector, whole beats
typedef ap_uint<{vec}> st_vidx_t;  // a K x C accumulator vector: wraps at the buffer's depth
typedef ap_uint<{slot_bits}> st_slot_t;  // a block, or a beat, of a pixel's vector
typedef ap_uint<{x_bits + 1}> st_pix_t;  // a pixel of a row, or x_size
typedef ap_uint<{core_isa.bits_for(PARAM_DEPTH - 1)}> st_pidx_t;  // a param_buf entry: wraps at its depth
typedef ap_uint<32> st_addr_t;  // a beat of a DRAM port
typedef ap_int<{max(widths) + 1}> st_res_t;  // a residual lane at the widest width, signed or not

void core_store(hls::stream<insn_t> &store_queue, hls::stream<bool> &g2s_dep_queue,
                hls::stream<bool> &s2g_dep_queue, beat_t *out, const beat_t *res,
                const acc_t acc_buf[ACC_WORDS][ROWS][COLS], const param_t param_buf[PARAM_DEPTH]) {{
#pragma HLS INTERFACE axis port=store_queue
#pragma HLS INTERFACE axis port=g2s_dep_queue
#pragma HLS INTERFACE axis port=s2g_dep_queue
#pragma HLS INTERFACE m_axi port=out offset=slave bundle=store_out
#pragma HLS INTERFACE m_axi port=res offset=slave bundle=store_res
  // the read ports of the accumulators (shared with the GEMM's read: core_system.cpp's mux, owned by
  // whoever holds the g2s / s2g token) and of param_buf
#pragma HLS INTERFACE bram port=acc_buf storage_type=ram_s2p
#pragma HLS INTERFACE bram port=param_buf storage_type=ram_s2p
#pragma HLS INTERFACE s_axilite port=return bundle=CONTROL_BUS
#pragma HLS ARRAY_RESHAPE variable=acc_buf complete dim=2
#pragma HLS ARRAY_RESHAPE variable=acc_buf complete dim=3
  const StoreInsn insn = decode_store(store_queue.read());
  // VTA's handshake: the accumulators it reads are final (g2s)
  if (insn.pop_prev) g2s_dep_queue.read();

  // the layer's record and its channels' parameters, into registers: a cycle requantizes ROWS lanes
  // (ROWS entries), param_buf gives two a cycle
  const param_t rec = param_buf[{RECORD_ENTRY}];
  const int zy = ap_int<16>(rec.range({ZY_LO + 15}, {ZY_LO})).to_int();
  const int zr = ap_int<16>(rec.range({ZR_LO + 15}, {ZR_LO})).to_int();
  const ap_int<32> lo = rec.range({LO_LO + 31}, {LO_LO});
  const ap_int<32> hi = rec.range({HI_LO + 31}, {HI_LO});
  const ap_uint<2> res_code = rec.range({RES_CODE_LO + 1}, {RES_CODE_LO});
  const bool do_requant = rec[{REQUANT_BIT}] == 1;
  const bool res_signed = rec[{RES_SIGNED_BIT}] == 1;  // else the residual's lanes are unsigned
  ap_int<32> bias[COLS];
  ap_uint<32> mul[COLS], mul_res[COLS];
#pragma HLS ARRAY_PARTITION variable=bias complete
#pragma HLS ARRAY_PARTITION variable=mul complete
#pragma HLS ARRAY_PARTITION variable=mul_res complete
PARAMS:
  for (int l = 0; l < COLS; ++l) {{
#pragma HLS PIPELINE II=1
    CODAX_CORE_TRIP(CODAX_TRIP_STORE);
    const param_t e = param_buf[st_pidx_t(insn.param_base + l)];
    bias[l] = e.range({BIAS_LO + 31}, {BIAS_LO});
    mul[l] = e.range({M_LO + 31}, {M_LO});
    mul_res[l] = e.range({MR_LO + 31}, {MR_LO});
  }}

  // a row of pixels: its residual beats in (one burst), its pixels' blocks requantized (one accumulator
  // vector a cycle), its output beats out (one burst); the bursts are loops of their own whose every
  // iteration reads or writes the next beat of the port (UG1399's burst: sequential and unconditional in
  // a pipelined loop), the row held in two vector buffers between them
  const bool has_res = insn.res == 1;
  const st_slot_t blocks = {"insn.blocks" if parts == 1 else "1"};{part_decl}
  const st_slot_t vb_out = {vb_code("insn.width")};
  const st_slot_t vb_res = has_res ? st_slot_t({vb_code("res_code")}) : st_slot_t(0);
  const st_pix_t x_size = insn.x_size;
  // a DRAM row is x_stride vectors, a row burst x_size vectors: x VB beats, as additions (VB <= ST_VB_MAX)
  st_addr_t out_step = 0, res_step = 0, out_beats = 0, res_beats = 0;
ROW_STEP:
  for (int j = 0; j < ST_VB_MAX; ++j) {{
#pragma HLS UNROLL
    if (j < vb_out) out_step += insn.x_stride;
    if (j < vb_res) res_step += insn.x_stride;
    if (j < vb_out) out_beats += x_size;
    if (j < vb_res) res_beats += x_size;
  }}
  // a row's residual and output vectors (whole beats each), by pixel: one write and one read a cycle
  st_vec_t res_buf[ST_ROW_MAX], out_buf[ST_ROW_MAX];
#pragma HLS BIND_STORAGE variable=res_buf type=ram_s2p impl=bram
#pragma HLS BIND_STORAGE variable=out_buf type=ram_s2p impl=bram

  st_addr_t out_row = insn.dram_base, res_row = insn.res_base;
  st_vidx_t row_vec = insn.sram_base;  // block 0 of the row's first pixel
ROWS_Y:
  for (ap_uint<{x_bits}> y = 0; y < insn.y_size; ++y) {{
    // the row's residual: beat j of pixel p gathered in a register, the vector written when whole
    st_pix_t r_pix = 0;
    st_slot_t r_beat = 0;
    st_vec_t r_cur = 0;
  RES_IN:
    for (st_addr_t t = 0; t < res_beats; ++t) {{
#pragma HLS PIPELINE II=1
      CODAX_CORE_TRIP(CODAX_TRIP_STORE);
      const beat_t beat = res[res_row + t];
    BEAT_IN:
      for (int j = 0; j < ST_VB_MAX; ++j)
        if (j == r_beat) r_cur.range(BEAT_BITS * j + BEAT_BITS - 1, BEAT_BITS * j) = beat;
      if (r_beat == vb_res - 1) {{
        res_buf[r_pix] = r_cur;
        r_pix = r_pix + 1;
        r_beat = 0;
      }} else {{
        r_beat = r_beat + 1;
      }}
    }}
    // the row's pixels: block `slot` of pixel `pix` a cycle, ROWS lanes of one accumulator vector
    st_pix_t pix = 0;
    st_slot_t slot = 0;
    st_vidx_t a_vec = row_vec, blk = 0;  // the pixel's block 0 and b * block_stride
    st_vec_t packed = 0;
  PIXELS:
    for (bool more = x_size != 0 && blocks != 0; more;) {{
#pragma HLS PIPELINE II=1
      CODAX_CORE_TRIP(CODAX_TRIP_STORE);
      const st_vec_t res_cur = has_res ? res_buf[pix] : st_vec_t(0);
      const st_vidx_t v = a_vec + blk;
      const idx_t word = v & (ACC_WORDS - 1);
      const lane_t col = v >> LOG_ACC_WORDS;
      st_vec_t cur = slot == 0 ? st_vec_t(0) : packed;  // lanes past blocks * ROWS stay 0
    LANES:
      for (int r = 0; r < {lanes}; ++r) {{
{acc_read}
        ap_int<32> bias_l = 0;
        ap_uint<32> m_l = 0, mr_l = 0;
        st_res_t res_l = 0;
      PICK:  // lane l = {lane_doc} of the vector: its channel's parameters, its residual (the
             // unpackers); the other lanes fold away at unrolling
        for (int l = 0; l < COLS; ++l) {{
          if ({lane_of}) {{
            bias_l = bias[l];
            m_l = mul[l];
            mr_l = mul_res[l];
{unpack}
            res_l = {res_lane};
          }}
        }}
        const ap_int<32> sum = acc + bias_l;  // wraps as golden.py's int32(acc + bias)
        ap_int<32> q;
        if (do_requant) {{
          q = ::codax::requant(sum.to_int(), m_l.to_uint(), has_res, res_l.to_int64(), zr, mr_l.to_uint(), zy,
                               lo.to_int64(), hi.to_int64());
        }} else {{  // golden.py without requantization: clamp(acc + res - zr, lo, hi)
          const ap_int<40> t = has_res ? ap_int<40>(sum + res_l - zr) : ap_int<40>(sum);
          q = t < lo ? lo : (t > hi ? hi : ap_int<32>(t));
        }}
      PACK:  // the fixed packers, one per output width
        for (int l = 0; l < COLS; ++l) {{
          if ({lane_of}) {{
{pack}
          }}
        }}
      }}
      packed = cur;
      if (slot == blocks - 1) {{  // the pixel's vector is whole
        out_buf[pix] = cur;
        a_vec = a_vec + 1;
        blk = 0;
        slot = 0;
        pix = pix + 1;
        more = pix != x_size;
      }} else {{
        blk = blk + insn.block_stride;
        slot = slot + 1;
      }}
    }}
    // the row's output: beat j of pixel p, one burst
    st_pix_t w_pix = 0;
    st_slot_t w_beat = 0;
  BEATS_OUT:
    for (st_addr_t t = 0; t < out_beats; ++t) {{
#pragma HLS PIPELINE II=1
      CODAX_CORE_TRIP(CODAX_TRIP_STORE);
      const st_vec_t done = out_buf[w_pix];
      beat_t beat = 0;
    BEAT_OUT:
      for (int j = 0; j < ST_VB_MAX; ++j)
        if (j == w_beat) beat = done.range(BEAT_BITS * j + BEAT_BITS - 1, BEAT_BITS * j);
      out[out_row + t] = beat;
      if (w_beat == vb_out - 1) {{
        w_pix = w_pix + 1;
        w_beat = 0;
      }} else {{
        w_beat = w_beat + 1;
      }}
    }}
    out_row = out_row + out_step;
    res_row = res_row + res_step;
    row_vec = row_vec + insn.x_size;
  }}
  // the accumulators it read are free for the GEMM (s2g)
  if (insn.push_prev) s2g_dep_queue.write(true);
}}
"""
