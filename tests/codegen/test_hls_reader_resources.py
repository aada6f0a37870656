"""Resources read from HLS sources by libclang: the BRAM18 and DSP rules on small sources whose figures
are worked out by hand here (each comment gives the working), and report.json `resources` of a
compiled network, compared both ways with a listing of every array its sources declare made by plain
clang.cindex."""

import json
import re
from pathlib import Path

import pytest

from codax.codegen import write_project
from codax.codegen.examples import random_graph_params
from codax.codegen.hls_reader import HlsReadError
from codax.codegen.hls_resources import bram18_per_bank, dsp_per_multiply, read_resources
from codax.hw import load_accelerator
from codax.hw.mapper.naive import naive_mapping
from codax.ir import Epilogue, Graph, conv2d


def test_bram18_rule_per_port_mode():
    # true dual-port (every port memory, every array without BIND_STORAGE type=ram_s2p): 16K x 1 ... 1K x 18
    assert bram18_per_bank(8, 8192) == 4  # 2K x 9: 1 x 4 (8K x 2: 4 x 1 too)
    assert bram18_per_bank(32, 512) == 2  # 1K x 18: ceil(32/18) = 2 side by side
    assert bram18_per_bank(32, 49152) == 96  # 1K x 18: 2 x 48 (16K x 1: 32 x 3 = 96 too)
    assert bram18_per_bank(832, 36) == 47  # 1K x 18: ceil(832/18) = 47
    assert bram18_per_bank(1, 16384) == 1 and bram18_per_bank(1, 16385) == 2
    assert bram18_per_bank(72, 512) == 4  # 1K x 18: 4 x 1
    # simple dual-port also has 512 x 36
    assert bram18_per_bank(32, 512, simple_dual_port=True) == 1
    assert bram18_per_bank(832, 36, simple_dual_port=True) == 24  # ceil(832/36)
    assert bram18_per_bank(72, 512, simple_dual_port=True) == 2


def test_dsp_rule_per_kind():
    # signed operands, full product: ceil(a / A) x ceil(b / 18) when each fits its port
    assert dsp_per_multiply(9, 9, "dsp48e1") == 1
    assert dsp_per_multiply(25, 18, "dsp48e1") == 1
    # 26 bits on a 25-bit A port: a signed top piece and a 24-bit unsigned lower one -> 2
    assert dsp_per_multiply(26, 18, "dsp48e1") == 2
    assert dsp_per_multiply(27, 18, "dsp48e2") == 1 and dsp_per_multiply(18, 27, "dsp48e2") == 1
    assert dsp_per_multiply(32, 32, "dsp48e2") == 4  # full 64-bit product: 2 x 2 partial products
    with pytest.raises(ValueError, match="unknown DSP kind"):
        dsp_per_multiply(8, 8, "dsp58")


def test_dsp_rule_signedness():
    # ap_uint<18> x ap_uint<18>: each 19 bits as two's complement; 19 > 18 (B port) -> B split into
    # pieces at offsets 0 (17 bits unsigned) and 17: 1 x 2 = 2 DSPs (1 when signedness is ignored)
    assert dsp_per_multiply(18, 18, "dsp48e1", a_signed=False, b_signed=False) == 2
    assert dsp_per_multiply(18, 18, "dsp48e1") == 1  # signed: fits 25 x 18
    # signed 50 x 18 on DSP48E1: 50 bits on A split at offsets 0, 24, 48 (24 + 24 + 2 bits) -> 3 x 1 = 3
    # (ceil(50/25) = 2 when the lower pieces are taken as signed)
    assert dsp_per_multiply(50, 18, "dsp48e1") == 3
    # unsigned 24 x 17 fits the signed 25 x 18 ports: 1
    assert dsp_per_multiply(24, 17, "dsp48e1", False, False) == 1


