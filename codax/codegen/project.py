"""The Vitis HLS project for a mapped network, written atomically.

    out_dir/
      kernels/<layer>.cpp|h   one kernel per layer (the mapping's loop nest)
      include/codax_hls.h     shared templates (copied, so the project is self-contained)
      top.cpp                 codax_top(): m_axi DRAM ports, s_axilite control, one case per call
      tb.cpp                  testbench: reads weights.bin and tb_data/*.bin, runs the calls, compares
      run_hls.tcl, hls_config.cfg   Vitis HLS (csim / csynth) scripts
      schedule.yaml, weights.bin, report.json, README.md

Everything is generated and checked in memory first (a mapping that does not fit raises before any
file exists), written into a temporary sibling directory, then renamed into place; an existing
out_dir is replaced only with force=True, and then only once the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from codax.codegen.csim import INCLUDE_DIR
from codax.codegen.hls.emit import KernelSource, emit_kernel
from codax.codegen.hls.types import KernelTypes
from codax.codegen.names import Namer
from codax.codegen.params import LayerParams
from codax.codegen.schedule import RuntimeSchedule, build_schedule
from codax.errors import ConfigError
from codax.hw import evaluate_many
from codax.ir import OPERANDS, Accelerator, Graph, Mapping, dump_yaml, validate_mapping

RESERVED = ("codax_top", "main")


def generate(
    graph: Graph,
    accel: Accelerator,
    mappings: dict[str, Mapping],
    params: dict[str, LayerParams],
    shapes: dict[str, int] | None = None,
) -> dict[str, bytes]:
    """All project files in memory: {relative path: content}. Raises before producing anything if a
    layer lacks a mapping or parameters, or a mapping is illegal or does not fit."""
    for layer in graph.layers:
        if layer.name not in mappings:
            raise ConfigError(f"layer {layer.name}: no mapping; map it first (codax.hw.mapper)")
        if layer.name not in params:
            raise ConfigError(
                f"layer {layer.name}: no parameters; extract them (codax.codegen.params.from_onnx)"
            )
        validate_mapping(layer, accel, mappings[layer.name])
    costs_list = evaluate_many([(lay, accel, mappings[lay.name]) for lay in graph.layers], check=False)
    costs = {c.layer: c for c in costs_list}
    namer = Namer(RESERVED)
    kernels: list[KernelSource] = []
    for layer in graph.layers:
        types = KernelTypes.for_layer(layer, params[layer.name])
        kernels.append(emit_kernel(layer, accel, mappings[layer.name], namer(layer.name), types))
    sched = build_schedule(graph, accel, mappings, params, costs, namer, shapes)
    files: dict[str, bytes] = {}
    for k in kernels:
        files[f"kernels/{k.ident}.h"] = k.header.encode()
        files[f"kernels/{k.ident}.cpp"] = k.source.encode()
    files["include/codax_hls.h"] = (INCLUDE_DIR / "codax_hls.h").read_bytes()
    files["top.cpp"] = top_cpp(kernels, sched, params).encode()
    files["tb.cpp"] = tb_cpp(kernels, sched, graph).encode()
    files["run_hls.tcl"] = run_hls_tcl(kernels, accel).encode()
    files["hls_config.cfg"] = hls_config(kernels, accel).encode()
    files["schedule.yaml"] = dump_yaml(sched.to_dict()).encode()
    files["weights.bin"] = bytes(sched.blob.data)
    files["report.json"] = json.dumps(
        report(graph, accel, mappings, kernels, costs, sched), indent=1
    ).encode()
    files["README.md"] = readme(graph, accel, kernels, sched).encode()
    return files


def write_project(
    graph: Graph,
    accel: Accelerator,
    mappings: dict[str, Mapping],
    params: dict[str, LayerParams],
    out_dir,
    force: bool = False,
    shapes: dict[str, int] | None = None,
    tb_data: dict[str, np.ndarray] | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """Write the project to out_dir atomically; `tb_data` (tensor name -> array) adds testbench files,
    `extra` ({relative path: content}) any other files that belong in the same directory."""
    out = Path(out_dir)
    if out.exists() and not force:
        raise ConfigError(f"output directory {out} exists; pass force=True (CLI: --force) to replace it")
    files = generate(graph, accel, mappings, params, shapes)
    for name, arr in (tb_data or {}).items():
        files[f"tb_data/{Namer()(name)}.bin"] = np.ascontiguousarray(arr).tobytes()
    files.update(extra or {})
    return write_atomic(out, files)


def write_atomic(out: Path, files: dict[str, bytes]) -> Path:
    """Write {relative path: content} as directory `out`: into a temporary sibling first, then
    renamed into place, so an existing `out` is replaced whole or not at all."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for rel, data in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rmdir(old)
            os.replace(out, old)  # the old project stays whole until the new one is in place
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# --- generated files -------------------------------------------------------------------------------
def _ptr(ty: str, base: str, region) -> str:
    return f"({ty} *)({base} + {region['offset']})" if region else "0"


