"""The Vitis HLS project for a mapped network, written atomically.

    out_dir/
      engine.cpp, top.cpp, include/   the accelerator (codax.codegen.engine): the same for every network
      program.bin                     the network: one descriptor per accelerator call
      weights.bin, schedule.yaml      packed weights; the readable runtime schedule
      tb.cpp, tb_data/                the testbench (fixed) and its data (inputs, host results, goldens)
      run_hls.tcl, hls_config.cfg,    Vitis HLS scripts (Tcl and unified flow): C-simulation through
      ips/<ip>.cfg                    codax_top, synthesis of each engine IP
      report.json, README.md

The testbench, scripts and README are template files (codegen/templates). Everything is generated
and checked in memory first (a mapping that does not fit raises before any file exists), written
into a temporary sibling directory, then renamed into place; an existing out_dir is replaced only
with force=True, and then only once the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import tempfile
from pathlib import Path

import numpy as np

from codax.codegen.engine import engine_sources
from codax.codegen.hls_engine import engine_source_resources
from codax.codegen.hls_reader import HlsReadError
from codax.codegen.names import Namer
from codax.codegen.packing import pack_tensor
from codax.codegen.params import LayerParams
from codax.codegen.schedule import RuntimeSchedule, build_schedule
from codax.errors import ConfigError
from codax.hw import evaluate_many
from codax.hw.evaluate import chain_calls, engine_resources
from codax.ir import OPERANDS, Accelerator, Graph, Mapping, dump_yaml, validate_mapping

TEMPLATES = Path(__file__).parent / "templates"


def _template(name: str, **values) -> str:
    return string.Template((TEMPLATES / name).read_text()).substitute(values)


def generate(
    graph: Graph,
    accel: Accelerator,
    mappings: dict[str, Mapping],
    params: dict[str, LayerParams],
    shapes: dict[str, int] | None = None,
    compile_report: dict | None = None,
) -> dict[str, bytes]:
    """All project files in memory: {relative path: content}. Raises before producing anything if a
    layer lacks a mapping or parameters, or a mapping is illegal or does not fit. `compile_report`
    (the passes' report) is merged into report.json, the project's one report."""
    return _generate(graph, accel, mappings, params, shapes, compile_report)[0]


def _generate(
    graph, accel, mappings, params, shapes, compile_report
) -> tuple[dict[str, bytes], RuntimeSchedule]:
    for layer in graph.layers:
        if layer.name not in mappings:
            raise ConfigError(f"layer {layer.name}: no mapping; map it first (codax.hw.mapper)")
        if layer.name not in params:
            raise ConfigError(
                f"layer {layer.name}: no parameters; extract them (codax.codegen.params.from_onnx)"
            )
        validate_mapping(layer, accel, mappings[layer.name])
    # the program's calls in order: each prefetches the next call's descriptor (chain_calls), so the
    # report and the schedule predict what the engine runs, as the search's exact cost does
    alone = evaluate_many([(lay, accel, mappings[lay.name]) for lay in graph.layers], check=False)
    costs_list = chain_calls(alone, accel)
    costs = {c.layer: c for c in costs_list}
    sched = build_schedule(graph, accel, mappings, params, costs, shapes)
    hw = engine_sources(accel)
    files: dict[str, bytes] = {k: v.encode() for k, v in hw.files.items()}
    files["program.bin"] = np.ascontiguousarray(sched.program, dtype="<i4").tobytes()
    files["weights.bin"] = bytes(sched.blob.data)
    files["schedule.yaml"] = dump_yaml(sched.to_dict()).encode()
    files["tb.cpp"] = (TEMPLATES / "tb.cpp").read_bytes()
    period = f"{1000.0 / accel.clock_mhz:.3f}"
    act = sched.scratch.offset + sched.scratch.bytes
    depths = (  # the m_axi depths: this network's real sizes
        f"-DCODAX_PROGRAM_WORDS={max(1, sched.program.size)} "
        f"-DCODAX_WEIGHT_BYTES={max(1, len(sched.blob.data))} -DCODAX_ACT_BYTES={max(1, act)}"
    )
    for name in ("run_hls.tcl", "hls_config.cfg"):
        files[name] = _template(
            name, part=_part(accel), period_ns=period, depths=depths, ips=" ".join(hw.ips)
        ).encode()
    for ip in hw.ips:  # the unified flow synthesizes each IP from a config of its own
        files[f"ips/{ip}.cfg"] = _template("ip.cfg", part=_part(accel), period_ns=period, ip=ip).encode()
    rep = report(graph, accel, mappings, costs, sched, compile_report)
    files["report.json"] = json.dumps(rep, indent=1).encode()
    files["README.md"] = readme(graph, accel, sched, rep).encode()
    return files, sched


def testbench_data(sched: RuntimeSchedule, graph: Graph, values: dict[str, np.ndarray]) -> dict[str, bytes]:
    """tb_data/: the manifest and the files it names, from `values` (every tensor of the network by
    name, e.g. from codax.codegen.golden_net), each in its DRAM format (packed at the widths of the
    layers that touch it)."""
    bits: dict[str, int] = {}
    for e in sched.entries:
        if e["kind"] == "accel":
            for part in ("input", "output", "residual"):
                if e[part]:
                    bits[e[part]["tensor"]] = e[part]["bits"]
    namer = Namer()
    files: dict[str, bytes] = {}

    def put(t: str) -> str:
        name = f"{namer(t)}.bin"
        v = np.asarray(values[t])
        raw = pack_tensor(v, bits[t], v.dtype.kind == "f") if t in bits else v.tobytes()
        files[f"tb_data/{name}"] = raw
        return name

    act = sched.scratch.offset + sched.scratch.bytes
    lines = [f"act {act}"]
    for t in graph.inputs:
        r = sched.tensors[t]
        lines.append(f"input {r.offset} {r.bytes} {put(t)}")
    for e in sched.entries:
        if e["kind"] == "host":
            lines += [f"host {o['offset']} {o['bytes']} {put(o['tensor'])}" for o in e["outputs"]]
            continue
        o = e["output"]
        is_float = int(sched.widths[e["node"]].is_float)
        lines.append(f"call {e['call']} {o['offset']} {o['bytes']} {put(o['tensor'])} {is_float}")
    files["tb_data/manifest.txt"] = ("\n".join(lines) + "\n").encode()
    return files


def write_project(
    graph: Graph,
    accel: Accelerator,
    mappings: dict[str, Mapping],
    params: dict[str, LayerParams],
    out_dir,
    force: bool = False,
    shapes: dict[str, int] | None = None,
    tb_values: dict[str, np.ndarray] | None = None,
    extra: dict[str, bytes] | None = None,
    compile_report: dict | None = None,
) -> Path:
    """Write the project to out_dir atomically; `tb_values` (every tensor by name) adds the
    testbench data, `extra` ({relative path: content}) any other files of the same directory."""
    out = Path(out_dir)
    if out.exists() and not force:
        raise ConfigError(f"output directory {out} exists; pass force=True (CLI: --force) to replace it")
    files, sched = _generate(graph, accel, mappings, params, shapes, compile_report)
    if tb_values is not None:
        files.update(testbench_data(sched, graph, tb_values))
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


def _part(accel: Accelerator) -> str:
    if accel.target == "fpga" and accel.device:
        from codax.hw import load_device

        return load_device(accel.device).part
    return "xczu9eg-ffvb1156-2-e"  # ASIC targets: any part, for C-synthesis estimates only


def resources_entry(accel: Accelerator) -> dict:
    """report.json `resources`: read from the generated sources (codax.codegen.hls_resources) --
    `arrays` (one entry per array the synthesis tops hold: name, element bits, depth, banks, storage,
    BRAM18), `bram18` their sum, `dsp` from the multiply sites (`multipliers`; None for an ASIC target,
    which has no DSPs), `fifos` -- and under `model` the cost model's figures for the accelerator
    (codax.hw.evaluate), the ones the search optimizes, beside them for comparison. When the sources
    cannot be read (libclang missing, a parse error), `error` says why instead and the project is
    written all the same."""
    try:
        code = engine_source_resources(accel).to_dict()
    except HlsReadError as e:
        code = {"error": f"the sources were not read: {e}"}
    return {**code, "model": model_resources_entry(accel)}


def model_resources_entry(accel: Accelerator) -> dict:
    """The cost model's resources: per engine the multipliers and buffers accel.yaml declares and the
    DSP/BRAM18/LUT (or mm2) the model charges for them; totals over the engines."""
    engines = {}
    total = {"dsp": 0.0, "bram18": 0.0, "lut": 0.0, "area_mm2": 0.0}
    for e in accel.engines:
        r = engine_resources(accel, e.name).to_dict()
        arrays = [
            {"name": a.name, "level": e.level_names[a.level], "operands": list(a.operands), "bytes": a.bytes,
             "banks": accel.engine(e.name).pe_array.pes if a.per_pe else a.banks, "per_pe": a.per_pe}
            for a in e.arrays()
        ]  # fmt: skip
        engines[e.name] = {
            "multipliers": e.pe_array.pes,
            "pe_array": [e.pe_array.rows, e.pe_array.cols],
            "buffer_bytes": sum(a["bytes"] for a in arrays),
            "arrays": arrays,
            **r,
        }
        for k in total:
            total[k] += r[k]
    return {**total, "engines": engines}


def report(graph, accel, mappings, costs, sched: RuntimeSchedule, compile_report: dict | None) -> dict:
    """The project's one report: the passes' compile report (per ONNX node, per layer) with, per
    layer, its call, widths, buffers and tile loads, and the accelerator's resources."""
    hw_layers = {}
    entries = {e["node"]: e for e in sched.entries if e["kind"] == "accel"}
    for layer in graph.layers:
        m, c = mappings[layer.name], costs[layer.name]
        p = sched.plans[layer.name]
        eng = accel.engine(m.engine)
        buffers = []
        for (X, h), _ in sorted(p.held.items(), key=lambda kv: (kv[0][1], OPERANDS.index(kv[0][0]))):
            lv = eng.levels[h - 1]
            buffers.append(
                {
                    "level": lv.name,
                    "operand": X,
                    "shape": list(p.buffer_shape(X, h)),
                    "tile_bytes": c.tile_bytes[lv.name][X],  # one PE's tile for per-PE levels
                    "double_buffered": bool(m.double_buffer.get(lv.name)),
                }
            )
        e = entries[layer.name]
        hw_layers[layer.name] = {
            "call": e["call"],
            "engine": eng.name,
            "widths": e["widths"],
            "macs": c.macs,
            "predicted_cycles": c.cycles,
            "compute_cycles": c.compute_cycles,
            "predicted_energy_pj": c.energy_pj,
            "dram_bytes": c.dram_bytes,
            "utilization": c.utilization,
            "buffers": buffers,
            "tile_loads": e["tile_loads"],
            "mapping": m.to_dict(),
        }
    out = dict(compile_report or {"accelerator": accel.name})
    rows = out.get("layers")
    if isinstance(rows, list):
        out["layers"] = [{**r, **hw_layers.get(r.get("layer"), {})} for r in rows]
    else:
        out["layers"] = [{"layer": n, **v} for n, v in hw_layers.items()]
    out.update(
        {
            "engine": "descriptor",
            "target": accel.target,
            "device": accel.device,
            "clock_mhz": accel.clock_mhz,
            "total_cycles": sum(costs[lay.name].cycles for lay in graph.layers),
            "total_energy_pj": sum(costs[lay.name].energy_pj for lay in graph.layers),
            "resources": resources_entry(accel),
            "token_fifos": token_fifos(graph, accel, mappings, sched),
            "program": {"calls": int(sched.program.shape[0]), "bytes": int(sched.program.nbytes)},
            "dram_peak_bytes": sched.peak_dram_bytes,
        }
    )
    return out


def token_fifos(graph, accel, mappings, sched: RuntimeSchedule) -> dict:
    """The depths the engine's token FIFOs need for this program (codax_engine.h, "the engine's IPs"):
    full, free and done FIFOs never hold more than a level's copies (2); a level's partial-sum FIFO
    holds up to NestPlan.ps_tokens tokens, the most over the program's calls."""
    ps: dict[str, dict[str, int]] = {e.name: {} for e in accel.engines}
    for layer in graph.layers:
        p = sched.plans[layer.name]
        depths = ps[mappings[layer.name].engine]
        for h, n in p.ps_tokens().items():
            depths[p.level_names[h]] = max(depths.get(p.level_names[h], 0), n)
    return {"full": 2, "free": 2, "done": 2, "ps": ps}


def readme(graph: Graph, accel: Accelerator, sched: RuntimeSchedule, rep: dict) -> str:
    calls = "\n".join(
        f"| {e['call']} | {_c(e['node'])} | {e['engine']} | "
        f"{e['widths']['weight']}/{e['widths']['input']}/{e['widths']['output']} | "
        f"{e['predicted_cycles']:,.0f} |"
        for e in sched.entries
        if e["kind"] == "accel"
    )
    res = rep["resources"]
    lines = []
    if "error" in res:
        lines.append(f"- {res['error']}; the cost model's figures below (`resources.model`)")
    elif accel.target == "fpga":
        lines.append(
            f"- read from the sources: {res['bram18']:,} BRAM18 over {len(res['arrays'])} arrays, "
            f"{res['dsp']:,} DSP ({res['dsp_kind']}) over {len(res['multipliers'])} multiply sites "
            "(report.json `resources`); the cost model's figures below (`resources.model`)"
        )
    for name, e in res["model"]["engines"].items():
        lines.append(
            f"- engine `{name}`: {e['pe_array'][0]} x {e['pe_array'][1]} PE array ({e['multipliers']} "
            f"multipliers), {e['buffer_bytes']:,} B of on-chip arrays -> "
            + (
                f"{e['dsp']:,.0f} DSP, {e['bram18']:,.0f} BRAM18, {e['lut']:,.0f} LUT"
                if accel.target == "fpga"
                else f"{e['area_mm2']:.3f} mm2"
            )
        )
    return _template(
        "README.md",
        graph=_c(graph.name),
        accel=_c(accel.name),
        engines=", ".join(f"`{e.name}`" for e in accel.engines),
        act_bytes=f"{sched.activation_bytes:,}",
        scratch_bytes=f"{sched.scratch.bytes:,}",
        scratch_offset=f"{sched.scratch.offset:,}",
        peak=f"{sched.peak_dram_bytes:,}",
        resources="\n".join(lines),
        calls=calls,
    )


def _c(s: str) -> str:
    return "".join(ch if ch.isprintable() and ch not in "\\\"'|" else "?" for ch in str(s))[:80]