def test_dsp_rule_product_width():
    # int x int keeping 32 bits: A pieces at 0, 24; B pieces at 0, 17; the partial product at 24 + 17 = 41
    # >= 32 is never built: 3 (4 for the full product)
    assert dsp_per_multiply(32, 32, "dsp48e1", result_bits=32) == 3
    assert dsp_per_multiply(32, 32, "dsp48e1") == 4
    # 64 x 32 keeping 64 bits: 64 on A at 0, 24, 48; 32 on B at 0, 17; 48 + 17 = 65 >= 64 dropped: 5
    # (the other orientation, 64 on B at 0, 17, 34, 51 and 32 on A at 0, 24: 8 - 1 = 7)
    assert dsp_per_multiply(64, 32, "dsp48e1", result_bits=64) == 5
    assert dsp_per_multiply(64, 32, "dsp48e1") == 6


SNIPPET = """
#include "ap_int.h"
#include <stdint.h>
struct Regs { int a[300]; int b[4]; bool on; };
static uint8_t BIG[8192];
static Regs regs;

void top(const ap_int<8> w[16], const ap_int<8> x[16], int32_t out[1], int n, int m) {
#pragma HLS INTERFACE bram port=w
#pragma HLS INTERFACE bram port=x
#pragma HLS ARRAY_PARTITION variable=w complete dim=1
#pragma HLS ARRAY_PARTITION variable=regs.a cyclic factor=2 dim=1
  static ap_uint<12> table[2048];
#pragma HLS ARRAY_PARTITION variable=table cyclic factor=4 dim=1
  static int16_t packed[64][32];
#pragma HLS ARRAY_RESHAPE variable=packed complete dim=2
  int32_t acc = 0;
  int scratch[16];
PE:
  for (int i = 0; i < 16; ++i) {
#pragma HLS UNROLL
    scratch[i] = i;
    acc += w[i] * x[i];          // 16 multipliers, 8 x 8 bits
    acc += 4 * n;                // a power of two: a shift, no DSP
    acc += 3 * n;                // a 3-bit constant: a multiplier per copy
    acc += i * m;                // the unrolled index: a constant per copy
  }
  acc += n * m;                  // one 32 x 32 multiplier keeping 32 bits
  acc += table[n & 2047] + packed[n & 63][m & 31] + BIG[n & 8191] + regs.a[n % 300];
  out[0] = acc;
}
"""


@pytest.fixture(scope="module")
def snippet_resources():
    return read_resources({"top.cpp": SNIPPET}, {"e": ["top"]}, "dsp48e1", unit="top.cpp")


def test_arrays_of_a_snippet(snippet_resources):
    arrays = {a.name: a for a in snippet_resources.arrays}
    # table: 2048 x 12 bits in 4 cyclic banks of 512 -> 1K x 18 holds a bank: 1 block a bank, 4
    t = arrays["top::table"]
    assert (t.element_bits, t.depth, t.banks, t.bank_depth, t.storage, t.bram18) == (
        12,
        2048,
        4,
        512,
        "bram",
        4,
    )
    # packed: reshaped along dim 2, 32 x 16 = 512-bit words, 64 deep -> 1K x 18: ceil(512/18) = 29 blocks
    p = arrays["top::packed"]
    assert (p.element_bits, p.bank_bits, p.bank_depth, p.banks, p.bram18) == (16, 512, 64, 1, 29)
    # BIG: static, reached by the top: 8192 x 8 bits -> 2K x 9: 4 blocks
    assert arrays["BIG"].bram18 == 4 and arrays["BIG"].kind == "static"
    # regs: a struct's array fields each a memory: a[300] x 32 bits in 2 banks (its field's pragma) of
    # 150 words (4,800 bits: block RAM) -> 1K x 18: 2 blocks each, 4; b[4] 128 bits -> LUTRAM
    assert (arrays["regs.a"].banks, arrays["regs.a"].bank_depth, arrays["regs.a"].bram18) == (2, 150, 4)
    assert arrays["regs.b"].storage == "lutram" and arrays["regs.b"].bram18 == 0
    # the port memories (no driver binds them: the top's own) and the local scratch array
    w = arrays["top/w"]  # completely partitioned: 16 registers
    assert (w.depth, w.element_bits, w.banks, w.storage, w.bram18) == (16, 8, 16, "register", 0)
    assert arrays["top/x"].storage == "lutram" and arrays["top/x"].banks == 1
    assert arrays["top::scratch"].storage == "lutram"
    assert snippet_resources.bram18 == 4 + 29 + 4 + 4


