"""The accelerator's hardware sources: one engine per engine of accel.yaml, the same for every network.

    include/codax_engine.h    the engine (fixed): descriptor interpreter, transfers, PE array, epilogue
    include/codax_program.h   the descriptor layout (fixed, generated from codax/codegen/program.py)
    engine.cpp                per engine: its on-chip arrays, sized from accel.yaml, and its entry
                              codax_engine_<name>(desc, weights, x, y, r, psum) =
                              run_layer<ROWS, COLS, WBITS, ABITS, FLOAT_OK> on them
    top.cpp                   codax_top(program, call, weights, act): m_axi DRAM ports, s_axilite
                              control; reads descriptor `call` of the program and runs its engine

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
PROGRAM_HEADER = "codax_program.h"


@dataclass(frozen=True)
class EngineSource:
    """The hardware sources of one accelerator: {relative path: text} and each engine's C entry."""

    files: dict[str, str]
    entries: dict[str, str]  # engine name -> extern "C" symbol
    key: str  # content hash of the sources: the csim/BYOC build cache key

    @property
    def cpp(self) -> dict[str, str]:
        return {k: v for k, v in self.files.items() if k.endswith(".cpp")}


def engine_symbol(accel: Accelerator, engine_name: str) -> str:
    return f"codax_engine_{c_ident(engine_name, 'e_')}"


