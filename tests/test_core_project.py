"""`codax compile --engine core`: a QDQ ResNet-18 as the core engine's project -- the core's sources, the
network's instructions (program.bin, indexed by program.idx) and its one DRAM image (dram.bin) laid out
by schedule.yaml, read back here with the instruction table (codax.codegen.core_isa) -- with the
resources the HLS readers find within the ZC706's DSPs and BRAM18 (codax.hw.library), every buffer the
block design declares in the report, every IP loop at II 1, and the whole network in C-simulation
bit-exact with the golden network. Accelerators and layers the core cannot run, and an unknown engine,
are refused by name, before anything is written. The project's model.so (the TVM executable, every layer
on the core in C-simulation) runs with `codax run --check`, bit-exact with the golden network."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from codax.cli import main
from codax.codegen import core_isa
from codax.codegen.core import core_shape
from codax.codegen.core_program import decode
from codax.codegen.hls_resources import bram18_per_bank
from codax.errors import ConfigError, UnsupportedError
from codax.hw.library import load_accelerator, load_device
from codax.ir import load_yaml

ACCEL = "zc706-int8"
SHAPE = (1, 3, 16, 16)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small QDQ ResNet-18 (ONNX Runtime's quantize_static, per-channel int8 weights, uint8
    activations), as tests/codegen/test_core_engine.py builds it."""
    import torch

    from codax.frontend import export_torch
    from codax.frontend.zoo import resnet18
    from tests.test_end_to_end import _quantize

    d = tmp_path_factory.mktemp("core_model")
    torch.manual_seed(0)
    net = resnet18(num_classes=10, width=8)
    return _quantize(export_torch(net, torch.randn(SHAPE), d / "f.onnx"), d / "q.onnx", SHAPE)


@pytest.fixture(scope="module")
def project(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("core_project") / "out"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["compile", str(model), "--accel", ACCEL, "--engine", "core", "--check", "-o", str(out)])
    assert rc == 0, stdout.getvalue()
    return out, stdout.getvalue(), json.loads((out / "report.json").read_text())


def test_files(project):
    out, printed, rep = project
    for f in ("core.cpp", "core_system.cpp", "core_csim.cpp", "include/codax_core.h", "include/core_system.h",
              "include/codax_requant.h", "program.bin", "program.idx", "dram.bin", "schedule.yaml",
              "run_hls.tcl", "report.json", "README.md", "model.onnx", "accel.yaml", "model.so"):  # fmt: skip
        assert (out / f).is_file(), f
    assert rep["engine"] == "core" and rep["accelerator"] == ACCEL
    assert json.loads((out / "codax.json").read_text())["engine"] == "core"
    assert "check: bit-exact" in printed
    assert "--engine core --check" in (out / "README.md").read_text()
    assert "codax run DIR --input X.npy [--check]" in (out / "README.md").read_text()
    assert f"codax run {out} --input X.npy" in printed