def top_cpp(kernels: list[KernelSource], sched: RuntimeSchedule, params: dict[str, LayerParams]) -> str:
    by_ident = {k.ident: k for k in kernels}
    lines = [
        "// top.cpp -- generated by codax: the accelerator's top function.",
        "// One call runs one scheduled layer (schedule.yaml `calls`, kind accel) on DRAM images:",
        "//   weights -- weights.bin (weights, bias, requantization multipliers), read-only",
        "//   act     -- activation region (tensors at their schedule offsets) + partial-sum scratch",
        '#include "codax_hls.h"',
    ]
    lines += [f'#include "kernels/{k.ident}.h"' for k in kernels]
    lines += [
        "",
        "void codax_top(const uint8_t *weights, uint8_t *act, int call) {",
        "#pragma HLS INTERFACE m_axi port=weights offset=slave bundle=gmem0 depth=1",
        "#pragma HLS INTERFACE m_axi port=act offset=slave bundle=gmem1 depth=1",
        "#pragma HLS INTERFACE s_axilite port=call",
        "#pragma HLS INTERFACE s_axilite port=return",
        "  switch (call) {",
    ]
    calls = [e for e in sched.entries if e["kind"] == "accel"]
    for i, e in enumerate(calls):
        k = by_ident[e["kernel"]]
        t, prm = k.types, params[e["node"]]
        lo, hi = prm.clamp
        scratch = sched.scratch.to_dict() if e["scratch"] else None
        args = [
            _ptr(f"const {t.mem('W')}", "weights", e["weights"]),
            _ptr(f"const {t.mem('I')}", "act", e["input"]),
            _ptr(t.mem("Y"), "act", e["output"]),
            _ptr(t.mem("ACC"), "act", scratch),
            _ptr(f"const {t.mem('ACC')}", "weights", e["bias"]),
            _ptr(f"const {t.mem('R')}", "act", e["residual"]),
            _ptr("const float", "weights", e["multiplier"]),
            f"{float(prm.r_multiplier) if t.kind == 'int' else 1.0!r}f",
            str(prm.w_zero_point),
            str(prm.x_zero_point),
            str(prm.r_zero_point),
            str(prm.y_zero_point),
            _flt(lo),
            _flt(hi),
        ]
        lines.append(f"  case {i}:  // layer {_c(e['node'])} on engine {_c(e['engine'])}")
        lines.append(f"    {k.ident}({', '.join(args)});")
        lines.append("    break;")
    lines += ["  default:", "    break;", "  }", "}", ""]
    return "\n".join(lines)


def _flt(v: float) -> str:
    if np.isinf(v):
        return "-INFINITY" if v < 0 else "INFINITY"
    return f"{float(v)!r}f"


