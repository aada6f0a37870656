"""The hardware-idiom checker on small sources: for each rule one source that breaks it (reported with
the right function and line) and one that keeps it (nothing reported), so the checker is shown to tell
them apart; then the generated engine of one library accelerator, read as it is."""

import json
from pathlib import Path

import pytest

from codax.codegen.hls_engine import engine_violations
from codax.codegen.hls_idioms import RULES, check, counts
from codax.hw import load_accelerator

HEAD = '#include "ap_int.h"\n#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <deque>\n'


def run(body: str, tops=("top",), bits=128, float_mac=False, mac_functions=("top",)):
    return check(
        {"top.cpp": HEAD + body},
        list(tops),
        bits,
        float_mac=float_mac,
        unit="top.cpp",
        mac_functions=mac_functions,
    )


def line_of(body: str, marker: str) -> int:
    """The line of `marker` in the file the checker reads (HEAD, then body)."""
    text = HEAD + body
    return text[: text.index(marker)].count("\n") + 1


def only(violations, rule):
    return [v for v in violations if v.rule == rule]


# ---- m_axi ports ---------------------------------------------------------------------------------
MAXI_BAD = """
void top(const uint8_t *mem,  // MARK
         ap_uint<128> *out) {
#pragma HLS INTERFACE m_axi port=mem offset=slave bundle=gmem
#pragma HLS INTERFACE m_axi port=out offset=slave bundle=gmem
  out[0] = mem[0];
}
"""
MAXI_MODE = """
void top(const uint8_t *mem, ap_uint<128> *out) {  // MARK
#pragma HLS INTERFACE mode=m_axi port=mem offset=slave bundle=gmem
#pragma HLS INTERFACE mode=m_axi port=out offset=slave bundle=gmem
  out[0] = mem[0];
}
"""
MAXI_GOOD = """
void top(const ap_uint<128> *mem, ap_uint<128> *out) {
#pragma HLS INTERFACE m_axi port=mem offset=slave bundle=gmem
#pragma HLS INTERFACE m_axi port=out offset=slave bundle=gmem
  out[0] = mem[0];
}
"""


def test_m_axi_port_width():
    bad = only(run(MAXI_BAD), "m_axi-port-width")
    assert [(v.function, v.line) for v in bad] == [("top", line_of(MAXI_BAD, "MARK"))]
    assert "mem" in bad[0].message and "ap_uint<128>" in bad[0].message
    assert only(run(MAXI_GOOD), "m_axi-port-width") == []
    # UG1399's current syntax, INTERFACE mode=m_axi, is read as well
    assert [v.line for v in only(run(MAXI_MODE), "m_axi-port-width")] == [line_of(MAXI_MODE, "MARK")]
    # the same port is wrong for a 64-bit DRAM port
    assert len(only(run(MAXI_GOOD, bits=64), "m_axi-port-width")) == 2


# ---- pointers in static state ----------------------------------------------------------------------
STATIC_BAD = """
struct View { const int *base; int n; };
static View view;
void top(const int a[16], int out[1]) {
  view.base = a;  // MARK
  out[0] = view.base[1];
}
"""
STATIC_GOOD = """
struct View { int base; int n; int seen[4]; };
static View view;
void top(const int a[16], int out[1]) {
  view.base = a[0];
  out[0] = view.base + view.seen[1];
}
"""


def test_pointer_in_static_state():
    bad = only(run(STATIC_BAD), "pointer-in-static-state")
    assert (bad[0].function, bad[0].line) == ("top", line_of(STATIC_BAD, "MARK"))
    assert "view.base" in bad[0].message
    assert only(run(STATIC_GOOD), "pointer-in-static-state") == []


# ---- run-time trip counts in pipelined / unrolled regions ----------------------------------------------
TRIP_BAD = """
static int popcount_bits(int v, int bits) {
  int s = 0;
  for (int k = 0; k < bits; ++k) s += (v >> k) & 1;  // MARK_CALLEE
  return s;
}
void top(int a[64], int n, int bits) {
ROWS:
  for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
    for (int k = 0; k < n; ++k) a[i] += k;  // MARK_INNER
    a[i] += popcount_bits(a[i], bits);
  }
  for (int j = 0; j < n; ++j) {  // MARK_UNROLL
#pragma HLS UNROLL
    a[j] = 0;
  }
}
"""
TRIP_GOOD = """
static int popcount8(int v) {
  int s = 0;
  for (int k = 0; k < 8; ++k) s += (v >> k) & 1;
  return s;
}
void top(int a[64], int n) {
ROWS:
  for (int i = 0; i < n; ++i) {  // the pipelined loop's own trip count may be a run-time value
#pragma HLS PIPELINE II=1
    for (int k = 0; k < 4; ++k) a[i] += k;
    a[i] += popcount8(a[i]);
  }
  for (int j = 0; j < 16; ++j) {
#pragma HLS UNROLL
    a[j] = 0;
  }
}
"""


