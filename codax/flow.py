"""The compile and run flows behind `codax compile` / `codax run`: ONNX -> Relax -> codax passes ->
HLS project + runtime schedule + report, and a TVM executable in which the offloaded layers run as
C-simulated kernels and everything else on the CPU."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from codax.errors import ConfigError, ModelError, UnsupportedError
from codax.ir import Accelerator, Mapping, dump_yaml, load_mappings, save_mappings

EXECUTABLE = "model.so"
MODEL_COPY = "model.onnx"
MANIFEST = "codax.json"
#: the project's accelerator: the GEMM core (docs/engine_core.md), or the descriptor engine
#: (codax_engine.h: any accelerator, in C-simulation; its loops do not run at the core's II)
ENGINES = ("core", "descriptor")
#: the engine a compile without --engine takes: the first of these that can be the accelerator and run
#: every offloaded layer (the descriptor engine runs any)
PREFERRED_ENGINES = ("core", "descriptor")


@dataclass
class CompileResult:
    out_dir: Path
    report: object  # codax.passes.CompileReport
    mappings: dict[str, Mapping]
    executable: Path | None
    engine: str = "descriptor"
    #: why the preferred engine was not taken (a compile without --engine), else None
    engine_note: str | None = None


def _accelerator(accel: str | Path | Accelerator) -> Accelerator:
    from codax.hw import load_accelerator

    return accel if isinstance(accel, Accelerator) else load_accelerator(accel)


def engine_fits(engine: str, accel: Accelerator) -> bool:
    """Whether `engine` can be `accel` (the core needs its load and store IPs for the accelerator's array,
    widths and DRAM beat; the descriptor engine is any accelerator)."""
    if engine != "core":
        return True
    from codax.codegen.core_project import shape_for

    try:
        shape_for(accel)
    except UnsupportedError:
        return False
    return True


def choose_engine(engine: str | None, accel: Accelerator, analyze_only: bool = False) -> str:
    """The engine a compile uses: `engine` when named (checked against ENGINES), else the first of
    PREFERRED_ENGINES that can be `accel` (the descriptor project for an analysis: the core's project
    has no analysis-only form)."""
    if engine is None:
        fits = [e for e in PREFERRED_ENGINES if engine_fits(e, accel) and not (analyze_only and e == "core")]
        return fits[0] if fits else "descriptor"
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: engines are {', '.join(ENGINES)}")
    return engine


def compile_model(
    model: str | Path,
    accel: str | Path | Accelerator,
    out_dir: str | Path,
    mappings: str | Path | dict[str, Mapping] | None = None,
    *,
    shapes: dict[str, list[int]] | None = None,
    analyze_only: bool = False,
    force: bool = False,
    objective: str = "latency",
    executable: bool = True,
    calibrate: str | Path | None = None,
    engine: str | None = None,
    check: bool = False,
) -> CompileResult:
    """Compile an ONNX model for `accel` into `out_dir` (written atomically: a failure leaves any
    previous output intact). `analyze_only` stops after mapping: report and mappings only, which is
    all a shape-only model (weights in missing external files) allows; float layers on an integer
    accelerator are then costed at its precision. `calibrate` (a .npy / .npz of sample inputs, or a
    folder of them) quantizes a float model with ONNX Runtime first (codax.frontend.calibrate); the
    output keeps the quantized model as model.onnx. A float model on an integer accelerator needs it
    (or analyze_only). `engine`: "core" (the GEMM core) or "descriptor" (the descriptor engine); None
    takes the first of PREFERRED_ENGINES that can be the accelerator (choose_engine), and the descriptor
    engine when the core refuses one of the model's layers (the reason kept as `engine_note` and in
    report.json). Either writes model.so, the TVM executable whose offloaded layers run on that engine
    in C-simulation."""
    from codax.frontend import import_onnx, load_onnx
    from codax.frontend.calibrate import quantize, require_integer_model
    from codax.passes import build_report, offloaded_layers, pipeline

    if engine is not None and engine not in ENGINES:  # refused before anything is read
        raise ConfigError(f"--engine {engine!r}: engines are {', '.join(ENGINES)}")
    out = Path(out_dir)
    if out.exists() and not force:
        raise ConfigError(f"output directory {out} exists; pass --force to replace it")
    acc = _accelerator(accel)
    chosen = engine is None
    engine = choose_engine(engine, acc, analyze_only)
    if engine == "core":
        from codax.codegen.core_project import shape_for

        shape_for(acc)  # an accelerator the core cannot be is refused before the model is read
        if analyze_only:
            raise ConfigError("--engine core writes a project; --analyze-only stops before it")
    elif check:
        raise ConfigError(
            "--check runs the core engine's project in C-simulation (--engine core); the descriptor project "
            "is checked by `codax run OUT --input X.npy --check`"
        )
    given = load_mappings(mappings) if isinstance(mappings, (str, Path)) else mappings
    lm = load_onnx(model, shapes)
    if lm.qonnx:  # a QONNX node's width the accelerator cannot run stops here, naming the node
        from codax.frontend.qonnx_lower import check_widths_on

        check_widths_on(lm.qonnx, acc)
    if calibrate is not None:
        lm = replace(load_onnx(quantize(lm, calibrate)), name=lm.name)
    if not analyze_only:
        lm.require_weights("compiling (kernels, weights blob, executable)")
        require_integer_model(lm, acc)
    mod = import_onnx(lm)
    mod = pipeline(acc, given, objective=objective, analysis=analyze_only)(mod)
    report = build_report(mod, acc)
    offl = offloaded_layers(mod)
    maps = {name: o.mapping for name, o in offl.items() if o.mapping is not None}
    files: dict[str, bytes] = {
        "mappings.yaml": save_mappings(maps, extra={"accelerator": acc.name}).encode(),
        "accel.yaml": dump_yaml(acc.to_dict()).encode(),
    }
    if calibrate is not None or not analyze_only:  # the model as given (quantized by --calibrate)
        files[MODEL_COPY] = lm.given.SerializeToString()
    exe_path = None
    if analyze_only:
        from codax.codegen.project import write_atomic

        files["report.json"] = json.dumps(report.to_dict(), indent=1).encode()
        write_atomic(out, files)
        return CompileResult(out, report, maps, None)
    note = None
    if engine == "core":
        try:
            return _compile_core(lm, mod, report, acc, out, files, maps, check, executable)
        except UnsupportedError as e:
            if not chosen:
                raise
            note = f"the core refused this model ({e}); compiled for the descriptor engine" + (
                " (--check runs on the core only: run `codax run OUT --input X.npy --check`)" if check else ""
            )
            report.notes.append(note)

    from codax.codegen.byoc import build_executable
    from codax.codegen.golden_net import golden_network
    from codax.codegen.params import from_onnx
    from codax.codegen.project import write_project
    from codax.frontend import extract_graph
    from codax.frontend.tensor_sizes import tensor_bytes

    graph = extract_graph(mod, accel=acc)
    params = {layer.name: from_onnx(lm.model, layer) for layer in graph.layers}
    files[MANIFEST] = json.dumps(
        {"inputs": {k: list(v) for k, v in lm.input_shapes.items()}, "accelerator": acc.name}
    ).encode()
    tb_values = golden_network(lm.model, graph, params, testbench_inputs(lm))
    with tempfile.TemporaryDirectory() as td:
        if executable:
            ex = build_executable(mod, acc, params=params)
            so = Path(td) / EXECUTABLE
            ex.export_library(str(so))
            files[EXECUTABLE] = so.read_bytes()
        write_project(
            graph, acc, maps, params, out, force=force, shapes=tensor_bytes(lm.model), extra=files,
            tb_values=tb_values, compile_report=report.to_dict(),
        )  # fmt: skip
    if executable:
        exe_path = out / EXECUTABLE
    return CompileResult(out, report, maps, exe_path, "descriptor", note)


def _compile_core(
    lm, mod, report, acc: Accelerator, out: Path, files: dict, maps: dict, check: bool, executable: bool
) -> CompileResult:
    """The core engine's project (codax.codegen.core_project) beside the model, accel.yaml and mappings,
    and model.so: the executable whose offloaded layers run on the core in C-simulation
    (codax.codegen.byoc.core_kernels)."""
    from codax.codegen import core_project
    from codax.codegen.byoc.core_kernels import build_core_executable
    from codax.codegen.params import from_onnx
    from codax.codegen.project import write_atomic
    from codax.frontend import extract_graph

    graph = extract_graph(mod, accel=acc)
    params = {layer.name: from_onnx(lm.model, layer) for layer in graph.layers}
    project, net, rep = core_project.generate(graph, acc, params)
    core_project.with_compile_report(rep, report)
    if check:
        rep.data["check"] = core_project.check(
            lm.model, graph, params, net.shape, project, rep.data, testbench_inputs(lm)
        )
    core_project.finish(project, rep, acc, out.name, executable)
    files[MANIFEST] = json.dumps(
        {
            "inputs": {k: list(v) for k, v in lm.input_shapes.items()},
            "accelerator": acc.name,
            "engine": "core",
        }
    ).encode()
    if executable:
        with tempfile.TemporaryDirectory() as td:
            so = Path(td) / EXECUTABLE
            build_core_executable(mod, acc, params=params).export_library(str(so))
            files[EXECUTABLE] = so.read_bytes()
    write_atomic(out, {**files, **project})
    return CompileResult(out, rep, maps, out / EXECUTABLE if executable else None, "core")


def core_figures(model: str | Path, accel: Accelerator, mappings: dict[str, Mapping] | None = None) -> dict:
    """What `codax compile` reports for `model` on the core, computed in memory (no project written): the
    network's cycles (the core's cycle model, equal to the counted C-simulation), latency, instructions and
    the resources the generated sources declare (core_hw). UnsupportedError names the accelerator or the
    layer the core refuses."""
    from codax.codegen import core_project
    from codax.codegen.params import from_onnx
    from codax.frontend import extract_graph, import_onnx, load_onnx
    from codax.passes import pipeline

    core_project.shape_for(accel)
    lm = load_onnx(model)
    graph = extract_graph(pipeline(accel, mappings)(import_onnx(lm)), accel=accel)
    params = {layer.name: from_onnx(lm.model, layer) for layer in graph.layers}
    _, _, rep = core_project.generate(graph, accel, params)
    d, res = rep.to_dict(), rep.to_dict()["resources"]
    return {
        "cycles": d["cycles"]["total"],
        "latency_ms": d["cycles"]["latency_ms"],
        "fps": 1e3 / d["cycles"]["latency_ms"],
        "instructions": d["program"]["instructions"],
        "dsp": res["dsp"],
        "bram18": res["bram18"],
        "fits": res.get("fits", True),
    }


def testbench_inputs(lm) -> dict[str, np.ndarray]:
    """The project testbench's inputs: one deterministic random sample per graph input."""
    from onnx import helper

    rng = np.random.default_rng(0)
    init = {t.name for t in lm.model.graph.initializer}
    out = {}
    for i in lm.model.graph.input:
        if i.name in init:
            continue
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
        shape = lm.input_shapes[i.name]
        if dt.kind == "f":
            out[i.name] = rng.standard_normal(shape).astype(dt)
        else:
            info = np.iinfo(dt)
            out[i.name] = rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(dt)
    return out