def tb_cpp(kernels: list[KernelSource], sched: RuntimeSchedule, graph: Graph) -> str:
    act_bytes = sched.scratch.offset + sched.scratch.bytes
    n = Namer()
    lines = [
        "// tb.cpp -- generated by codax: C-simulation testbench.",
        "// Reads weights.bin and tb_data/<tensor>.bin (graph inputs, host-op outputs and golden layer",
        "// outputs written by codax from its numpy golden model); runs every accelerator call of the",
        "// schedule in order, loading host-op results from their files (the host's part), and compares",
        "// each layer's output with its golden file byte for byte (float layers: within 1e-4 relative).",
        "#include <cmath>",
        "#include <cstdio>",
        "#include <cstring>",
        "#include <vector>",
        "#include <stdint.h>",
        "void codax_top(const uint8_t *weights, uint8_t *act, int call);",
        "",
        "static bool read_file(const char *path, std::vector<uint8_t> &buf) {",
        '  FILE *f = fopen(path, "rb");',
        "  if (!f) return false;",
        "  fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);",
        "  buf.resize(n);",
        "  size_t got = fread(buf.data(), 1, n, f);",
        "  fclose(f);",
        "  return got == (size_t)n;",
        "}",
        "",
        "static bool place(uint8_t *act, long off, long bytes, const char *path) {",
        "  std::vector<uint8_t> b;",
        "  if (!read_file(path, b) || (long)b.size() != bytes) {",
        '    printf("missing %s\\n", path);',
        "    return false;",
        "  }",
        "  memcpy(act + off, b.data(), bytes);",
        "  return true;",
        "}",
        "",
        "int main() {",
        "  std::vector<uint8_t> weights;",
        '  if (!read_file("weights.bin", weights)) { printf("weights.bin missing\\n"); return 2; }',
        f"  std::vector<uint8_t> act({act_bytes} + 64, 0);",
        "  int errors = 0, checked = 0;",
    ]
    for t in graph.inputs:
        r = sched.tensors[t]
        lines.append(f'  if (!place(act.data(), {r.offset}, {r.bytes}, "tb_data/{n(t)}.bin")) return 2;')
    ci = 0
    for e in sched.entries:
        if e["kind"] == "host":
            for o in e["outputs"]:
                lines.append(
                    f"  // host op {e['op_type']} ({_c(e['node'])}): its result comes from the golden file"
                )
                lines.append(
                    f'  place(act.data(), {o["offset"]}, {o["bytes"]}, "tb_data/{n(o["tensor"])}.bin");'
                )
            continue
        o = e["output"]
        is_float = "float" in next(k for k in kernels if k.ident == e["kernel"]).types.kind
        lines += [
            f"  codax_top(weights.data(), act.data(), {ci});  // {_c(e['node'])}",
            "  {",
            "    std::vector<uint8_t> g;",
            f'    if (read_file("tb_data/{n(o["tensor"])}.bin", g) && (long)g.size() == {o["bytes"]}) {{',
            "      ++checked;",
        ]
        if is_float:
            lines += [
                f"      const float *y = (const float *)(act.data() + {o['offset']});",
                "      const float *r = (const float *)g.data();",
                f"      for (long i = 0; i < {o['bytes'] // 4}; ++i)",
                "        if (std::fabs(y[i] - r[i]) > 1e-4f * std::fabs(r[i]) + 1e-4f) { ++errors; break; }",
            ]
        else:
            lines.append(
                f"      if (memcmp(act.data() + {o['offset']}, g.data(), {o['bytes']}) != 0) ++errors;"
            )
        lines += [
            f"      memcpy(act.data() + {o['offset']}, g.data(), {o['bytes']});  // continue from the golden",
            "    }",
            "  }",
        ]
        ci += 1
    lines += [
        '  printf("codax tb: %d layer outputs checked, %d mismatching\\n", checked, errors);',
        "  return errors ? 1 : 0;",
        "}",
        "",
    ]
    return "\n".join(lines)


def _c(s: str) -> str:
    return "".join(ch if ch.isprintable() and ch not in "\\\"'" else "?" for ch in str(s))[:80]


def run_hls_tcl(kernels: list[KernelSource], accel: Accelerator) -> str:
    period = 1000.0 / accel.clock_mhz
    part = _part(accel)
    srcs = "\n".join(f'add_files kernels/{k.ident}.cpp -cflags "-Iinclude"' for k in kernels)
    return f"""# run_hls.tcl -- generated by codax. Usage: vitis_hls -f run_hls.tcl   (csim, then csynth)
open_project -reset codax_prj
set_top codax_top
add_files top.cpp -cflags "-Iinclude -I."
{srcs}
add_files -tb tb.cpp
add_files -tb weights.bin
add_files -tb tb_data
open_solution -reset sol1 -flow_target vivado
set_part {{{part}}}
create_clock -period {period:.3f} -name default
csim_design
csynth_design
exit
"""


def hls_config(kernels: list[KernelSource], accel: Accelerator) -> str:
    lines = [
        "# hls_config.cfg -- generated by codax",
        "# Vitis HLS unified flow: v++ -c --mode hls --config hls_config.cfg",
        f"part={_part(accel)}",
        "",
        "[hls]",
        "flow_target=vivado",
        "syn.top=codax_top",
        "syn.file=top.cpp",
        "syn.file_cflags=top.cpp,-Iinclude -I.",
    ]
    for k in kernels:
        lines.append(f"syn.file=kernels/{k.ident}.cpp")
        lines.append(f"syn.file_cflags=kernels/{k.ident}.cpp,-Iinclude")
    lines += [
        "tb.file=tb.cpp",
        "tb.file=weights.bin",
        "tb.file=tb_data",
        f"clock={1000.0 / accel.clock_mhz:.3f}ns",
        "csim.code_analyzer=0",
        "",
    ]
    return "\n".join(lines)


def _part(accel: Accelerator) -> str:
    parts = {
        "zc706": "xc7z045ffg900-2",
        "zcu102": "xczu9eg-ffvb1156-2-e",
        "ultra96": "xczu3eg-sbva484-1-e",
        "u250": "xcu250-figd2104-2L-e",
    }
    if accel.target == "fpga" and accel.device:
        try:
            from codax.hw import load_device

            return load_device(accel.device).part
        except Exception:  # noqa: BLE001 - fall back to the table
            return parts.get(accel.device, "xczu9eg-ffvb1156-2-e")
    return "xczu9eg-ffvb1156-2-e"  # ASIC targets: any part, for C-synthesis estimates only


