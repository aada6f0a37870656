"""The `codax` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from codax.errors import CodaxError, ConfigError


def _accel(args: argparse.Namespace) -> int:
    from codax.hw.library import list_accelerators, load_accelerator, load_device
    from codax.ir import dump_yaml

    if args.accel_cmd == "list":
        rows = []
        for name in list_accelerators():
            a = load_accelerator(name)
            pa = a.pe_array
            onchip = sum(lv.total_bytes * (pa.pes if lv.per_pe else 1) for e in a.engines for lv in e.levels)
            rows.append(
                {
                    "name": name,
                    "target": a.target,
                    "device": a.device or "",
                    "pes": pa.pes,
                    "dataflow": pa.dataflow,
                    "on_chip_kb": round(onchip / 1024, 1),
                    "bits": "/".join(map(str, a.weight_bits)),
                }
            )
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'name':18} {'target':6} {'device':8} {'PEs':>5} {'dataflow':18} {'on-chip KB':>10} bits")
            for r in rows:
                print(
                    f"{r['name']:18} {r['target']:6} {r['device']:8} {r['pes']:>5} {r['dataflow']:18} "
                    f"{r['on_chip_kb']:>10} {r['bits']}"
                )
        return 0
    a = load_accelerator(args.name)
    d = a.to_dict()
    if a.target == "fpga":
        d["device_budget"] = load_device(a.device).__dict__
    print(json.dumps(d, indent=2) if args.json else dump_yaml(d), end="" if not args.json else "\n")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from codax.demo import run_demo

    return run_demo(out_dir=args.output, quick=args.quick, force=args.force)


def _shapes(specs: list[str] | None) -> dict[str, list[int]] | None:
    """--shape input:1x3x224x224 -> {"input": [1, 3, 224, 224]}."""
    if not specs:
        return None
    out = {}
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        try:
            out[name] = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            raise ConfigError(f"--shape {spec!r}: expected NAME:DxDxD, e.g. input:1x3x224x224") from None
        if not sep or not name:
            raise ConfigError(f"--shape {spec!r}: expected NAME:DxDxD, e.g. input:1x3x224x224")
    return out


def _require_file(path: str, what: str) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such {what} file")


def _compile(args: argparse.Namespace) -> int:
    from codax.flow import compile_model

    _require_file(args.model, "ONNX model")
    if args.mappings:
        _require_file(args.mappings, "mappings")
    with _progress("compiling", args.json):
        res = compile_model(
            args.model,
            args.accel,
            args.output,
            args.mappings,
            shapes=_shapes(args.shape),
            analyze_only=args.analyze_only,
            force=args.force,
            objective=args.objective,
            calibrate=args.calibrate,
            engine=args.engine,
            check=args.check,
        )
    if res.engine == "core":
        return _core_result(res, args.json)
    if args.json:
        print(
            json.dumps(
                {"out_dir": str(res.out_dir), "engine": res.engine, **res.report.to_dict()["totals"]},
                indent=2,
            )
        )
    else:
        print(res.report.table())
        print(
            f"\nwrote {res.out_dir}/ (report.json, mappings.yaml"
            + (
                ", engine.cpp, top.cpp, program.bin, weights.bin, schedule.yaml, model.so)"
                if res.executable
                else ")"
            )
        )
    return 0


def _core_result(res, as_json: bool) -> int:
    """What `codax compile --engine core` prints: the report's table (or its JSON); exit 1 when --check
    found a mismatch. The project's model.so runs with `codax run OUT --input X.npy [--check]`."""
    rep = res.report.to_dict()
    check = rep.get("check")
    if as_json:
        keys = ("engine", "accelerator", "cycles", "program", "dram", "check")
        res_ = {k: v for k, v in rep["resources"].items() if k in ("dsp", "bram18", "dsp_kind", "device")}
        exe = {"executable": str(res.executable) if res.executable else None}
        print(json.dumps({"out_dir": str(res.out_dir), **{k: rep[k] for k in keys if k in rep},
                          "resources": res_, **exe}, indent=2))  # fmt: skip
    else:
        print(res.report.table())
        print(f"\nwrote {res.out_dir}/ (report.json, README.md, program.bin, program.idx, dram.bin, "
              "schedule.yaml, core.cpp, core_system.cpp, include/, run_hls.tcl"
              + (", model.so)" if res.executable else ")"))  # fmt: skip
        if res.executable:
            print(f"run it: codax run {res.out_dir} --input X.npy [--check] (every layer on the core in "
                  "C-simulation)")  # fmt: skip
    return 0 if check is None or check["bit_exact"] else 1


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from codax.flow import check_compiled, run_compiled

    _require_file(args.input, "input .npy")
    x = np.load(args.input)
    outs = run_compiled(args.out_dir, x)
    if args.output:
        np.save(args.output, outs[0])
    result: dict = {"outputs": [{"shape": list(o.shape), "dtype": str(o.dtype)} for o in outs]}
    check = check_compiled(args.out_dir, x, outs) if args.check else None
    if check is not None:
        result["check"] = check.to_dict()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for i, o in enumerate(outs):
            flat = o.reshape(-1)
            print(
                f"output {i}: shape {tuple(o.shape)} {o.dtype}, "
                f"first values {np.array2string(flat[:8], precision=4)}"
            )
        for line in check.lines() if check is not None else []:
            print("check " + line)
    return 0 if check is None or check.ok else 1


