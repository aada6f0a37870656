"""The II reader on small sources: each pipelined loop's II from the accesses one iteration makes to
each memory bank, against counts worked out by hand from UG1399's port rules, and a property test
over unroll and partition factors against the closed form ceil(ceil(U / F) / ports)."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from codax.codegen import hls_reader as R
from codax.codegen.hls_ii import loop_iis, summary

HEAD = '#include "ap_int.h"\n#include <stdint.h>\n'


def iis(body: str, tops=("top",), head=HEAD):
    src = R.parse({"top.cpp": head + body}, ("top.cpp",), (R.SYNTHESIS_VIEW,))
    return loop_iis(src, src.unit("top.cpp", R.SYNTHESIS_VIEW), list(tops))


def one(body: str, head=HEAD):
    (loop,) = iis(body, head=head)
    return loop


def memory(loop, name):
    return next(m for m in loop.memories if m.memory == name)


# VTA's GEMM step: one address of each reshaped buffer returns the vector a step needs, the products
# go through an adder tree into registers, and each output's accumulator is read and written once
STEP = """GEMM: for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
    for (int oc = 0; oc < 16; ++oc) {
      acc_t sum = 0;
      for (int ic = 0; ic < 16; ++ic) sum += wgt[i][oc][ic] * inp[i][ic];
      acc[i][oc] += sum;
    }
  }
  out[0] = acc[0][0];
}
"""

GEMM = (
    """
typedef ap_int<8> op_t;
typedef ap_int<32> acc_t;
void top(int n, int out[16]) {
  static op_t wgt[64][16][16];
#pragma HLS ARRAY_RESHAPE variable=wgt complete dim=2
#pragma HLS ARRAY_RESHAPE variable=wgt complete dim=3
  static op_t inp[64][16];
#pragma HLS ARRAY_RESHAPE variable=inp complete dim=2
  static acc_t acc[64][16];
#pragma HLS ARRAY_RESHAPE variable=acc complete dim=2
"""
    + STEP
)


def test_vta_gemm_step_runs_at_ii_1():
    loop = one(GEMM)
    assert (loop.label, loop.target, loop.ii, loop.limiting) == ("GEMM", 1, 1, None)
    assert memory(loop, "wgt").accesses == 1 and memory(loop, "inp").accesses == 1
    assert memory(loop, "acc").accesses == 2  # one read and one write of the word: 2 ports


# the same step with the buffers at namespace scope: their pragmas are in the top that uses them
GEMM_NAMESPACE = (
    """
typedef ap_int<8> op_t;
typedef ap_int<32> acc_t;
static op_t wgt[64][16][16];
static op_t inp[64][16];
static acc_t acc[64][16];
void top(int n, int out[16]) {
#pragma HLS ARRAY_RESHAPE variable=wgt complete dim=2
#pragma HLS ARRAY_RESHAPE variable=wgt complete dim=3
#pragma HLS ARRAY_RESHAPE variable=inp complete dim=2
#pragma HLS ARRAY_RESHAPE variable=acc complete dim=2
"""
    + STEP
)


def test_namespace_scope_buffers_take_the_pragmas_of_the_top():
    loop = one(GEMM_NAMESPACE)
    assert (loop.ii, memory(loop, "wgt").accesses, memory(loop, "acc").accesses) == (1, 1, 2)
    unshaped = one(GEMM_NAMESPACE.replace("#pragma HLS ARRAY_RESHAPE variable=wgt complete dim=3\n", ""))
    assert (unshaped.ii, unshaped.limiting) == (8, "wgt")  # 16 words of 16 weights, two ports


def test_unpartitioned_buffer_read_per_lane_limits_the_ii():
    # the same step with the weights in one plain array: 256 reads on a dual-port BRAM
    loop = one(GEMM.replace("#pragma HLS ARRAY_RESHAPE variable=wgt complete dim=2\n", "").replace(
        "#pragma HLS ARRAY_RESHAPE variable=wgt complete dim=3\n", ""))  # fmt: skip
    assert (loop.ii, loop.limiting) == (128, "wgt")


def test_constant_bank_per_copy_and_run_time_bank():
    cyclic = """
void top(int n, int base, int out[1]) {
  static int a[256];
#pragma HLS ARRAY_PARTITION variable=a cyclic factor=8
  int s = 0;
L: for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE
    for (int k = 0; k < 8; ++k) s += a[i * 8 + k];
  }
  out[0] = s;
}
"""
    assert one(cyclic).ii == 1  # (i * 8 + k) mod 8 = k: eight banks, one read each
    # an offset only known at run time: any lane may hit any bank, HLS must serialise on one bank
    loop = one(cyclic.replace("a[i * 8 + k]", "a[i * 8 + k + base]"))
    assert (loop.ii, memory(loop, "a").unknown_bank) == (4, 8)


def test_ports_of_internal_arrays_and_of_memory_interfaces():
    three = """
void top(int n, int out[1]) {
  static int b[64];
  int s = 0;
L: for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
    s += b[i] + b[i + 1] + b[i + 2] + b[i];
  }
  out[0] = s;
}
"""
    assert one(three).ii == 2  # three distinct addresses (b[i] twice is one load), two ports
    single = three.replace(
        "  static int b[64];\n", "  static int b[64];\n#pragma HLS BIND_STORAGE variable=b type=ram_1p\n"
    )
    assert one(single).ii == 3
    port = """