def report(graph, accel, mappings, kernels, costs, sched: RuntimeSchedule) -> dict:
    layers = []
    entries = {e["node"]: e for e in sched.entries if e["kind"] == "accel"}
    for k in kernels:
        layer = k.plan.layer
        c = costs[layer.name]
        eng = accel.engine(mappings[layer.name].engine)
        buffers = []
        for (X, h), _ in sorted(k.plan.held.items(), key=lambda kv: (kv[0][1], OPERANDS.index(kv[0][0]))):
            lv = eng.levels[h - 1]
            db = bool(mappings[layer.name].double_buffer.get(lv.name))
            per_copy = c.tile_bytes[lv.name][X]
            buffers.append(
                {
                    "level": lv.name,
                    "operand": X,
                    "shape": list(k.plan.buffer_shape(X, h)),
                    "bytes_per_copy": per_copy,  # one PE's tile for per-PE levels (the cost model's)
                    "copies": (2 if db else 1) * (eng.pe_array.pes if lv.per_pe else 1),
                    "per_pe": lv.per_pe,
                    "double_buffered": db,
                }
            )
        layers.append(
            {
                "layer": layer.name,
                "kernel": k.ident,
                "engine": eng.name,
                "kind": layer.kind,
                "macs": c.macs,
                "predicted_cycles": c.cycles,
                "compute_cycles": c.compute_cycles,
                "predicted_energy_pj": c.energy_pj,
                "latency_s": c.latency_s,
                "utilization": c.utilization,
                "dram_bytes": c.dram_bytes,
                "buffers": buffers,
                "resources": c.resources.to_dict(),
                "tile_loads": entries[layer.name]["tile_loads"],
                "mapping": mappings[layer.name].to_dict(),
            }
        )
    engines = {}
    for e in accel.engines:
        mine = [costs[lay.name].resources for lay in graph.layers if mappings[lay.name].engine == e.name]
        if mine:
            engines[e.name] = {
                "dsp": max(r.dsp for r in mine),
                "bram18": max(r.bram18 for r in mine),
                "lut": max(r.lut for r in mine),
                "area_mm2": max(r.area_mm2 for r in mine),
            }
    return {
        "accelerator": accel.name,
        "target": accel.target,
        "device": accel.device,
        "clock_mhz": accel.clock_mhz,
        "total_cycles": sum(costs[lay.name].cycles for lay in graph.layers),
        "total_energy_pj": sum(costs[lay.name].energy_pj for lay in graph.layers),
        "resources_per_engine": engines,
        "dram_peak_bytes": sched.peak_dram_bytes,
        "host_ops": [
            {"node": h.name, "op_type": h.op_type, "placement": h.placement, "reason": h.reason}
            for h in graph.host_ops
        ],
        "layers": layers,
    }


def readme(graph: Graph, accel: Accelerator, kernels: list[KernelSource], sched: RuntimeSchedule) -> str:
    rows = "\n".join(
        f"| {i} | `{e['kernel']}` | {_c(e['node'])} | {e['predicted_cycles']:,.0f} |"
        for i, e in enumerate(x for x in sched.entries if x["kind"] == "accel")
    )
    return f"""# codax accelerator project: {_c(graph.name)} on {accel.name}

Generated by codax. Each layer is one HLS function in `kernels/` that executes exactly the loop nest
of its mapping (see the comment block at the top of each file: loops, tile sizes, where each tile is
loaded). Shared templates (tile copies, input-window loader, MAC, requantization) are in
`include/codax_hls.h`.

## Run
- C-simulation + synthesis with Vitis HLS: `vitis_hls -f run_hls.tcl`
  (or the unified flow: `v++ -c --mode hls --config hls_config.cfg`).
- Without vendor tools: `g++ -std=c++14 -Iinclude -I<ap_types> top.cpp kernels/*.cpp tb.cpp && ./a.out`
  (the ap_types headers ship with `pip install hls4ml`).

## Interfaces
`codax_top(weights, act, call)`: `weights` (m_axi, bundle gmem0) is `weights.bin` as is; `act` (m_axi,
gmem1) is the activation region ({sched.activation_bytes:,} B, tensors reuse space by liveness) followed
by the partial-sum scratch ({sched.scratch.bytes:,} B at offset {sched.scratch.offset:,}). `call` (s_axilite)
selects the scheduled layer. Peak DRAM footprint: {sched.peak_dram_bytes:,} B.
Host ops (schedule.yaml, kind `host`) run on the CPU between calls.

## Numerics
Integer layers: int32 accumulation with zero points, bias at scale s_w*s_x, requantization
`clamp(rint(float32(acc) * M[ch]) + zy, lo, hi)` with float32 M = s_w*s_x/s_y (round half to even).

## Calls
| call | kernel | layer | predicted cycles |
|---|---|---|---|
{rows}

`report.json` lists per layer the buffers (shape, bytes, copies), DSP/BRAM18/LUT estimates and the
predicted cycles and energy of the codax cost model.
"""
