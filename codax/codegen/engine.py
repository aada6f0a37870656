"""The accelerator's hardware sources: one engine per engine of accel.yaml, the same for every network.

    include/codax_engine.h    the engine (fixed): descriptor interpreter, transfers, PE array, epilogue
    include/codax_program.h   the descriptor layout (fixed, generated from codax/codegen/program.py)
    engine.cpp                per engine: its on-chip arrays, sized from accel.yaml; its IPs, each a
                              synthesis top (codax_e<i>_decode, _load_<port>, _store_<port>,
                              _compute: VTA's fetch / load / store / compute modules); the policy
                              C-simulation's scheduler calls them by; and its C-simulation entry
                              codax_engine_<name>(program, calls, call, weights, x, y, r, psum, wt)
                              = run_layer: call `call` of a program of `calls` descriptors
    top.cpp                   codax_top(program, calls, call, weights, act): the C-simulation driver
                              (VTA's vta()): reads descriptor `call` of the program and runs its engine

Everything here is a function of the accelerator alone (a test checks that two networks give
byte-identical sources). The arrays are the buffers the cost model charges: `level_arrays` is the
one place both read their names and sizes from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from codax.codegen.names import Namer, c_ident
from codax.codegen.program import MAX_LEVELS, level_arrays, program_header
from codax.errors import UnsupportedError
from codax.ir import OPERANDS, Accelerator

INCLUDE_DIR = Path(__file__).parent / "include"
ENGINE_HEADER = "codax_engine.h"
REQUANT_HEADER = "codax_requant.h"  # the requantizer codax_engine.h includes (shared with the core's store)
PROGRAM_HEADER = "codax_program.h"


@dataclass(frozen=True)
class EngineSource:
    """The hardware sources of one accelerator: {relative path: text} and each engine's C entry."""

    files: dict[str, str]
    entries: dict[str, str]  # engine name -> extern "C" symbol (C-simulation's entry)
    key: str  # content hash of the sources: the csim/BYOC build cache key
    ips: tuple[str, ...] = ()  # the synthesis tops: each engine's decode, load, store and compute IPs

    @property
    def cpp(self) -> dict[str, str]:
        return {k: v for k, v in self.files.items() if k.endswith(".cpp")}


def engine_symbol(accel: Accelerator, engine_name: str) -> str:
    return f"codax_engine_{c_ident(engine_name, 'e_')}"


def _ports(engine) -> int:
    """Port p moves tiles between level p (DRAM: 0) and the levels inside it; the innermost has none."""
    return len(engine.level_names) - 1


def _ip_prefix(index: int) -> str:
    return f"codax_e{index}"


def engine_ips(accel: Accelerator, index: int) -> list[str]:
    """The IPs of engine `index` (codax_engine.h, "the engine's IPs"): decode, a load and a store IP per
    port, compute."""
    ports = _ports(accel.engines[index])
    ip = _ip_prefix(index)
    return [
        f"{ip}_decode",
        *(f"{ip}_{kind}_{p}" for p in range(ports) for kind in ("load", "store")),
        f"{ip}_compute",
    ]