def test_run_time_trip_in_region():
    bad = only(run(TRIP_BAD), "run-time-trip-in-region")
    found = {(v.function, v.line) for v in bad}
    assert found == {
        ("top", line_of(TRIP_BAD, "MARK_INNER")),
        ("popcount_bits", line_of(TRIP_BAD, "MARK_CALLEE")),  # reached through a call
        ("top", line_of(TRIP_BAD, "MARK_UNROLL")),  # a full UNROLL of a run-time trip count
    }
    assert only(run(TRIP_GOOD), "run-time-trip-in-region") == []


# ---- bursts on m_axi ports ------------------------------------------------------------------------------
# the old core's load and store: a read under ?: whose address the loop sets to a row's base or steps
# only on data; a write under an if
BURST_BAD = """
typedef ap_uint<128> beat_t;
void top(const beat_t *dram, beat_t *out, int n, int row_step) {
#pragma HLS INTERFACE m_axi port=dram offset=slave bundle=load_port
#pragma HLS INTERFACE m_axi port=out offset=slave bundle=store_port
  ap_uint<32> rd = 0, row_base = 0, w_addr = 0;
  beat_t acc = 0;
BEATS:
  for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
    const bool data = (i & 3) != 0;
    const beat_t beat = data ? dram[rd] : beat_t(0);  // MARK_COND_READ
    acc ^= beat;
    if (data && (i & 7) == 7) {
      row_base = row_base + row_step;
      rd = row_base;
    } else if (data) {
      rd = rd + 1;
    }
    if (i > 1) {
      out[w_addr] = acc;  // MARK_COND_WRITE
      w_addr = w_addr + 1;
    }
  }
STEPPED:
  for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
    out[rd] = acc;  // MARK_SET_ADDRESS
    if (i & 1) rd = rd + 1;
  }
SAME:
  for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
    out[w_addr] = dram[i];  // MARK_SAME
  }
}
"""
# the new core's: per row one loop reading (or writing) the next beat every iteration -- the induction
# variable plus a base the loop does not write, or a counter stepped by a constant -- the pads apart
BURST_GOOD = """
typedef ap_uint<128> beat_t;
void top(const beat_t *dram, beat_t *out, ap_uint<8> rows, ap_uint<32> row_beats, ap_uint<32> step) {
#pragma HLS INTERFACE m_axi port=dram offset=slave bundle=load_port
#pragma HLS INTERFACE m_axi port=out offset=slave bundle=store_port
  ap_uint<32> rd = 0, w_addr = 0;
  beat_t acc = 0;
ROWS_Y:
  for (ap_uint<8> y = 0; y < rows; ++y) {
  DATA:
    for (ap_uint<32> t = 0; t < row_beats; ++t) {
#pragma HLS PIPELINE II=1
      const beat_t beat = dram[rd + t];
      acc = (t & 1) ? beat_t(acc ^ beat) : beat;  // a condition on the value, not on the access
    }
  PAD:
    for (ap_uint<32> u = 0; u < 2; ++u) {
#pragma HLS PIPELINE II=1
      acc = acc + 1;  // no DRAM access
    }
    rd = rd + step;
  OUT:
    for (ap_uint<32> t = 0; t < row_beats; ++t) {
#pragma HLS PIPELINE II=1
      out[w_addr] = acc;
      w_addr += 2;
      w_addr = w_addr - 1;
    }
  }
}
"""


def test_m_axi_accesses_in_pipelined_loops_are_bursts():
    bad = only(run(BURST_BAD), "m_axi-no-burst")
    marks = {
        m: line_of(BURST_BAD, m)
        for m in ("MARK_COND_READ", "MARK_COND_WRITE", "MARK_SET_ADDRESS", "MARK_SAME")
    }
    assert [(v.function, v.line) for v in bad] == [("top", line) for line in sorted(marks.values())]
    why = {v.line: v.message for v in bad}
    assert all(m.startswith("no burst: ") and "UG1399" in m for m in why.values())
    assert "port dram" in why[marks["MARK_COND_READ"]] and "under a condition" in why[marks["MARK_COND_READ"]]
    assert (
        "port out" in why[marks["MARK_COND_WRITE"]] and "under a condition" in why[marks["MARK_COND_WRITE"]]
    )
    assert "(rd) the loop sets, not by a constant step" in why[marks["MARK_SET_ADDRESS"]]
    assert "does not advance" in why[marks["MARK_SAME"]]
    assert only(run(BURST_GOOD), "m_axi-no-burst") == []