def test_multipliers_of_a_snippet(snippet_resources):
    lines = SNIPPET.splitlines()

    def at(text):
        ln = next(i + 1 for i, s in enumerate(lines) if text in s)
        return [m for m in snippet_resources.multipliers if m.line == ln]

    (mac,) = at("w[i] * x[i]")  # 8 x 8 signed, 16 copies, 1 DSP48E1 each
    assert (mac.operand_bits, mac.copies, mac.dsp) == ([8, 8], 16, 16)
    assert at("4 * n") == []  # a power of two
    # 3 * n: 3 is 3 bits two's complement, n 32 bits, result int: 32 on A at 0, 24 -> 2 DSP48E1 per copy
    (three,) = at("3 * n")
    assert (three.copies, three.dsp) == (16, 32)
    # i * m: i = 0..15 per copy; 0, 1, 2, 4, 8 are shifts; the other 11 values (3..15 but 4, 8) are at
    # most 5 bits x 32 bits keeping 32: 2 DSP48E1 each -> 11 copies, 22 DSPs
    (idx,) = at("i * m")
    assert (idx.copies, idx.dsp) == (11, 22)
    # n * m: 32 x 32 keeping 32 bits: 3 DSP48E1 (the 24 + 17 partial product is above bit 31)
    (nm,) = at("acc += n * m;")
    assert (nm.copies, nm.dsp, nm.result_bits) == (1, 3, 32)
    assert snippet_resources.dsp == 16 + 32 + 22 + 3


SIGNED = """
#include "ap_int.h"
void top(ap_uint<18> a, ap_uint<18> b, ap_int<50> c, ap_int<18> d, long long e, int f, ap_uint<36> &o1,
         ap_int<68> &o2, long long &o3) {
  o1 = a * b;  // MARK_U
  o2 = c * d;  // MARK_S
  o3 = e * f;  // MARK_L
}
"""


def test_multiplier_signedness_and_product_width_in_sources():
    res = read_resources({"top.cpp": SIGNED}, {"e": ["top"]}, "dsp48e1", unit="top.cpp")
    lines = SIGNED.splitlines()
    by = {m.line: m for m in res.multipliers}

    def line(mark):
        return next(i + 1 for i, s in enumerate(lines) if mark in s)

    # ap_uint<18> x ap_uint<18>: 19 x 19 bits as two's complement -> 2 (see test_dsp_rule_signedness)
    u = by[line("MARK_U")]
    assert (u.operand_bits, u.signed, u.dsp) == ([18, 18], [False, False], 2)
    assert by[line("MARK_S")].dsp == 3  # signed 50 x 18: 3
    # long long x int keeping 64 bits: 5 (see test_dsp_rule_product_width)
    assert (by[line("MARK_L")].operand_bits, by[line("MARK_L")].dsp) == ([64, 32], 5)