def run_compiled(out_dir: str | Path, inputs: dict[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """Run a compiled output directory's executable (VM) on numpy inputs."""
    import tvm
    from tvm import relax

    out = Path(out_dir)
    so = out / EXECUTABLE
    if not so.exists():
        raise ConfigError(
            f"{out}: no {EXECUTABLE}; compile with `codax compile MODEL.onnx ... -o {out}` first"
        )
    manifest = json.loads((out / MANIFEST).read_text())
    names = list(manifest["inputs"])
    arrays = [inputs] if isinstance(inputs, np.ndarray) else [inputs[n] for n in names]
    for name, arr in zip(names, arrays):
        want = tuple(manifest["inputs"][name])
        if tuple(arr.shape) != want:
            raise ModelError(f"input {name}: shape {tuple(arr.shape)} but the model was compiled for {want}")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(so)), tvm.cpu())
    res = vm["main"](*[tvm.runtime.tensor(a) for a in arrays])
    items = [res] if hasattr(res, "numpy") else list(res)
    return [r.numpy() for r in items]


class References:
    """The references a network is checked against, built once: the golden model of the network
    (accelerator layers through the numpy golden model, host ops through ONNX's reference
    evaluator), ONNX Runtime on the model end to end (reference semantics, no fusions), and ONNX
    Runtime per layer on the golden model's own tensors (`codax.verify`). `References(out_dir)`:
    those of a compiled output directory; `References.of_model`: of a model for an accelerator."""

    def __init__(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        self._build(out / MODEL_COPY, out / "accel.yaml", load_mappings(out / "mappings.yaml"))

    @classmethod
    def of_model(
        cls, model: str | Path, accel: str | Path | Accelerator, mappings: dict[str, Mapping] | None = None
    ) -> References:
        refs = cls.__new__(cls)
        refs._build(Path(model), accel, mappings)
        return refs

    def _build(self, model: Path, accel, mappings) -> None:
        from codax.codegen.params import from_onnx
        from codax.frontend import extract_graph, import_onnx, load_onnx
        from codax.passes import pipeline
        from codax.verify import LayerReference, output_steps

        lm = load_onnx(model)  # widths read back as the compile read them
        self.model = lm.model
        acc = _accelerator(accel)
        self.graph = extract_graph(pipeline(acc, mappings)(import_onnx(lm)), accel=acc)
        self.params = {layer.name: from_onnx(self.model, layer) for layer in self.graph.layers}
        self.steps = output_steps(self.model)
        self.session = _reference_session(model)
        # an offloaded layer's piece is named by the layer and ends at its output
        ends = {t: layer.name for layer in self.graph.layers for t in layer.outputs}
        self.layers = LayerReference(self.model, cuts=list(ends), names=ends)

    def golden_tensors(self, inputs: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Every tensor the golden model computes, by name."""
        from codax.codegen.golden_net import golden_network

        return golden_network(self.model, self.graph, self.params, _feed(self.session, inputs))

    def golden(self, inputs: dict[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
        env = self.golden_tensors(inputs)
        return [env[o.name] for o in self.model.graph.output]

    def onnxruntime(self, inputs: dict[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, _feed(self.session, inputs))


def check_compiled(
    out_dir: str | Path,
    inputs: dict[str, np.ndarray] | np.ndarray,
    outputs: list[np.ndarray] | None = None,
    refs: References | None = None,
):
    """The compiled executable checked by the one rule of `codax.verify` (a NetworkCheck): its
    outputs (run now unless given) bit-exact against the golden model; each layer of the golden
    model within one step of ONNX Runtime run on the golden model's own input tensors; the outputs
    against ONNX Runtime end to end, reported."""
    from codax.verify import EXACT_RULE, FLOAT_RULE, REPORTED, NetworkCheck, compare

    refs = refs or References(out_dir)
    outs = run_compiled(out_dir, inputs) if outputs is None else outputs
    env = refs.golden_tensors(inputs)
    golden = [env[o.name] for o in refs.model.graph.output]
    ort_outs = refs.onnxruntime(inputs)
    return NetworkCheck(
        golden=[
            compare(o, g, st, "golden", EXACT_RULE if st is not None else FLOAT_RULE, f"output {i}")
            for i, (o, g, st) in enumerate(zip(outs, golden, refs.steps))
        ],
        layers=refs.layers.check(env),
        end_to_end=[
            compare(o, r, st, "onnxruntime", REPORTED, f"output {i}")
            for i, (o, r, st) in enumerate(zip(outs, ort_outs, refs.steps))
        ],
    )


def reference_outputs(out_dir: str | Path, inputs: dict[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """ONNX Runtime on the compiled model, executing the ONNX reference semantics (no fusions)."""
    sess = _reference_session(Path(out_dir) / MODEL_COPY)
    return sess.run(None, _feed(sess, inputs))


def _feed(sess, inputs: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """Inputs by the session's input names: one array is the first input."""
    names = [i.name for i in sess.get_inputs()]
    return {names[0]: inputs} if isinstance(inputs, np.ndarray) else {n: inputs[n] for n in names}


def _reference_session(model: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
