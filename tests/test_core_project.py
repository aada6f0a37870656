"""`codax compile --engine core`: a QDQ ResNet-18 as the core engine's project -- the core's sources, the
network's instructions (program.bin, indexed by program.idx) and its one DRAM image (dram.bin) laid out
by schedule.yaml, read back here with the instruction table (codax.codegen.core_isa) -- with the
resources the HLS readers find within the ZC706's DSPs and BRAM18 (codax.hw.library), every buffer the
block design declares in the report, every IP loop at II 1, and the whole network in C-simulation
bit-exact with the golden network. Accelerators and layers the core cannot run, and an unknown engine,
are refused by name, before anything is written."""

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
from codax.errors import UnsupportedError
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
              "run_hls.tcl", "report.json", "README.md", "model.onnx", "accel.yaml"):  # fmt: skip
        assert (out / f).is_file(), f
    assert rep["engine"] == "core" and rep["accelerator"] == ACCEL
    assert json.loads((out / "codax.json").read_text())["engine"] == "core"
    assert "check: bit-exact" in printed
    assert "--engine core --check" in (out / "README.md").read_text()


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
    assert {n["name"] for n in cores} == set(rep["layers"]) and len(cores) >= 20
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
    assert all(v["cycles"]["cycles"] > 0 for v in layers.values())
    assert rep["cycles"]["total"] == sum(v["cycles"]["cycles"] for v in layers.values())
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
    assert rc == 2 and "--engine 'vta'" in err and "default, core" in err and not out.exists()
    rc = main(["compile", str(model), "--accel", ACCEL, "--check", "-o", str(out)])
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