PRAGMAS = """
#include "ap_int.h"
#include <stdint.h>
#define G 2
const int F = 4;
const int U = 4;
struct Tab { static int tab[4096]; };
int Tab::tab[4096];
static int glob[4096];
struct A { static int at(int p, int q) { return p * q; } };  // MARK_A
struct B { static int at(int p, int q) { return A::at(p, q); } };
static void fill(int n) {
#pragma HLS ARRAY_PARTITION variable=glob cyclic factor=4 dim=1
  glob[n & 4095] = n;
}
static int piped(const ap_int<8> a[8], const ap_int<8> b[8]) {
#pragma HLS PIPELINE II=1
  int s = 0;
  for (int k = 0; k < 8; ++k) s += a[k] * b[k];  // MARK_PIPED
  return s;
}
void top(int n, int m, int port_mem[512], const ap_int<8> a[8], const ap_int<8> b[8], int out[1]) {
#pragma HLS INTERFACE mode=bram port=port_mem
  int off_arr[1024];
#pragma HLS ARRAY_PARTITION variable=off_arr complete dim=1 off=true
  int named[4096];
#pragma HLS ARRAY_PARTITION variable=named cyclic factor=F dim=1
  int macro[4096];
#pragma hls ARRAY_PARTITION variable=macro \\
    cyclic factor=G dim=1
  static int s2p[512];
#pragma HLS BIND_STORAGE variable=s2p type=ram_s2p impl=bram
  static int ptrs_data[4];
  static int *ptrs[64];
  int acc = 0;
  for (int i = 0; i < 16; ++i) {
#pragma HLS UNROLL factor=U
    acc += n * m;  // MARK_UNROLL_NAMED
  }
  for (int i = 0; i < 16; ++i) {
#pragma HLS UNROLL off=true
    acc += m * n;  // MARK_UNROLL_OFF
  }
  {
    int same[1024];
#pragma HLS ARRAY_PARTITION variable=same complete dim=1
    same[n & 1023] = n;
    acc += same[m & 1023];
  }
  {
    int same[1024];  // MARK_SAME_2
    same[n & 1023] = m;
    acc += same[m & 1023];
  }
  int fab;
#pragma HLS BIND_OP variable=fab op=mul impl=fabric
  fab = acc * n;  // MARK_FABRIC
  fill(n);
  ptrs[0] = ptrs_data;
  off_arr[n & 1023] = n; named[n & 4095] = n; macro[n & 4095] = n; s2p[n & 511] = n;
  out[0] = acc + off_arr[m & 1023] + named[m & 4095] + macro[m & 4095] + Tab::tab[n & 4095] + s2p[m & 511]
           + port_mem[n & 511] + B::at(n, m) + piped(a, b) + fab + *ptrs[0] + glob[m & 4095];
}
"""


@pytest.fixture(scope="module")
def pragma_resources():
    return read_resources({"top.cpp": PRAGMAS}, {"e": ["top"]}, "dsp48e1", unit="top.cpp")


def test_pragma_forms_for_arrays(pragma_resources):
    arrays = {a.name: a for a in pragma_resources.arrays}
    # off=true: not partitioned: 1024 x 32 bits in one bank -> 1K x 18: 2 blocks (0 if read as complete)
    assert (arrays["top::off_arr"].banks, arrays["top::off_arr"].bram18) == (1, 2)
    # factor=F (const int 4): 4 banks of 1024 x 32 -> 2 blocks each, 8
    assert (arrays["top::named"].banks, arrays["top::named"].bram18) == (4, 8)
    # a lowercase `#pragma hls`, continued by a backslash, factor=G (#define 2): 2 banks of 2048 x 32 ->
    # 1K x 18: 2 x 2 = 4 each, 8
    assert (arrays["top::macro"].banks, arrays["top::macro"].bram18) == (2, 8)
    # BIND_STORAGE type=ram_s2p: simple dual-port, 512 x 36 holds 512 x 32: 1 block (2 in true dual-port)
    assert (arrays["top::s2p"].ram_mode, arrays["top::s2p"].bram18) == ("simple dual-port", 1)
    # a static data member reached through Tab::tab: 4096 x 32 -> 1K x 18: 2 x 4 = 8
    assert arrays["Tab::tab"].bram18 == 8 and arrays["Tab::tab"].kind == "static"
    # a namespace-scope array partitioned in the callee that uses it: 4 banks of 1024 x 32: 8
    assert (arrays["glob"].banks, arrays["glob"].bram18) == (4, 8)
    # INTERFACE mode=bram: a port memory, 512 x 32 true dual-port -> 2
    assert (arrays["top/port_mem"].kind, arrays["top/port_mem"].bram18) == ("port memory", 2)
    # two locals named `same` in different scopes: the pragma partitions the first only
    same = sorted((a for a in pragma_resources.arrays if a.name == "top::same"), key=lambda a: a.declared_at)
    assert [(a.banks, a.storage, a.bram18) for a in same] == [(1024, "register", 0), (1, "bram", 2)]
    # an array of pointers is no memory HLS builds: not counted as block RAM
    assert (arrays["top::ptrs"].storage, arrays["top::ptrs"].bram18) == ("pointer", 0)