def test_run_checks_the_executable(project, model, tmp_path, capsys):
    """`codax run OUT --input X --check` on the core project: model.so, every layer's instructions on the
    core in C-simulation and the host ops on the CPU, gives the golden network's output bit for bit (the
    check passes, exit 0), and the output it saves equals the golden network computed here from the
    model given to the compile."""
    from codax.codegen.golden_net import golden_network
    from codax.codegen.params import from_onnx
    from codax.frontend import extract_graph, import_onnx, load_onnx
    from codax.passes import pipeline

    out, _, _ = project
    x = np.random.default_rng(5).standard_normal(SHAPE).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    args = ["run", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]
    rc = main([*args, "--check", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert rc == 0 and result["check"]["ok"], result
    assert all(g["ok"] for g in result["check"]["golden"])
    accel = load_accelerator(ACCEL)
    graph = extract_graph(pipeline(accel)(import_onnx(model)), accel=accel)
    onnx_model = load_onnx(model).model
    params = {layer.name: from_onnx(onnx_model, layer) for layer in graph.layers}
    want = golden_network(onnx_model, graph, params, {onnx_model.graph.input[0].name: x})
    got = np.load(tmp_path / "y.npy")
    assert np.abs(got).max() > 0
    np.testing.assert_array_equal(got, want[onnx_model.graph.output[0].name])


def test_program_and_dram_image(project):
    """The instruction stream read back from program.bin with the instruction table: each layer's span
    (program.idx, as schedule.yaml states it) ends with its one FINISH; every LOAD and STORE addresses
    the DRAM image only inside the region of what it moves, the regions are disjoint within dram.bin,
    and a tensor one core layer stores and another reads is one region."""
    out, _, rep = project
    shape = core_shape(load_accelerator(ACCEL))
    sched = load_yaml(out / "schedule.yaml")
    raw = (out / "program.bin").read_bytes()
    words = [int.from_bytes(raw[i : i + 16], "little") for i in range(0, len(raw), 16)]
    idx = np.frombuffer((out / "program.idx").read_bytes(), np.uint32).reshape(-1, 2)
    cores = [n for n in sched["nodes"] if n["kind"] == "core"]
    assert len(words) == rep["program"]["instructions"] == int(idx[:, 1].sum()) == len(raw) // 16
    assert [tuple(r) for r in idx.tolist()] == [(n["instructions"]["first"], n["instructions"]["count"])
                                                for n in cores]  # fmt: skip
    assert idx[0, 0] == 0 and all(idx[i + 1, 0] == idx[i].sum() for i in range(len(idx) - 1))
    assert {n["name"] for n in cores} == {lay["layer"] for lay in rep["layers"]} and len(cores) >= 20
    assert any(n["kind"] == "host" for n in sched["nodes"])

    beats = len((out / "dram.bin").read_bytes()) // (shape.beat_bits // 8)
    spans = {}
    for n in cores:
        for e in n["regions"].values():
            spans[e["region"]] = (e["first_beat"], e["beats"])
    ordered = sorted(spans.values())
    assert all(a + n <= b for (a, n), (b, _) in zip(ordered, ordered[1:])) and sum(ordered[-1]) <= beats

    memory = {0: "uops", 1: "weights", 2: "input", 3: "params"}
    for n in cores:
        first, count = n["instructions"]["first"], n["instructions"]["count"]
        ops = [w & ((1 << core_isa.OPCODE_BITS) - 1) for w in words[first : first + count]]
        assert ops[-1] == core_isa.OPCODES["finish"] and ops.count(core_isa.OPCODES["finish"]) == 1

        def inside(addr, kind, n=n):
            return any(r.startswith(kind) and e["first_beat"] <= addr < e["first_beat"] + e["beats"]
                       for r, e in n["regions"].items())  # fmt: skip

        for fmt, f in decode(shape, words[first : first + count]):
            if fmt.kind == "load" and f["y_size"]:
                assert inside(f["dram_base"], memory[f["memory"]]), (n["name"], f)
            if fmt.kind == "store":
                assert inside(f["dram_base"], "output"), (n["name"], f)
                assert not f["res"] or inside(f["res_base"], "residual"), (n["name"], f)

    stored = {n["regions"]["output"]["tensor"]: n["regions"]["output"]["region"] for n in cores}
    shared = 0
    for n in cores:
        for r in ("input", "residual"):
            e = n["regions"].get(r)
            if e and e["tensor"] in stored:
                assert e["region"] == stored[e["tensor"]]
                shared += 1
    assert shared >= 8  # ResNet-18's residuals: each block's input, stored by a core layer


def test_resources_and_iis(project):
    out, _, rep = project
    res = rep["resources"]
    declared = re.findall(r"^extern \w+ (\w+)\[", (out / "include" / "core_system.h").read_text(), re.M)
    assert set(declared) >= {"uop_buf", "wgt_buf", "inp_buf", "acc_buf", "param_buf"}
    arrays = {a["name"]: a for a in res["arrays"]}
    assert set(declared) <= set(arrays)
    for a in res["arrays"]:
        if a["storage"] == "bram":
            per_bank = bram18_per_bank(a["bits"], a["depth"], a["ram_mode"] == "simple dual-port")
            assert a["bram18"] == per_bank * a["banks"] * a["instances"], a
        else:
            assert a["bram18"] == 0, a
    assert sum(a["bram18"] for a in res["arrays"]) == res["bram18"]
    dev = load_device(load_accelerator(ACCEL).device)
    assert res["dsp_kind"] == dev.dsp_kind
    shape = core_shape(load_accelerator(ACCEL))
    assert shape.rows * shape.cols <= res["dsp"] <= dev.dsp == 900  # at least one multiplier per PE
    assert res["bram18"] <= dev.bram18 == 1090
    assert set(rep["loop_iis"]) == {"fetch", "load", "gemm", "store"}
    assert all(ii == 1 for loops in rep["loop_iis"].values() for ii in loops.values())


def test_cycles_and_check(project):
    _, _, rep = project
    layers = rep["layers"]
    assert all(v["core"]["cycles"]["cycles"] > 0 for v in layers)
    assert rep["cycles"]["total"] == sum(v["core"]["cycles"]["cycles"] for v in layers)
    # the passes' report rides along: every layer's precision, the totals, every ONNX node's placement
    assert all(v["precision"] == "w8a8acc32" for v in layers) and rep["totals"]["offloaded_layers"] == len(
        layers
    )
    assert {n["node"] for n in rep["nodes"]} >= {v["layer"] for v in layers}
    c = rep["check"]
    assert c["bit_exact"] and not c["outputs_differ"] and not c["tensors_differ"]
    assert c["layers_run"] == len(layers) and c["outputs"] == 1 and c["tensors"] > 100
    assert c["inputs_in_place"]["found"] == c["inputs_in_place"]["checked"] >= 8


def test_refuses_an_accelerator_the_core_cannot_be(model, tmp_path, capsys):
    from codax.flow import compile_model

    out = tmp_path / "out"
    rc = main(["compile", str(model), "--accel", "eyeriss-like", "--engine", "core", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "eyeriss-like" in err and not out.exists()
    with pytest.raises(UnsupportedError, match="eyeriss-like"):
        compile_model(model, "eyeriss-like", out, engine="core")
    assert not out.exists()


def test_refuses_an_unknown_engine_and_check_without_the_core(model, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["compile", str(model), "--accel", ACCEL, "--engine", "vta", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--engine 'vta'" in err and "core, descriptor" in err and not out.exists()
    rc = main(["compile", str(model), "--accel", "eyeriss-like", "--check", "-o", str(out)])
    assert rc == 2 and "--engine core" in capsys.readouterr().err and not out.exists()


def test_refuses_a_layer_naming_it():
    from codax.codegen.core_project import generate
    from codax.codegen.params import random_params
    from codax.ir import Epilogue, Graph, Precision, conv2d

    layer = conv2d("conv_a", c_in=8, c_out=8, hw=(4, 4), kernel=(3, 3), pads=(1, 1, 1, 1),
                   precision=Precision(weight=8, act=8, out=8), epilogue=Epilogue(bias=True, requant=True),
                   inputs=("x",), outputs=("y",))  # fmt: skip
    params = random_params(layer, np.random.default_rng(0))
    graph = Graph(name="g", inputs=("x",), outputs=("y",))
    graph.add(layer)
    zp = dataclasses.replace(params, w_zero_point=3)  # asymmetric weights: the core's weights are signed
    with pytest.raises(UnsupportedError, match=r"layer conv_a: weight zero point 3"):
        generate(graph, load_accelerator(ACCEL), {"conv_a": zp})


def test_engine_chooser():
    """A compile without --engine takes the core where its IPs are built for the accelerator, else the
    descriptor engine (and the descriptor engine for an analysis); a named engine is taken as named, an
    unknown one is an error naming it."""
    from codax import flow

    core_ok, core_not = load_accelerator(ACCEL), load_accelerator("eyeriss-like")
    assert flow.choose_engine(None, core_ok) == "core"
    assert flow.choose_engine(None, core_not) == "descriptor"
    assert flow.choose_engine(None, core_ok, analyze_only=True) == "descriptor"
    assert flow.choose_engine("core", core_not) == "core"  # refused later, by name (test above)
    assert flow.choose_engine("descriptor", core_ok) == "descriptor"
    with pytest.raises(ConfigError, match="--engine 'vta'"):
        flow.choose_engine("vta", core_ok)


def test_a_model_the_core_refuses_compiles_for_the_descriptor_engine(tmp_path):
    """Without --engine, a model with a layer the core cannot run (a batch of two images) is compiled for
    the descriptor engine, the core's reason in the result and in report.json's notes; with --engine core
    the same model is an error naming the layer."""
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from codax.flow import compile_model
    from codax.frontend import export_torch

    shape = (2, 3, 8, 8)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 1))
    path = export_torch(net, torch.randn(shape), tmp_path / "f.onnx")

    class Samples(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.it = iter({"input": rng.standard_normal(shape).astype(np.float32)} for _ in range(4))

        def get_next(self):
            return next(self.it, None)

    qdq = tmp_path / "q.onnx"
    quantize_static(str(path), str(qdq), Samples(), quant_format=QuantFormat.QDQ, per_channel=True)
    with pytest.raises(UnsupportedError, match=r"layer /0/Conv: batch 2"):
        compile_model(qdq, ACCEL, tmp_path / "core", engine="core")
    assert not (tmp_path / "core").exists()
    res = compile_model(qdq, ACCEL, tmp_path / "out", executable=False)
    assert res.engine == "descriptor" and "batch 2" in res.engine_note
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["engine"] == "descriptor" and any("batch 2" in n for n in rep["notes"])