def _bench(args: argparse.Namespace) -> int:
    from codax.bench.plots import breakdown, roofline
    from codax.bench.schedule import bench_network, table
    from codax.frontend import extract_graph

    _require_file(args.model, "ONNX model")
    graph = extract_graph(args.model, _shapes(args.shape))
    graph.name = Path(args.model).stem
    with _progress("mapping", args.json):
        results = bench_network(
            graph, args.accel or ["eyeriss-like", "nvdla-small", "tpu-like"], args.objective
        )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
    roofline(results, out / "roofline.png")
    breakdown(results, graph.name, out / "breakdown.png")
    if args.json:
        print(json.dumps([{"accelerator": r.accelerator, **r.totals} for r in results], indent=2))
    else:
        print(table(results))
        print(f"\nwrote {out}/bench.json, roofline.png, breakdown.png")
    return 0


def _search(args: argparse.Namespace) -> int:
    from codax.search import run_search

    if args.config:
        _require_file(args.config, "search config")
    out = Path(args.output)
    if out.exists() and not (args.resume or args.force):
        raise ConfigError(
            f"output directory {out} exists; pass --resume to continue it or --force to replace it"
        )
    res = run_search(args.config, out, resume=args.resume, progress=not args.json)
    rc = 0
    if args.format == "qonnx":  # net.onnx (QDQ) stays; the same network as QONNX for FINN / hls4ml
        from codax.frontend.qonnx_export import export_qonnx

        try:  # the search's outputs are written by now: a failed export is reported with them, exit 1
            res.summary["qonnx"] = str(export_qonnx(out / "net.onnx", out / "net.qonnx.onnx"))
        except CodaxError as e:
            res.summary["qonnx"] = f"not written: {e}"
            print(f"codax: error: QONNX export failed (net.onnx, the QDQ hand-off, is written): {e}",
                  file=sys.stderr)  # fmt: skip
            rc = 1
    print(json.dumps(res.summary, indent=2, default=str) if args.json else _summary_text(res.summary))
    return rc


def _summary_text(summary: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in summary.items() if not isinstance(v, (dict, list)))