def test_pragma_forms_for_multipliers(pragma_resources):
    lines = PRAGMAS.splitlines()
    by = {m.line: m for m in pragma_resources.multipliers}

    def site(mark):
        return by.get(next(i + 1 for i, s in enumerate(lines) if mark in s))

    # UNROLL factor=U (const int 4): 4 copies of a 32 x 32 multiply keeping 32 bits, 3 DSP48E1 each: 12
    assert (site("MARK_UNROLL_NAMED").copies, site("MARK_UNROLL_NAMED").dsp) == (4, 12)
    assert (site("MARK_UNROLL_OFF").copies, site("MARK_UNROLL_OFF").dsp) == (1, 3)  # off=true: 1 copy
    # a function-level PIPELINE unrolls the loop in it: 8 copies of an 8 x 8 multiply, 1 DSP each
    assert (site("MARK_PIPED").copies, site("MARK_PIPED").dsp) == (8, 8)
    # B::at calls A::at (the same spelling, another function): A::at's multiply is reached, 3 DSP48E1
    assert site("MARK_A") is not None and site("MARK_A").dsp == 3
    # BIND_OP op=mul impl=fabric: the multiply is in LUTs, no DSP
    assert (site("MARK_FABRIC").impl, site("MARK_FABRIC").dsp) == ("fabric", 0)


def test_named_factor_without_a_value_is_a_clear_error():
    src = "void top(int n, int out[1]) {\n  int t[64];\n"
    src += "#pragma HLS ARRAY_PARTITION variable=t cyclic factor=NOPE\n"
    src += "  t[n & 63] = n;\n  out[0] = t[0];\n}\n"
    with pytest.raises(HlsReadError, match="NOPE"):
        read_resources({"top.cpp": src}, {"e": ["top"]}, "dsp48e1", unit="top.cpp")


TOPS = """
int shared[4096];
void t1(int n, int mem[4096], int out[1]) {
#pragma HLS INTERFACE bram port=mem
#pragma HLS ARRAY_PARTITION variable=mem cyclic factor=2 dim=1
  out[0] = mem[n & 4095];
}
void t2(int n, int mem[4096], int out[1]) {
#pragma HLS INTERFACE bram port=mem
#pragma HLS ARRAY_PARTITION variable=mem cyclic factor=4 dim=1
  out[0] = mem[n & 4095];
}
void driver(int n, int out[1]) { t1(n, shared, out); t2(n, shared, out); }
"""


def test_tops_partitioning_one_memory_differently_are_flagged():
    res = read_resources({"top.cpp": TOPS}, {"e": ["t1", "t2"]}, "dsp48e1", unit="top.cpp")
    (mem,) = [a for a in res.arrays if a.name == "shared"]
    # the first top's layout (2 banks of 2048 x 32 -> 1K x 18: 2 x 2 = 4 each, 8), not 2 x 4 = 8 banks
    assert (mem.banks, mem.bram18) == (2, 8)
    assert "inconsistent" in mem.note and "t1" in mem.note and "t2" in mem.note


def test_asic_targets_have_no_dsp_figure():
    res = read_resources({"top.cpp": SIGNED}, {"e": ["top"]}, None, unit="top.cpp")
    assert res.dsp is None and res.to_dict()["dsp"] is None
    assert len(res.multipliers) == 3 and all(m.dsp is None for m in res.multipliers)


STREAMS = """
#include "ap_int.h"
#include "hls_stream.h"
const int DEPTH = 16;
void top(hls::stream<ap_uint<96> > &in, int out[1]) {
#pragma HLS INTERFACE axis port=in
  hls::stream<ap_uint<32> > q;
#pragma HLS STREAM variable=q depth=DEPTH
  hls::stream<int> r;
  q.write(in.read().range(31, 0));
  r.write(q.read());
  out[0] = r.read();
}
"""