def _engine_block(accel: Accelerator, index: int, sym: str) -> list[str]:
    eng = accel.engines[index]
    pa = eng.pe_array
    arrays = level_arrays(accel, eng.name)
    ns = f"e{index}"
    ports = _ports(eng)
    beat = dram_beat_bytes(accel)
    widen = f"max_widen_bitwidth={8 * beat}"
    lines = [
        f"// ---- engine {_c(eng.name)}: {pa.rows} x {pa.cols} PE array ({_c(pa.dataflow) or 'dataflow'}; "
        f"rows unroll {'/'.join(pa.row_dims)}, cols {'/'.join(pa.col_dims)}), levels "
        f"{_c(' > '.join(eng.level_names))}",
        f"namespace {ns} {{",
    ]
    idents = Namer()  # level names come from accel.yaml: C identifiers, distinct
    declared: dict[str, str] = {}  # array name -> C identifier
    sizes: dict[str, int] = {}
    for (h, _op), (name, size) in sorted(arrays.items()):
        if name in declared:
            continue
        declared[name] = idents(name)
        sizes[name] = size
        lv = eng.levels[h - 1]
        what = f"per-PE registers ({size // pa.pes} B x {pa.pes} PEs)" if lv.per_pe else f"{lv.banks} bank(s)"
        where = f"level {_c(lv.name)}, {'/'.join(lv.operands)}"
        lines.append(f"static uint8_t {declared[name]}[{size}];  // {where}: {what}")
    # each IP's registers: its view of the layer and the instruction it holds waiting for its tokens
    for p in range(ports):
        lines.append(f"static codax::LoadIP load_regs_{p};")
        lines.append(f"static codax::StoreIP store_regs_{p};")
    lines.append("static codax::ComputeIP compute_regs;")
    # the decode IP's one register that survives a call: the call whose descriptor it prefetched
    lines.append("static int desc_next = -1;  // (-1: none)")
    # the Memory view of the buffers, built from the arrays an IP is given
    params = ", ".join(f"uint8_t *{ident}_" for ident in declared.values())
    lines += [
        f"static codax::Memory memory({params}) {{",
        "  codax::Memory mem;",
        "  memset(&mem, 0, sizeof(mem));",
    ]
    port_bw = [accel.dram.bandwidth] + [lv.bandwidth for lv in eng.levels]
    for h, bw in enumerate(port_bw):
        lines.append(f"  mem.port_bytes[{h}] = {float(bw)!r};  // {_c(eng.level_names[h])} port, bytes/cycle")
    for h, lv in enumerate(eng.levels, start=1):
        if lv.per_pe:
            lines.append(f"  mem.per_pe[{h}] = true;")
    lines.append(f"  mem.pipeline_depth = {pa.pipeline_depth};")
    lines.append(f"  mem.axi_latency = {accel.dram.latency};  // cycles, dram.latency")
    lines.append(f"  mem.beat_bytes = {beat};  // the DRAM port's width, dram.bandwidth")
    lines.append(f"  mem.stream_weights = {'true' if accel.dram.stream_weights else 'false'};")
    for (h, op), (name, _) in sorted(arrays.items()):
        lines.append(f"  mem.arr[{h}][{OPERANDS.index(op)}] = {declared[name]}_;")
    lines += ["  return mem;", "}", "}  // namespace", ""]

    buf_params = ", ".join(f"uint8_t {ident}[{sizes[name]}]" for name, ident in declared.items())
    buf_args = ", ".join(f"{ns}::{ident}" for ident in declared.values())
    buf_names = ", ".join(declared.values())
    dram_params = (
        "const uint8_t *weights, const uint8_t *wt, const uint8_t *x, uint8_t *y, const uint8_t *r, "
        "uint8_t *ps"
    )
    dram_args = "m.dram.wblob, m.dram.wt, m.dram.x, m.dram.y, m.dram.r, m.dram.ps"
    tq = "codax::TokenQueue"
    mem = f"{ns}::memory({buf_names})"
    on = f"m.desc, {dram_args}, {buf_args}, m.hd"  # what the scheduler hands every IP
    L = "codax::MAX_LEVELS"

    def pragmas(streams: list[str]) -> list[str]:
        out = ["#pragma HLS INTERFACE bram port=desc"]
        for port in ("weights", "wt", "x", "y", "r", "ps"):
            out.append(f"#pragma HLS INTERFACE m_axi port={port} offset=slave bundle=gmem {widen}")
        for name, ident in declared.items():
            out.append(f"#pragma HLS INTERFACE bram port={ident}")
            h = next(k[0] for k, v in arrays.items() if v[0] == name)
            lv = eng.levels[h - 1]
            if lv.per_pe:
                out.append(f"#pragma HLS ARRAY_PARTITION variable={ident} cyclic factor={pa.pes} dim=1")
            elif lv.banks > 1:
                out.append(f"#pragma HLS ARRAY_PARTITION variable={ident} cyclic factor={lv.banks} dim=1")
        out.append("#pragma HLS INTERFACE bram port=hd")
        out.append("#pragma HLS DISAGGREGATE variable=hd")
        out += [f"#pragma HLS INTERFACE axis port={st}" for st in streams]
        out.append("#pragma HLS INTERFACE s_axilite port=return bundle=control")
        return out

    ip = _ip_prefix(index)
    common = f"const int32_t desc[codax::DESC_WORDS], {dram_params}, {buf_params}, codax::Headers &hd"
    dram_struct = "  const codax::Dram dram = {weights, wt, x, y, r, ps};"
    lines += [
        f'// The IPs of engine {_c(eng.name)} (codax_engine.h, "the engine\'s IPs"): synthesized one by one',
        "// (run_hls.tcl); C-simulation runs them from the scheduler below.",
        f"namespace {{ struct {ns}_sched; }}  // C-simulation's policy (below): local to each copy",
        "",
        f"CODAX_IP bool {ip}_decode(const int32_t *program, int calls, int call,",
        "    int32_t desc[2][codax::DESC_WORDS],",
        f"    hls::stream<codax::Insn> load[{L}], hls::stream<codax::Insn> store[{L}],",
        "    hls::stream<codax::CInsn> &compute) {",
        f"#pragma HLS INTERFACE m_axi port=program offset=slave bundle=gmem {widen}",
        "#pragma HLS INTERFACE s_axilite port=calls bundle=control",
        "#pragma HLS INTERFACE s_axilite port=call bundle=control",
        "#pragma HLS INTERFACE bram port=desc",
        "#pragma HLS INTERFACE axis port=load",
        "#pragma HLS INTERFACE axis port=store",
        "#pragma HLS INTERFACE axis port=compute",
        "#pragma HLS INTERFACE s_axilite port=return bundle=control",
        "  // the fetch: the call's descriptor into copy call & 1 (unless the call before prefetched it),",
        "  // the next call's into the other copy; the copy every IP decodes is the call's",
        f"  const bool fetched = codax::fetch_descriptors(program, calls, call, desc, {ns}::desc_next);",
        "  static codax::Ctx layer;",
        "  codax::decode_layer(layer, desc[call & 1], codax::Memory(), codax::Dram(), 0);",
        f"  codax::decode_task<{ns}_sched>(layer, load, store, compute);",
        "  return fetched;",
        "}",
        "",
    ]
    for p in range(ports):
        lines += [
            f"CODAX_IP bool {ip}_load_{p}({common}, hls::stream<codax::Insn> &insns,",
            f"    {tq} full[3][{L}], {tq} free[3][{L}], {tq} psq[{L}]) {{",
            *pragmas(["insns", "full", "free", "psq"]),
            dram_struct,
            f"  return codax::load_step({ns}::load_regs_{p}, desc, {mem}, dram, hd, insns, full, free, psq);",
            "}",
            "",
            f"CODAX_IP bool {ip}_store_{p}({common}, hls::stream<codax::Insn> &insns,",
            f"    {tq} free[3][{L}], {tq} done[{L}], {tq} psq[{L}]) {{",
            *pragmas(["insns", "free", "done", "psq"]),
            dram_struct,
            f"  return codax::store_step<{str(accel.float_ok).lower()}>({ns}::store_regs_{p}, desc, {mem}, "
            "dram, hd, insns, free, done, psq);",
            "}",
            "",
        ]
    tmpl = f"{pa.rows}, {pa.cols}, {max(accel.weight_bits)}, {max(accel.act_bits)}, " + (
        "true" if accel.float_ok else "false"
    )
    lines += [
        f"CODAX_IP bool {ip}_compute({common}, hls::stream<codax::CInsn> &insns,",
        f"    {tq} full[3][{L}], {tq} free[3][{L}], {tq} done[{L}]) {{",
        *pragmas(["insns", "full", "free", "done"]),
        dram_struct,
        f"  return codax::compute_step<{tmpl}>({ns}::compute_regs, desc, {mem}, dram, hd, "
        "insns, full, free, done);",
        "}",
        "",
        "#ifndef CODAX_HW",
        "// C-simulation's policy: how the scheduler calls this engine's IPs on its FIFOs and buffers.",
        "namespace {",
        f"struct {ns}_sched {{",
        f"  enum {{ PORTS = {ports}, BEAT_BYTES = {beat}, AXI_LATENCY = {accel.dram.latency} }};",
        "  // the engine's descriptor memory (the decode IP's two copies) and, for the accounting, what",
        "  // of the last prefetch outlasted its layer",
        "  struct Fetch {",
        "    int32_t desc[2][codax::DESC_WORDS];",
        "    double slack;",
        "  };",
        "  static Fetch &fetch() {",
        "    static Fetch f;",
        "    return f;",
        "  }",
        "  static double &prefetch_slack() { return fetch().slack; }",
        "  static bool decode(codax::Sim &m, const int32_t *program, int calls, int call) {",
        "    m.desc = fetch().desc[call & 1];",
        f"    if (call == {ns}::desc_next) codax::check_prefetched(m.desc, program, call);",
        f"    return {ip}_decode(program, calls, call, fetch().desc, m.load, m.store, m.compute);",
        "  }",
        "  static bool load(int p, codax::Sim &m) {",
        "    switch (p) {",
    ]
    for p in range(ports):
        lines.append(
            f"      case {p}: return {ip}_load_{p}({on}, m.load[{p}], m.tq.full, m.tq.free, m.tq.ps);"
        )
    lines += [
        "      default: return false;",
        "    }",
        "  }",
        "  static bool store(int p, codax::Sim &m) {",
        "    switch (p) {",
    ]
    for p in range(ports):
        lines.append(
            f"      case {p}: return {ip}_store_{p}({on}, m.store[{p}], m.tq.free, m.tq.done, m.tq.ps);"
        )
    held = " || ".join(
        [f"{ns}::load_regs_{p}.has || {ns}::store_regs_{p}.has" for p in range(ports)]
        + [f"{ns}::compute_regs.has"]
    )
    lines += [
        "      default: return false;",
        "    }",
        "  }",
        "  static bool compute(codax::Sim &m) {",
        f"    return {ip}_compute({on}, m.compute, m.tq.full, m.tq.free, m.tq.done);",
        "  }",
        f"  static bool idle() {{ return !({held}); }}",
        "};",
        "}  // namespace",
        "#else",
        f"namespace {{ struct {ns}_sched {{}}; }}",
        "#endif",
        "",
        "// The engine's C-simulation entry: one call, `call` of the program of `calls` descriptors in DRAM,",
        "// on the call's tensors.",
        f'extern "C" CODAX_ENTRY void {sym}(const int32_t *program, int calls, int call,',
        "                                  const uint8_t *weights, const uint8_t *x, uint8_t *y,",
        "                                  const uint8_t *r, uint8_t *ps, const uint8_t *wt) {",
        "#ifndef CODAX_HW",
        "  const codax::Dram dram = {weights, wt, x, y, r, ps};",
        f"  codax::run_layer<{ns}_sched>(program, calls, call, dram);",
        "#endif",
        "}",
        "",
    ]
    return lines


