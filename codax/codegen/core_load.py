"""The input load path of the GEMM core (codax/codegen/core.py), the part that unpacks narrower widths:
an IP `core_load_inp` that reads DRAM beats of `ap_uint<8 x dram.bandwidth>` through an m_axi port and
writes whole input words of the core's buffer, each lane sign-extended to the array's operand width.

DRAM holds a tensor bit-packed at the layer's width (codax.codegen.packing: element i at bits
[i * w, (i + 1) * w)), so at 6 bits a vector of COLS lanes spans one and a half 128-bit beats. The IP
is a gearbox: a bit register of COLS x OP_BITS + BEAT bits takes one beat per iteration at its fill
level and, once it holds a vector's bits, hands COLS x w bits to the unpackers and shifts them out. The
unpackers are a fixed set, one per width the accelerator's `precision.act` declares, each a constant
slicing of the vector's bits; the instruction's width code picks one. One beat a cycle needs at most
one vector a beat: COLS x (narrowest width) >= the beat's bits (zc706-int8: 32 x 4 = 128); an
accelerator with narrower vectors gets no load IP here (a second vector a cycle is left to do).
Vectors fill a word's ROWS rows in registers and the word is written whole, once per ROWS vectors: the
load targets whole words (a tile's last word is padded), so no partial write of a reshaped word.
"""

from __future__ import annotations

from codax.codegen.core import CoreShape


def load_supported(shape: CoreShape) -> bool:
    """Whether one beat a cycle needs at most one vector a cycle (module docstring)."""
    widths = shape.in_widths
    return bool(widths) and shape.cols * min(widths) >= shape.beat_bits and max(widths) <= shape.op_bits


def load_source(shape: CoreShape) -> str:
    """The C++ of core_load_inp (inside namespace codax_core, after the buffers): the unpackers of
    shape.in_widths (width code i: the i-th, widest first)."""
    beat_bits, widths = shape.beat_bits, shape.in_widths
    need = " : ".join(f"insn.width == {i} ? {shape.cols * w}" for i, w in enumerate(widths[:-1]))
    need = f"({need} : {shape.cols * widths[-1]})" if len(widths) > 1 else str(shape.cols * widths[0])
    unpackers = []
    for i, w in enumerate(widths):
        unpackers.append(f"      const op_t v{i} = op_t(ap_int<{w}>(raw.range({w} * c + {w - 1}, {w} * c)));")
    pick = " : ".join(f"insn.width == {i} ? v{i}" for i in range(len(widths) - 1))
    pick = f"{pick} : v{len(widths) - 1}" if len(widths) > 1 else "v0"
    return f"""
// ---- the input load path: DRAM beats of {beat_bits} bits, packed at {"/".join(map(str, widths))} bits ----
const int BEAT_BITS = {beat_bits};
typedef ap_uint<BEAT_BITS> beat_t;
typedef ap_uint<OP_BITS * COLS + BEAT_BITS> gear_t;  // a vector's bits plus one beat

struct LoadInsn {{
  int beat_offset;  // the tile's first beat in DRAM
  int beats;  // ceil(words x ROWS x COLS x width / BEAT_BITS)
  idx_t dst_word;  // the first input word written
  idx_t words;  // whole words: ROWS vectors each
  ap_uint<2> width;  // index into the widths above
}};

void core_load_inp(const beat_t *mem, LoadInsn insn) {{
#pragma HLS INTERFACE m_axi port=mem offset=slave bundle=gmem
#pragma HLS ARRAY_RESHAPE variable=inp_buf complete dim=2
  const ap_uint<16> need = {need};  // a vector's bits at this width
  const int vectors = insn.words * ROWS;  // a shift: ROWS is a power of two
  gear_t gear = 0;
  ap_uint<16> fill = 0;
  int done = 0;
  idx_t word = insn.dst_word;
  ap_uint<16> row = 0;
  col_vec_t rows[ROWS];
#pragma HLS ARRAY_PARTITION variable=rows complete
BEATS:
  for (int b = 0; b < insn.beats; ++b) {{
#pragma HLS PIPELINE II=1
    gear = gear | (gear_t(mem[insn.beat_offset + b]) << fill);
    fill = fill + BEAT_BITS;
    if (fill >= need && done < vectors) {{
      const col_vec_t raw = col_vec_t(gear);  // the low COLS x OP_BITS bits hold the vector's
      col_vec_t vec = 0;
    UNPACK:  // the fixed set of unpackers, one per width; the width code picks one per lane
      for (int c = 0; c < COLS; ++c) {{
{chr(10).join(unpackers)}
        vec.range(OP_BITS * c + OP_BITS - 1, OP_BITS * c) = ({pick});
      }}
      gear = gear >> need;
      fill = fill - need;
      done = done + 1;
    STAGE:
      for (int r = 0; r < ROWS; ++r)
        if (r == row) rows[r] = vec;
      if (row == ROWS - 1) {{  // a whole word: one write
      WRITE:
        for (int r = 0; r < ROWS; ++r) inp_buf[word][r] = r == ROWS - 1 ? vec : rows[r];
        word = word + 1;
        row = 0;
      }} else {{
        row = row + 1;
      }}
    }}
  }}
}}
"""


LOAD_SIM = """
// C-simulation: DRAM bytes as beats through core_load_inp, and the input buffer read back
void codax_core_load_inp(const unsigned char *bytes, int beats, int dst_word, int words, int width) {
  using namespace codax_core;
  beat_t *mem = new beat_t[beats];
  for (int b = 0; b < beats; ++b)
    for (int i = 0; i < BEAT_BITS / 8; ++i)
      mem[b].range(8 * i + 7, 8 * i) = bytes[b * (BEAT_BITS / 8) + i];
  LoadInsn insn;
  insn.beat_offset = 0;
  insn.beats = beats;
  insn.dst_word = dst_word;
  insn.words = words;
  insn.width = width;
  core_load_inp(mem, insn);
  delete[] mem;
}

void codax_core_read_inp(signed char *inp) {
  using namespace codax_core;
  for (int d = 0; d < INP_WORDS; ++d)
    for (int r = 0; r < ROWS; ++r)
      for (int c = 0; c < COLS; ++c)
        inp[(d * ROWS + r) * COLS + c] = CODAX_LANE(inp_buf[d][r], c).to_int();
}
"""