def test_fifos_from_stream_declarations():
    res = read_resources({"top.cpp": STREAMS}, {"e": ["top"]}, "dsp48e2", unit="top.cpp")
    fifos = {f.name: f for f in res.fifos}
    assert (fifos["top/top::q"].element_bits, fifos["top/top::q"].depth) == (
        32,
        16,
    )  # its STREAM pragma's DEPTH
    assert (fifos["top/top::r"].element_bits, fifos["top/top::r"].depth) == (32, 2)  # UG1399's default
    assert (fifos["top/in"].element_bits, fifos["top/in"].depth) == (96, None)  # a port: the block design's
    assert res.arrays == [] and res.bram18 == 0


def test_bad_sources_raise_clear_errors():
    with pytest.raises(HlsReadError, match="could not parse"):
        read_resources({"top.cpp": "void top( {"}, {"e": ["top"]}, "dsp48e1", unit="top.cpp")
    with pytest.raises(HlsReadError, match="not defined"):
        read_resources({"top.cpp": "void other() {}"}, {"e": ["top"]}, "dsp48e1", unit="top.cpp")
    with pytest.raises(ValueError, match="unknown DSP kind"):
        read_resources({"top.cpp": "void top() {}"}, {"e": ["top"]}, "dsp99", unit="top.cpp")


# ---- report.json of a compiled network -----------------------------------------------------------


def _project_files(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*") if p.suffix in (".cpp", ".h")
    }