void top(int n, const int mem[64], int out[1]) {
#pragma HLS INTERFACE bram port=mem
  int s = 0;
L: for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
    s += mem[i] + mem[i + 32];
  }
  out[0] = s;
}
"""
    assert one(port).ii == 2  # a memory interface is single-port unless it says otherwise
    dual = port.replace("bram port=mem", "bram port=mem storage_type=ram_2p")
    assert one(dual).ii == 1


def test_pointer_reads_and_writes_use_one_channel_each():
    body = """
void top(int n, const uint8_t *x, uint8_t *y) {
#pragma HLS INTERFACE m_axi port=x bundle=gmem
#pragma HLS INTERFACE m_axi port=y bundle=gmem
L: for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
    int s = 0;
    for (int k = 0; k < 4; ++k) s += x[4 * i + k];
    y[i] = s;
  }
}
"""
    loop = one(body)
    assert (loop.ii, loop.limiting) == (4, "pointer x")
    assert memory(loop, "pointer y").ii == 1


def test_inlined_function_parameters_differ_per_copy():
    body = """
static int g[64];
inline int get(int j) { return g[j]; }
void top(int n, int out[1]) {
  int s = 0;
L: for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
    for (int k = 0; k < 6; ++k) s += get(i + k);
  }
  out[0] = s;
}
"""
    loop = one(body)  # six different addresses behind one subscript: three cycles on two ports
    assert (loop.ii, memory(loop, "g").accesses) == (3, 6)


def test_array_passed_to_an_inlined_function_is_its_argument():
    body = """
typedef ap_int<8> op_t;
inline void read_vec(int idx, const op_t mem[64][16], op_t out[16]) {
  for (int k = 0; k < 16; ++k) out[k] = mem[idx][k];
}
void top(int n, int res[1]) {
  static op_t buf[64][16];
#pragma HLS ARRAY_RESHAPE variable=buf complete dim=2
  int s = 0;
L: for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
    op_t v[16];
    read_vec(i, buf, v);
    for (int k = 0; k < 16; ++k) s += v[k];
  }
  res[0] = s;
}
"""
    loop = one(body)  # one word of the reshaped buffer; the local vector is registers
    assert (loop.ii, memory(loop, "buf").accesses) == (1, 1)
    assert memory(loop, "v").ports is None
    unshaped = one(body.replace("#pragma HLS ARRAY_RESHAPE variable=buf complete dim=2\n", ""))
    assert (unshaped.ii, unshaped.limiting) == (8, "buf")


def test_pipeline_target_is_a_floor_and_summary():
    body = GEMM.replace("PIPELINE II=1", "PIPELINE II=3")
    loop = one(body)
    assert (loop.target, loop.ii, loop.limiting) == (3, 3, None)
    s = summary([loop])
    assert s["max_ii"] == 3 and s["loops_above_target"] == 0


@settings(max_examples=8, deadline=None)
@given(
    unroll=st.sampled_from([1, 2, 3, 4, 8, 16]),
    factor=st.sampled_from([1, 2, 4, 8, 16]),
    ports=st.sampled_from([1, 2]),
)
def test_cyclic_banks_closed_form(unroll, factor, ports):
    storage = "" if ports == 2 else "#pragma HLS BIND_STORAGE variable=a type=ram_1p\n"
    part = f"#pragma HLS ARRAY_PARTITION variable=a cyclic factor={factor}\n" if factor > 1 else ""
    body = f"""
void top(int n, int out[1]) {{
  static int a[1024];
{part}{storage}  int s = 0;
L: for (int i = 0; i < n; ++i) {{
#pragma HLS PIPELINE II=1
    for (int k = 0; k < {unroll}; ++k) s += a[i * 16 + k];
  }}
  out[0] = s;
}}
"""
    # 16 is a multiple of every factor: lane k goes to bank k mod F, ceil(U / F) lanes on the busiest
    expected = max(1, math.ceil(math.ceil(unroll / factor) / ports))
    assert one(body, head="").ii == expected