def dram_beat_bytes(accel: Accelerator) -> int:
    """The DRAM port's data width in bytes: dram.bandwidth, one beat per cycle. An m_axi port widens to
    a power of two of 8 to 1024 bits (UG1399, Automatic Port Width Resizing)."""
    bw = accel.dram.bandwidth
    if bw != int(bw) or int(bw) & (int(bw) - 1) or not 1 <= bw <= 128:
        raise UnsupportedError(
            f"accelerator {accel.name}: dram.bandwidth {bw} B/cycle is not a DRAM port width; the engine's "
            "m_axi port is a power of two of 1 to 128 bytes (set dram.bandwidth to one)"
        )
    return int(bw)


def engine_sources(accel: Accelerator) -> EngineSource:
    """The accelerator's hardware sources (see the module docstring)."""
    if any(len(e.level_names) > MAX_LEVELS for e in accel.engines):
        raise UnsupportedError(
            f"accelerator {accel.name}: an engine has more than {MAX_LEVELS - 1} on-chip levels"
        )
    cpp = [
        f"// engine.cpp -- generated by codax for accelerator {_c(accel.name)}. Do not edit: regenerate from",
        "// accel.yaml. The same file for every network: a network is a program of descriptors.",
        f'#include "{ENGINE_HEADER}"',
        "",
        "// csim builds link several copies of the engine into one executable (one per offloaded",
        "// function): the entries are weak there and the IPs local to each copy; synthesis sees plain",
        "// functions, each IP a top of its own.",
        "#if defined(CODAX_HW) || !defined(__GNUC__)",
        "#define CODAX_ENTRY",
        "#define CODAX_IP",
        "#else",
        "#define CODAX_ENTRY __attribute__((weak))",
        "#define CODAX_IP static",
        "#endif",
        "",
    ]
    entries = {}
    ips: list[str] = []
    for i, eng in enumerate(accel.engines):
        ips += engine_ips(accel, i)
        sym = base = engine_symbol(accel, eng.name)
        while sym in entries.values():  # engine names that sanitize alike stay distinct
            sym = f"{base}_{i}"
        cpp += _engine_block(accel, i, sym)
        entries[eng.name] = sym
    beat = dram_beat_bytes(accel)
    widen = f"max_widen_bitwidth={8 * beat}"
    top = [
        f"// top.cpp -- generated by codax for accelerator {_c(accel.name)}: the accelerator's C-simulation",
        "// driver (VTA's vta() in the same role). One call runs descriptor `call` of the program",
        "// (program.bin) through the engine's IPs (engine.cpp), which synthesis builds one by one",
        "// (run_hls.tcl); its interface is the one the IPs' DRAM port and control present together. The",
        "// DRAM images:",
        "//   weights -- weights.bin (packed weights, bias, requantization multipliers), read-only",
        "//   act     -- the activation region (tensors at the offsets their descriptors name) and the",
        "//              partial-sum scratch",
        f'#include "{PROGRAM_HEADER}"',
        "#include <stdint.h>",
        "",
    ]
    top += [
        f'extern "C" void {sym}(const int32_t *program, int calls, int call, const uint8_t *weights, '
        "const uint8_t *x, uint8_t *y, const uint8_t *r, uint8_t *ps, const uint8_t *wt);"
        for sym in entries.values()
    ]
    top += [
        "",
        "// m_axi depths (what C/RTL co-simulation allocates) are a network's sizes: the project's",
        "// run_hls.tcl / hls_config.cfg define them; these defaults only keep the file self-contained.",
        "#ifndef CODAX_PROGRAM_WORDS",
        "#define CODAX_PROGRAM_WORDS 65536",
        "#endif",
        "#ifndef CODAX_WEIGHT_BYTES",
        "#define CODAX_WEIGHT_BYTES 16777216",
        "#endif",
        "#ifndef CODAX_ACT_BYTES",
        "#define CODAX_ACT_BYTES 16777216",
        "#endif",
        "",
        "// call `call` of the program's `calls`: the engine prefetches call + 1 while it runs",
        "void codax_top(const int32_t *program, int calls, int call, const uint8_t *weights, uint8_t *act) {",
        "  // one DRAM port, as the cost model has it: every m_axi argument in one bundle, its bursts",
        f"  // widened to dram.bandwidth = {beat} B per beat (UG1399, Automatic Port Width",
        "  // Resizing)",
        "#pragma HLS INTERFACE m_axi port=program offset=slave bundle=gmem depth=CODAX_PROGRAM_WORDS "
        + widen,
        f"#pragma HLS INTERFACE m_axi port=weights offset=slave bundle=gmem depth=CODAX_WEIGHT_BYTES {widen}",
        f"#pragma HLS INTERFACE m_axi port=act offset=slave bundle=gmem depth=CODAX_ACT_BYTES {widen}",
        "#pragma HLS INTERFACE s_axilite port=calls",
        "#pragma HLS INTERFACE s_axilite port=call",
        "#pragma HLS INTERFACE s_axilite port=return",
        "  const int32_t *d = program + (long)call * codax::DESC_WORDS;",
        "  const uint8_t *r = d[codax::D_R_OFF] >= 0 ? act + d[codax::D_R_OFF] : 0;",
        "  uint8_t *ps = d[codax::D_PS_OFF] >= 0 ? act + d[codax::D_PS_OFF] : 0;",
        "  // a run-time weight tensor (attention's K^T, V) lives in the activation region",
        "  const uint8_t *wt = d[codax::D_W_SRC] ? act + d[codax::D_W_OFF] : 0;",
        "  switch (d[codax::D_ENGINE]) {",
    ]
    for i, sym in enumerate(entries.values()):
        top += [
            f"  case {i}:",
            f"    {sym}(program, calls, call, weights, act + d[codax::D_X_OFF], act + d[codax::D_Y_OFF], r, "
            "ps, wt);",
            "    break;",
        ]
    top += ["  default:", "    break;", "  }", "}", ""]
    files = {
        f"include/{ENGINE_HEADER}": (INCLUDE_DIR / ENGINE_HEADER).read_text(),
        f"include/{REQUANT_HEADER}": (INCLUDE_DIR / REQUANT_HEADER).read_text(),
        f"include/{PROGRAM_HEADER}": program_header(),
        "engine.cpp": "\n".join(cpp),
        "top.cpp": "\n".join(top),
    }
    h = hashlib.sha256()
    for k in sorted(files):
        h.update(k.encode() + b"\0" + files[k].encode() + b"\0")
    return EngineSource(files, entries, h.hexdigest()[:16], tuple(ips))


def _c(s: str) -> str:
    return "".join(ch if ch.isprintable() and ch != "\\" else "?" for ch in str(s))[:80]