def _clang_listing(out: Path, synthesis: bool) -> dict[str, set[tuple[str, str]]]:
    """Every VAR_DECL / FIELD_DECL of constant-array type in the project's own files (engine.cpp and
    include/), by plain clang.cindex in the synthesis view (the synthesis scripts' flags) or the
    C-simulation one (the C-simulation build's, where the driver's memories are): {name: {(declaring
    scope, kind)}}."""
    import subprocess

    import clang.cindex as ci

    from codax.codegen.csim import MAX_LEVELS, ap_types_dir

    root = str(out.resolve())
    cxx_include = subprocess.run(["g++", "-print-file-name=include"], capture_output=True, text=True).stdout
    found: dict[str, set[tuple[str, str]]] = {}
    index = ci.Index.create()
    views = (
        ["-DCODAX_SYNTHESIS_VIEW", "-I", f"{root}/include"]
        if synthesis
        else [
            "-DCODAX_COUNT",
            "-DCODAX_TRACE",
            f"-DCODAX_MAX_LEVELS={MAX_LEVELS}",
            "-I",
            root,
            "-I",
            f"{root}/include",
        ],
    )
    for view in views:
        tu = index.parse(
            f"{root}/engine.cpp",
            args=[
                "-x",
                "c++",
                "-std=c++14",
                *view,
                "-isystem",
                str(ap_types_dir()),
                "-isystem",
                cxx_include.strip(),
            ],
        )
        assert not [d for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
        for c in tu.cursor.walk_preorder():
            if c.kind not in (ci.CursorKind.VAR_DECL, ci.CursorKind.FIELD_DECL):
                continue
            if c.type.get_canonical().kind != ci.TypeKind.CONSTANTARRAY:
                continue
            if c.location.file is None or not str(Path(c.location.file.name).resolve()).startswith(root):
                continue
            found.setdefault(c.spelling, set()).add((c.semantic_parent.spelling, c.kind.name))
    return found


def _leaf(name: str) -> str:
    """The declared name an entry ends with: `e0::load_regs_0.c.e` -> `e`, `main/hd.meta` -> `meta`."""
    return re.split(r"[.:/]", name.replace("[*]", ""))[-1]


def _graph():
    g = Graph("g", inputs=("in",), outputs=("a_out",))
    g.add(
        conv2d("a", c_in=4, c_out=4, hw=(6, 6), kernel=(3, 3), pads=(1, 1, 1, 1),
               epilogue=Epilogue(bias=True, requant=True), inputs=("in",), outputs=("a_out",))
    )  # fmt: skip
    return g


@pytest.fixture(scope="module")
def zc706_project(tmp_path_factory):
    acc = load_accelerator("zc706-int8")
    g = _graph()
    maps = {lay.name: naive_mapping(lay, acc) for lay in g.layers}
    out = write_project(g, acc, maps, random_graph_params(g), tmp_path_factory.mktemp("p") / "p")
    return out, json.loads((out / "report.json").read_text())["resources"]


def test_report_arrays_match_an_independent_listing(zc706_project):
    out, res = zc706_project
    listed = _clang_listing(out, synthesis=True)
    simulation = _clang_listing(out, synthesis=False)
    read = {_leaf(a["name"]) for a in res["arrays"]}
    fifo_names = {_leaf(f["name"]) for f in res["fifos"]}
    # arrays the tops do not hold as memories: arrays of hls::stream (the token FIFOs, listed under
    # `fifos`) and the C-simulation counters (struct Counts, CODAX_COUNT only, reached by no IP)
    streams = {n for n, where in listed.items() if all(scope == "TokenQueues" for scope, _ in where)}
    counters = {n for n, where in listed.items() if all(scope == "Counts" for scope, _ in where)}
    assert streams == {"full", "free", "done", "ps"} and streams <= fifo_names
    assert counters == {"in", "out", "ps_peak"}
    # both directions: every array the synthesis view declares is an entry, and every entry is a declared
    # array (the driver's memories behind the ports, such as the descriptor's copy, in the C-simulation
    # view: its scheduler's arrays no IP reaches are in that view only)
    assert set(listed) - streams - counters <= read, set(listed) - streams - counters - read
    assert read <= set(listed) | set(simulation), read - set(listed) - set(simulation)
    assert "desc" in read - set(listed)
    # every IP's registers hold every array field of Ctx (all instances, not one)
    ctx_fields = {n for n, where in listed.items() if ("Ctx", "FIELD_DECL") in where}
    assert {"e", "idx", "n", "o", "tile"} <= ctx_fields
    for regs in ("compute_regs", "load_regs_0", "load_regs_1", "store_regs_0", "store_regs_1"):
        have = {_leaf(a["name"]) for a in res["arrays"] if a["name"].startswith(f"e0::{regs}.c.")}
        assert ctx_fields <= have, (regs, ctx_fields - have)
    # decode's layer registers, the one IP that declares its state `static` in its own body
    assert {a["name"] for a in res["arrays"] if a["name"].startswith("codax_e0_decode::layer.")}


def test_report_resources_hand_computed(zc706_project):
    out, res = zc706_project
    by = {a["name"]: a for a in res["arrays"]}
    # the buffers: BUF_I / BUF_W 16 banks of 8,192 x 8 bits (2K x 9: 4 each) = 64 each; BUF_O 16 of 4,096
    # (2 each) = 32; REG_W 512 registers
    assert [by[f"e0::BUF_{x}"]["bram18"] for x in "IWO"] == [64, 64, 32]
    assert by["e0::REG_W"]["storage"] == "register" and by["e0::REG_W"]["banks"] == 512
    # the rank tables: 6 levels x 2 copies x 4,096 32-bit entries = 49,152 words; 1K x 18: 2 x 48 = 96
    assert by["main/hd.rank_row"]["bram18"] == by["main/hd.rank_col"]["bram18"] == 96
    # the tile records: 36 words of 832 bits, a port memory (true dual-port): ceil(832/18) = 47
    assert by["main/hd.meta"]["bram18"] == 47
    # the descriptor memory, two copies (the next call's is prefetched): 2 x 621 x 32 bits: 1K x 18: 4
    assert by["main/desc"]["bram18"] == 4
    # the register files: 32-bit arrays of 48 or 144 words (1,536 / 4,608 bits: block RAM), 2 each:
    # 5 fields of Ctx in each of the 5 IPs' registers, 5 in decode's layer, 2 in decode_task's state
    regfiles = [a for a in res["arrays"] if a["element_bits"] == 32 and a["depth"] in (48, 144)]
    assert len(regfiles) == 32 and all(a["bram18"] == 2 for a in regfiles)
    # the pointer tables Memory::arr: not memories
    assert all(a["bram18"] == 0 for a in res["arrays"] if a["name"].endswith("mem.arr"))
    # in all: 192 + 64 + 64 + 32 + 47 + 4 + 64 = 467, nothing else in block RAM
    assert res["bram18"] == 467
    # the cost model's figures beside the code's, for comparison
    assert res["model"]["bram18"] == 160 and res["model"]["dsp"] == 512
    # the PE array's MAC site: 512 copies of a signed 9 x 9 multiply, one DSP48E1 each
    mac = [m for m in res["multipliers"] if m["function"] == "pe_array_step" and m["operand_bits"] == [9, 9]]
    assert len(mac) == 1 and (mac[0]["copies"], mac[0]["dsp"], mac[0]["signed"]) == (512, 512, [True, True])
    # an index multiply of two ints keeping 32 bits inside the unrolled PE step: 3 DSP48E1 a copy
    int32 = [m for m in res["multipliers"] if m["operand_bits"] == [32, 32] and m["result_bits"] == 32]
    assert int32 and all(m["dsp"] == 3 * m["copies"] for m in int32)


def test_unreadable_sources_leave_a_report_not_a_traceback(tmp_path, monkeypatch):
    from codax.codegen import hls_engine, project

    def fail(accel):
        raise HlsReadError("libclang is not installed")

    monkeypatch.setattr(project, "engine_source_resources", fail)
    acc = load_accelerator("zc706-int8")
    g = _graph()
    maps = {lay.name: naive_mapping(lay, acc) for lay in g.layers}
    out = write_project(g, acc, maps, random_graph_params(g), tmp_path / "p")
    res = json.loads((out / "report.json").read_text())["resources"]
    assert "libclang is not installed" in res["error"] and res["model"]["dsp"] == 512
    assert "not read" in (out / "README.md").read_text()
    assert hls_engine.device_dsp_kind(load_accelerator("eyeriss-like")) is None


def test_libclang_load_errors_are_hls_read_errors(monkeypatch):
    import clang.cindex as ci

    def boom(*a, **k):
        raise ci.TranslationUnitLoadError("Error parsing translation unit.")

    monkeypatch.setattr(ci.Index, "parse", boom)
    with pytest.raises(HlsReadError, match="could not load"):
        read_resources({"top.cpp": "void top() {} // load"}, {"e": ["top"]}, "dsp48e1", unit="top.cpp")


def test_disk_cache_is_best_effort(tmp_path, monkeypatch):
    from codax.codegen import hls_engine

    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    monkeypatch.setenv("CODAX_CACHE", str(blocker))  # mkdir under a file fails
    hls_engine._store(blocker / "hls_resources" / "x.json", {"a": 1})  # no exception
    monkeypatch.setenv("CODAX_CACHE", str(tmp_path / "c"))
    hls_engine._store(tmp_path / "c" / "y.json", {"bad": object()})  # json.dump fails: no staged file left
    assert list((tmp_path / "c").iterdir()) == []


def test_disk_cache_key_covers_the_reading_inputs(monkeypatch):
    from codax.codegen import hls_engine
    from codax.codegen import hls_reader as R

    base = hls_engine.cache_key.__wrapped__()
    monkeypatch.setattr(hls_engine, "LUTRAM_MAX_BITS", hls_engine.LUTRAM_MAX_BITS * 2)
    assert hls_engine.cache_key.__wrapped__() != base  # the LUTRAM threshold
    monkeypatch.undo()
    monkeypatch.setattr(R, "STD", "-std=c++17")
    assert hls_engine.cache_key.__wrapped__() != base  # the parse flags


def test_uram_storage_is_totalled_apart():
    src = """
void top(int n, int out[1]) {
  static int u[8192];
#pragma HLS BIND_STORAGE variable=u type=ram_2p impl=uram
  u[n & 8191] = n;
  out[0] = u[(n + 1) & 8191];
}
"""
    res = read_resources({"top.cpp": src}, {"e": ["top"]}, "dsp48e2", unit="top.cpp")
    (u,) = res.arrays
    # 8,192 x 32 bits in URAM288s of 4K x 72: 1 wide x 2 deep = 2; no block RAM
    assert (u.storage, u.uram, u.bram18) == ("uram", 2, 0) and (res.uram, res.bram18) == (2, 0)