class _progress:
    """A one-line spinner-free progress note on stderr for steps without their own bars."""

    def __init__(self, what: str, quiet: bool):
        self.what, self.quiet = what, quiet

    def __enter__(self):
        if not self.quiet:
            print(f"codax: {self.what} ...", file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc):
        return False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="codax",
        description="Co-search a network and its accelerator, and compile networks to HLS accelerators.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    acc = sub.add_parser("accel", help="the device and baseline-accelerator library")
    acc_sub = acc.add_subparsers(dest="accel_cmd", required=True, metavar="ACTION")
    ls = acc_sub.add_parser("list", help="list library accelerators")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    show = acc_sub.add_parser("show", help="print one accelerator as YAML")
    show.add_argument("name", help="library name (see `codax accel list`) or a YAML file")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    acc.set_defaults(func=_accel)

    comp = sub.add_parser("compile", help="compile an ONNX model: HLS project, schedule, report, executable")
    comp.add_argument("model", help="the ONNX model")
    comp.add_argument("--accel", required=True, help="library name (codax accel list) or accel.yaml")
    comp.add_argument("--mappings", help="mappings.yaml (e.g. from codax search); default: run the mapper")
    comp.add_argument("-o", "--output", default="out/compile", help="output directory (default: out/compile)")
    comp.add_argument("--shape", action="append", metavar="NAME:DxD", help="fix a dynamic input shape")
    comp.add_argument("--objective", default="latency", choices=["latency", "energy", "edp"])
    comp.add_argument(
        "--analyze-only",
        action="store_true",
        help="stop after mapping (report + mappings only); for shape-only models",
    )
    comp.add_argument(
        "--calibrate",
        metavar="SAMPLES",
        help="quantize a float model first (ONNX Runtime, QDQ int8, per-channel) on sample inputs: a .npy "
        "batch [n, ...], a .npz per input name, or a folder of them; output keeps the quantized model.onnx",
    )
    comp.add_argument("--force", action="store_true", help="replace an existing output directory")
    comp.add_argument(
        "--engine",
        default=None,
        metavar="ENGINE",
        help="the project's accelerator: core (the GEMM core: LOAD / GEMM / STORE instructions and one DRAM "
        "image; docs/engine_core.md) or descriptor (the descriptor engine, codax_engine.h: any accelerator, "
        "in C-simulation only); either project holds model.so for `codax run`. Unset: the core where it can "
        "be ACCEL and run every layer, else the descriptor engine (report.json's notes say why)",
    )
    comp.add_argument(
        "--check",
        action="store_true",
        help="the core: run the whole network in C-simulation, every layer on the core, and compare "
        "with the golden network (bit-exact); recorded in report.json, exit 1 on mismatch",
    )
    comp.add_argument("--json", action="store_true", help="machine-readable output")
    comp.set_defaults(func=_compile)

    run = sub.add_parser("run", help="run a compiled model (offloaded layers in C-simulation)")
    run.add_argument("out_dir", help="a directory written by codax compile")
    run.add_argument("--input", required=True, help="input tensor as .npy")
    run.add_argument("--output", help="save the first output as .npy")
    run.add_argument(
        "--check",
        action="store_true",
        help="compare with the golden integer model (bit-exact) and, layer by layer on the golden model's "
        "own inputs, ONNX Runtime (<= 1 quantization step each); end to end vs ONNX Runtime is reported; "
        "exit 1 on mismatch",
    )
    run.add_argument("--json", action="store_true", help="machine-readable output")
    run.set_defaults(func=_run)

    bench = sub.add_parser("bench", help="schedule benchmark of a model on accelerators: table and plots")
    bench.add_argument("model", help="the ONNX model (shape-only models are fine)")
    bench.add_argument("--accel", action="append", help="accelerator (repeatable); default: three baselines")
    bench.add_argument("--objective", default="latency", choices=["latency", "energy", "edp"])
    bench.add_argument("--shape", action="append", metavar="NAME:DxD", help="fix a dynamic input shape")
    bench.add_argument("-o", "--output", default="out/bench", help="where to write JSON and plots")
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    bench.set_defaults(func=_bench)

    search = sub.add_parser("search", help="co-search network, bitwidths and accelerator")
    search.add_argument("--config", help="search.yaml overlaid on the bundled default (digits, ZC706)")
    search.add_argument("-o", "--output", default="out/search", help="output directory (default: out/search)")
    search.add_argument("--resume", action="store_true", help="continue from the output's checkpoint")
    search.add_argument("--force", action="store_true", help="replace an existing output directory")
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.add_argument(
        "--format",
        choices=["qdq", "qonnx"],
        default="qdq",
        help="network hand-off: net.onnx as ONNX QDQ (default), or also net.qonnx.onnx as QONNX "
        "(Quant nodes, for FINN / hls4ml)",
    )
    search.set_defaults(func=_search)

    demo = sub.add_parser("demo", help="run the main job end to end on the bundled default")
    demo.add_argument("-o", "--output", default="out/demo", help="output directory (default: out/demo)")
    demo.add_argument("--quick", action="store_true", help="smaller budget, for a smoke test")
    demo.add_argument("--force", action="store_true", help="replace an existing output directory")
    demo.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CodaxError as e:
        print(f"codax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codax: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