def _engine_block(accel: Accelerator, index: int, sym: str) -> list[str]:
    eng = accel.engines[index]
    pa = eng.pe_array
    arrays = level_arrays(accel, eng.name)
    ns = f"e{index}"
    lines = [
        f"// ---- engine {_c(eng.name)}: {pa.rows} x {pa.cols} PE array ({_c(pa.dataflow) or 'dataflow'}; "
        f"rows unroll {'/'.join(pa.row_dims)}, cols {'/'.join(pa.col_dims)}), levels "
        f"{_c(' > '.join(eng.level_names))}",
        f"namespace {ns} {{",
    ]
    idents = Namer()  # level names come from accel.yaml: C identifiers, distinct
    declared: dict[str, str] = {}  # array name -> C identifier
    for (h, _op), (name, size) in sorted(arrays.items()):
        if name in declared:
            continue
        declared[name] = idents(name)
        lv = eng.levels[h - 1]
        what = f"per-PE registers ({size // pa.pes} B x {pa.pes} PEs)" if lv.per_pe else f"{lv.banks} bank(s)"
        where = f"level {_c(lv.name)}, {'/'.join(lv.operands)}"
        lines.append(f"static uint8_t {declared[name]}[{size}];  // {where}: {what}")
    lines.append("}  // namespace")
    lines += [
        f'extern "C" CODAX_ENTRY void {sym}(const int32_t *desc, const uint8_t *weights, const uint8_t *x,',
        "                                  uint8_t *y, const uint8_t *r, uint8_t *ps, const uint8_t *wt) {",
    ]
    for name, ident in declared.items():
        h, _ = next(k for k, v in arrays.items() if v[0] == name)
        lv = eng.levels[h - 1]
        if lv.per_pe:
            lines.append(f"#pragma HLS ARRAY_PARTITION variable={ns}::{ident} cyclic factor={pa.pes} dim=1")
        elif lv.banks > 1:
            lines.append(f"#pragma HLS ARRAY_PARTITION variable={ns}::{ident} cyclic factor={lv.banks} dim=1")
    lines.append("  codax::Memory mem;")
    lines.append("  memset(&mem, 0, sizeof(mem));")
    ports = [accel.dram.bandwidth] + [lv.bandwidth for lv in eng.levels]
    for h, bw in enumerate(ports):
        lines.append(f"  mem.port_bytes[{h}] = {float(bw)!r};  // {_c(eng.level_names[h])} port, bytes/cycle")
    for h, lv in enumerate(eng.levels, start=1):
        if lv.per_pe:
            lines.append(f"  mem.per_pe[{h}] = true;")
    lines.append(f"  mem.pipeline_depth = {pa.pipeline_depth};")
    lines.append(f"  mem.axi_latency = {accel.dram.latency};  // cycles, dram.latency")
    lines.append(f"  mem.beat_bytes = {dram_beat_bytes(accel)};  // the DRAM port's width, dram.bandwidth")
    lines.append(f"  mem.stream_weights = {'true' if accel.dram.stream_weights else 'false'};")
    for (h, op), (name, _) in sorted(arrays.items()):
        lines.append(f"  mem.arr[{h}][{OPERANDS.index(op)}] = {ns}::{declared[name]};")
    lines += [
        "  codax::Dram dram = {weights, wt, x, y, r, ps};",
        f"  codax::run_layer<{pa.rows}, {pa.cols}, {max(accel.weight_bits)}, {max(accel.act_bits)}, "
        f"{'true' if accel.float_ok else 'false'}>(desc, mem, dram);",
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
        "// function): the entries are weak there; synthesis sees plain functions.",
        "#if defined(__SYNTHESIS__) || !defined(__GNUC__)",
        "#define CODAX_ENTRY",
        "#else",
        "#define CODAX_ENTRY __attribute__((weak))",
        "#endif",
        "",
    ]
    entries = {}
    for i, eng in enumerate(accel.engines):
        sym = base = engine_symbol(accel, eng.name)
        while sym in entries.values():  # engine names that sanitize alike stay distinct
            sym = f"{base}_{i}"
        cpp += _engine_block(accel, i, sym)
        entries[eng.name] = sym
    beat = dram_beat_bytes(accel)
    widen = f"max_widen_bitwidth={8 * beat}"
    top = [
        f"// top.cpp -- generated by codax for accelerator {_c(accel.name)}: the accelerator's top function.",
        "// One call runs descriptor `call` of the program (program.bin) on the DRAM images:",
        "//   weights -- weights.bin (packed weights, bias, requantization multipliers), read-only",
        "//   act     -- the activation region (tensors at the offsets their descriptors name) and the",
        "//              partial-sum scratch",
        f'#include "{PROGRAM_HEADER}"',
        "#include <stdint.h>",
        "",
    ]
    top += [
        f'extern "C" void {sym}(const int32_t *desc, const uint8_t *weights, const uint8_t *x, uint8_t *y, '
        "const uint8_t *r, uint8_t *ps, const uint8_t *wt);"
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
        "void codax_top(const int32_t *program, int call, const uint8_t *weights, uint8_t *act) {",
        "  // one DRAM port, as the cost model has it: every m_axi argument in one bundle, its bursts",
        f"  // widened to dram.bandwidth = {beat} B per beat (UG1399, Automatic Port Width",
        "  // Resizing)",
        "#pragma HLS INTERFACE m_axi port=program offset=slave bundle=gmem depth=CODAX_PROGRAM_WORDS "
        + widen,
        f"#pragma HLS INTERFACE m_axi port=weights offset=slave bundle=gmem depth=CODAX_WEIGHT_BYTES {widen}",
        f"#pragma HLS INTERFACE m_axi port=act offset=slave bundle=gmem depth=CODAX_ACT_BYTES {widen}",
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
            f"    {sym}(d, weights, act + d[codax::D_X_OFF], act + d[codax::D_Y_OFF], r, ps, wt);",
            "    break;",
        ]
    top += ["  default:", "    break;", "  }", "}", ""]
    files = {
        f"include/{ENGINE_HEADER}": (INCLUDE_DIR / ENGINE_HEADER).read_text(),
        f"include/{PROGRAM_HEADER}": program_header(),
        "engine.cpp": "\n".join(cpp),
        "top.cpp": "\n".join(top),
    }
    h = hashlib.sha256()
    for k in sorted(files):
        h.update(k.encode() + b"\0" + files[k].encode() + b"\0")
    return EngineSource(files, entries, h.hexdigest()[:16])


def _c(s: str) -> str:
    return "".join(ch if ch.isprintable() and ch != "\\" else "?" for ch in str(s))[:80]