# ---- floating point ------------------------------------------------------------------------------------
FLOAT_BAD = """
void top(int a[16], int out[1]) {
  float scale = 0.5f;  // MARK
  out[0] = (int)(a[0] * 2) ;
  out[0] += (int)scale;
}
"""
FLOAT_MAC = """
void top(const float w[16], const float x[16], float out[1]) {
  float acc = 0;  // MARK_ACC
PE:
  for (int i = 0; i < 16; ++i) {
#pragma HLS UNROLL
    acc += w[i] * x[i];
  }
  out[0] = acc;
}
"""
INT_ONLY = """
void top(int a[16], int out[1]) {
  out[0] = (a[0] * 3) >> 1;
}
"""


def test_floating_point_outside_mac():
    bad = only(run(FLOAT_BAD), "floating-point-outside-mac")
    assert ("top", line_of(FLOAT_BAD, "MARK")) in {(v.function, v.line) for v in bad}
    assert only(run(INT_ONLY), "floating-point-outside-mac") == []
    # a float MAC engine: the unrolled multiply-adds are allowed, the accumulator outside them is not
    mac = only(run(FLOAT_MAC, float_mac=True), "floating-point-outside-mac")
    assert {v.line for v in mac} >= {line_of(FLOAT_MAC, "MARK_ACC")}
    pe_line = line_of(FLOAT_MAC, "acc += w[i] * x[i]")
    assert pe_line not in {v.line for v in mac}
    # without a float MAC engine the same multiply-adds are violations
    assert pe_line in {v.line for v in only(run(FLOAT_MAC, float_mac=False), "floating-point-outside-mac")}
    # an unrolled float loop outside the MAC functions is a violation even with a float MAC engine
    assert pe_line in {v.line for v in only(run(FLOAT_MAC, float_mac=True, mac_functions=("mac",)), RULE_F)}


RULE_F = "floating-point-outside-mac"


# ---- C-simulation code ------------------------------------------------------------------------------
CSIM_BAD = """
#ifndef CODAX_SYNTHESIS_VIEW
static double clock_now = 0;
static void account(double t) { clock_now += t; }
#endif
void top(int a[16], int out[1]) {
  out[0] = a[0];
#ifndef CODAX_SYNTHESIS_VIEW
  account(1.0);  // MARK_ACCOUNT
  printf("%d", a[0]);  // MARK_PRINTF
  int *tmp = (int *)malloc(16);  // MARK_MALLOC
  free(tmp);
  std::deque<int> q;  // MARK_DEQUE
#endif
}
"""
CSIM_GOOD = """
void top(int a[16], int out[1]) {
  out[0] = a[0] + a[1];
}
"""


def test_c_simulation_code_in_ip():
    bad = only(run(CSIM_BAD), "c-simulation-code-in-ip")
    lines = {v.line for v in bad if v.function == "top"}
    for marker in ("MARK_ACCOUNT", "MARK_PRINTF", "MARK_MALLOC", "MARK_DEQUE"):
        assert line_of(CSIM_BAD, marker) in lines, marker
    assert only(run(CSIM_GOOD), "c-simulation-code-in-ip") == []


def test_counts_and_bad_input():
    assert counts(run(CSIM_GOOD)) == dict.fromkeys(RULES, 0)
    with pytest.raises(ValueError, match="whole number of bytes"):
        run(CSIM_GOOD, bits=12)


# ---- the generated engine -------------------------------------------------------------------------------
def test_engine_of_a_library_accelerator_is_read():
    """The engine of zc706-int8 as it is: the checker's counts are those benchmarks/results/hls_idioms.json
    records (docs/vitis.md quotes them), and known sites are named with their function."""
    v = engine_violations(load_accelerator("zc706-int8"))
    recorded = Path(__file__).parents[2] / "benchmarks" / "results" / "hls_idioms.json"
    got = counts(v)
    # the engine's DRAM accesses sit behind the pointers its static state holds (pointer-in-static-state),
    # not on the tops' m_axi parameters, so m_axi-no-burst reads none
    assert got["m_axi-no-burst"] == 0
    assert got == json.loads(recorded.read_text())["accelerators"]["zc706-int8"]["violations"]
    where = {(x.rule, x.function) for x in v}
    assert ("run-time-trip-in-region", "rd") in where  # the bit-by-bit element read in the pipelines
    assert ("pointer-in-static-state", "codax_e0_load_0") in where  # the IP's registers hold pointers
    # the requantization is integer arithmetic (bit-exact with its float32 definition): no float there
    floats = {x.function for x in v if x.rule == "floating-point-outside-mac"}
    assert not floats & {"requant", "epilogue"}
    assert ("c-simulation-code-in-ip", "load_task") in where  # the accounting clocks inside the task
