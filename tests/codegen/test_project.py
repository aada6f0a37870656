"""The generated Vitis HLS project: one engine per accelerator engine (sized from accel.yaml, the same
sources for every network), the network as a program; the sources pass g++ -fsyntax-only with their
pragmas, the resources instantiated in the sources equal report.json's and the cost model's, the
testbench runs the network through the engine, and bad inputs fail cleanly."""

import dataclasses
import json
import re
import subprocess

import numpy as np
import pytest
import yaml

from codax.codegen import engine_sources, run_graph, write_project
from codax.codegen.csim import ap_types_dir
from codax.codegen.examples import random_graph_params, resnet18_graph
from codax.errors import CapacityError, CodaxError, ConfigError, UnsupportedError
from codax.hw import evaluate, load_accelerator
from codax.hw.evaluate import accelerator_resources, chain_calls, engine_resources
from codax.hw.mapper.naive import naive_mapping
from codax.ir import Epilogue, Graph, HostOp, Mapping, conv2d


def t(v):
    import torch

    return torch.tensor([float(v)], dtype=torch.float64)


ACC = load_accelerator("zc706-int8")
HARDWARE = ("engine.cpp", "top.cpp", "include/codax_engine.h", "include/codax_program.h", "tb.cpp")


def mapped(graph, accel=ACC):
    return {layer.name: naive_mapping(layer, accel) for layer in graph.layers}


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    g = resnet18_graph()
    maps = mapped(g)
    out = write_project(g, ACC, maps, random_graph_params(g), tmp_path_factory.mktemp("p") / "r18")
    return g, maps, out


def test_resnet18_sources_pass_syntax_check(r18):
    _, _, out = r18
    assert not (out / "kernels").exists()  # no kernel per layer: one engine runs the program
    r = subprocess.run(
        ["g++", "-std=c++14", "-fsyntax-only", "-Wall", "-Wno-unused-label", "-Wno-unknown-pragmas",
         "-Iinclude", "-isystem", str(ap_types_dir()), "top.cpp", "engine.cpp", "tb.cpp"],
        cwd=out, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    engine = (out / "include" / "codax_engine.h").read_text()
    assert "#pragma HLS PIPELINE" in engine and "#pragma HLS UNROLL" in engine
    assert "#pragma HLS INTERFACE m_axi" in (out / "top.cpp").read_text()
    assert (out / "program.bin").stat().st_size == 21 * 4 * _desc_words(out)
    # the m_axi depths are this network's real sizes, given to synthesis by the project's scripts
    for script in ("run_hls.tcl", "hls_config.cfg"):
        text = (out / script).read_text()
        assert f"-DCODAX_PROGRAM_WORDS={21 * _desc_words(out)}" in text
        assert f"-DCODAX_WEIGHT_BYTES={(out / 'weights.bin').stat().st_size}" in text
    # synthesis builds each of the engine's IPs as a top of its own (VTA's arrangement)
    ips = engine_sources(ACC).ips
    assert re.search(r"^set ips \{(.*)\}$", (out / "run_hls.tcl").read_text(), re.M).group(1).split() == list(
        ips
    )
    assert sorted(p.stem for p in (out / "ips").glob("*.cfg")) == sorted(ips)
    for ip in ips:
        assert f"syn.top={ip}\n" in (out / "ips" / f"{ip}.cfg").read_text()


def _desc_words(out) -> int:
    return int(re.search(r"DESC_WORDS = (\d+);", (out / "include" / "codax_program.h").read_text()).group(1))


def sources_hardware(out) -> dict[str, dict]:
    """Per engine, read from the generated sources alone: multipliers instantiated (PE array size times
    the MAC sites of the unrolled PE step) and the on-chip arrays declared (bytes, banks)."""
    engine_cpp = (out / "engine.cpp").read_text()
    header = (out / "include" / "codax_engine.h").read_text()
    step = header[header.index("void pe_array_step(") : header.index("void run_layer(")]
    int_sites = len(re.findall(r"// MAC site: integer", step))
    float_sites = len(re.findall(r"// MAC site: fp32", step))
    hw = {}
    for block in engine_cpp.split("// ---- engine ")[1:]:
        name = block.split(":")[0]
        rows, cols, wbits, abits, float_ok = re.search(
            r"compute_step<(\d+), (\d+), (\d+), (\d+), (true|false)>", block
        ).groups()
        pes = int(rows) * int(cols)
        arrays = {m[0]: int(m[1]) for m in re.findall(r"static uint8_t (\w+)\[(\d+)\];", block)}
        banks = {m[0]: int(m[1]) for m in re.findall(r"variable=(\w+) cyclic factor=(\d+)", block)}
        hw[name] = {
            "multipliers": pes * (int_sites + (float_sites if float_ok == "true" else 0)),
            "int_mac_bits": (int(wbits) + 1, int(abits) + 1),
            "buffer_bytes": sum(arrays.values()),
            "arrays": {a: (b, banks.get(a, 1)) for a, b in arrays.items()},
        }
    return hw


@pytest.mark.parametrize("accel_name", ["zc706-int8", "zcu102-int8", "zcu102-mixed", "eyeriss-like"])
def test_resources_by_construction(tmp_path, accel_name):
    """The PE multipliers and buffer bytes declared in the sources equal the cost model's entry in
    report.json (`resources.model`; the figures read from the whole sources are `resources` itself,
    tests/codegen/test_hls_reader_resources.py)."""
    from codax.hw.library import load_device
    from codax.hw.resources import bram18, dsp_per_mac

    acc = load_accelerator(accel_name)
    g = _two_layer_graph()
    out = write_project(g, acc, mapped(g, acc), random_graph_params(g), tmp_path / "p")
    rep = json.loads((out / "report.json").read_text())["resources"]["model"]  # the cost model's figures
    found = sources_hardware(out)
    assert set(found) == {e.name for e in acc.engines}
    for e in acc.engines:
        src, entry, model = found[e.name], rep["engines"][e.name], engine_resources(acc, e.name)
        assert src["multipliers"] == entry["multipliers"] * (2 if acc.float_ok else 1)
        assert src["buffer_bytes"] == entry["buffer_bytes"]
        for k in ("dsp", "bram18", "lut", "area_mm2"):
            assert entry[k] == getattr(model, k), k
        if acc.target == "fpga":  # DSP and BRAM18 recomputed from the sources by the device's rules
            kind = load_device(acc.device).dsp_kind
            per_int = float(
                dsp_per_mac(t(src["int_mac_bits"][0] - 1), t(src["int_mac_bits"][1] - 1), t(0), kind)
            )
            per_fp = float(dsp_per_mac(t(32), t(32), t(1), kind)) if acc.float_ok else 0.0
            assert e.pe_array.pes * (per_int + per_fp) == entry["dsp"]
            per_pe = {a.name for a in e.arrays() if a.per_pe}
            brams = sum(
                float(bram18(t(b), t(k), t(0))) for a, (b, k) in src["arrays"].items() if a not in per_pe
            )
            assert brams == entry["bram18"]
    total = accelerator_resources(acc)
    assert rep["dsp"] == total.dsp and rep["bram18"] == total.bram18


@pytest.mark.parametrize("accel_name", ["zc706-int8", "zcu102-int8"])
def test_qdq_cnns_fit_their_devices(accel_name):
    from codax.hw.library import load_device

    acc = load_accelerator(accel_name)
    r, dev = accelerator_resources(acc), load_device(acc.device)
    assert r.dsp <= dev.dsp and r.bram18 <= dev.bram18 and r.lut <= dev.lut, (r, dev)


def test_same_hardware_for_any_network(tmp_path):
    """Two unrelated networks compiled for one accelerator: byte-identical hardware sources; the
    networks differ only in the program, the weights and the testbench data."""
    a = resnet18_graph(hw=16, width=4, classes=10)
    b = _two_layer_graph()
    pa = write_project(a, ACC, mapped(a), random_graph_params(a), tmp_path / "a")
    pb = write_project(b, ACC, mapped(b), random_graph_params(b), tmp_path / "b")
    for f in HARDWARE:
        assert (pa / f).read_bytes() == (pb / f).read_bytes(), f
    assert (pa / "program.bin").read_bytes() != (pb / "program.bin").read_bytes()


def test_resnet18_report_matches_cost_model(r18):
    g, maps, out = r18
    rep = json.loads((out / "report.json").read_text())
    assert {e["layer"] for e in rep["layers"]} == {layer.name for layer in g.layers}
    # the layers as the program's calls, in order: each call's descriptor prefetched by the call before
    chained = chain_calls([evaluate(la, ACC, maps[la.name]) for la in g.layers], ACC)
    costs = {c.layer: c for c in chained}
    for entry in rep["layers"]:
        layer = g.nodes[entry["layer"]]
        cost = costs[layer.name]
        assert entry["predicted_cycles"] == cost.cycles and entry["macs"] == cost.macs
        for b in entry["buffers"]:
            assert b["tile_bytes"] == cost.tile_bytes[b["level"]][b["operand"]]
    assert rep["total_cycles"] == sum(c.cycles for c in chained)
    assert rep["total_cycles"] < sum(evaluate(la, ACC, maps[la.name]).cycles for la in g.layers)
    # the token FIFOs' depths: the most partial-sum tokens any call keeps outstanding per level
    # (tests/codegen/test_task_order.py checks the bound against C-simulation)
    fifos = rep["token_fifos"]
    assert (fifos["full"], fifos["free"], fifos["done"]) == (2, 2, 2)
    assert set(fifos["ps"]) == {e.name for e in ACC.engines}
    from codax.codegen.nest import plan

    want: dict[str, int] = {}
    for la in g.layers:
        pl = plan(la, ACC, maps[la.name])
        for h, n in pl.ps_tokens().items():
            want[pl.level_names[h]] = max(want.get(pl.level_names[h], 0), n)
    assert fifos["ps"][ACC.engines[0].name] == want
    sched = yaml.safe_load((out / "schedule.yaml").read_text())
    calls = sched["calls"]
    assert [c["node"] for c in calls] == list(g.nodes)
    assert [c["call"] for c in calls if c["kind"] == "accel"] == list(range(21))
    assert (out / "weights.bin").stat().st_size == sched["dram"]["weights_bin"]["bytes"]
    # liveness reuse: the activation region is smaller than all tensors side by side
    assert sched["dram"]["activations"]["bytes"] < sum(t["bytes"] for t in sched["tensors"].values())
    readme = (out / "README.md").read_text()
    assert "DSP" in readme and "BRAM18" in readme and "program.bin" in readme


def _overlap(a, b):
    return a["offset"] < b["offset"] + b["bytes"] and b["offset"] < a["offset"] + a["bytes"]


def test_live_tensors_never_overlap(r18):
    g, _, out = r18
    sched = yaml.safe_load((out / "schedule.yaml").read_text())
    for c in sched["calls"]:
        if c["kind"] != "accel":
            continue
        reads = [c["input"]] + ([c["residual"]] if c["residual"] else [])
        for r in reads:
            assert not _overlap(r, c["output"]), c["node"]


def _maxpool(x):  # 3x3 stride 2 pad 1, as ResNet's stem
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2, w + 2), np.iinfo(x.dtype).min if x.dtype.kind in "iu" else -np.inf, x.dtype)
    xp[:, :, 1:-1, 1:-1] = x
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    return np.max(
        [xp[:, :, i : i + 2 * ho : 2, j : j + 2 * wo : 2] for i in range(3) for j in range(3)], axis=0
    )


def _gap(x):
    return np.rint(x.astype(np.float64).mean(axis=(2, 3))).astype(x.dtype).reshape(x.shape[0], -1)


def test_testbench_runs_small_resnet(tmp_path):
    """The project's testbench, built with g++ as its README says, runs the network from the program
    on the engine and every call matches its golden output."""
    g = resnet18_graph(hw=16, width=4, classes=10)
    maps, prm = mapped(g), random_graph_params(g, seed=1)
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (1, 3, 16, 16)).astype(np.int8)
    env = run_graph(
        g, prm, {"input": x}, host_fns={"MaxPool": _maxpool, "GlobalAveragePool": _gap}, csim=False
    )
    out = write_project(g, ACC, maps, prm, tmp_path / "p", tb_values=env)
    exe = tmp_path / "tb"
    r = subprocess.run(
        ["g++", "-O2", "-std=c++14", "-w", "-ffp-contract=off", "-Iinclude", "-I" + str(ap_types_dir()),
         "top.cpp", "engine.cpp", "tb.cpp", "-o", str(exe)], cwd=out, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([str(exe)], cwd=out, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "21 accelerator calls checked, 0 mismatching" in r.stdout


def _two_layer_graph(names=("a", "b")):
    g = Graph("g", inputs=("in",), outputs=(f"{names[1]}_out",))
    a = conv2d(
        names[0],
        c_in=4,
        c_out=4,
        hw=(6, 6),
        kernel=(3, 3),
        pads=(1, 1, 1, 1),
        epilogue=Epilogue(bias=True, requant=True),
        inputs=("in",),
        outputs=(f"{names[0]}_out",),
    )
    b = conv2d(names[1], c_in=4, c_out=4, hw=(6, 6), kernel=(1, 1), epilogue=Epilogue(requant=True),
               inputs=(f"{names[0]}_out",), outputs=(f"{names[1]}_out",))  # fmt: skip
    g.add(a)
    g.add(b)
    return g


def test_mapping_that_does_not_fit_writes_nothing(tmp_path):
    g = _two_layer_graph()
    maps = mapped(g)
    bad = g.nodes["b"]
    maps["b"] = Mapping("b", spatial={}, tiles={"REG": {"K": 4}, "DRAM": {"C": 4, "P": 6, "Q": 6}})
    out = tmp_path / "proj"
    with pytest.raises(CapacityError, match="REG"):
        write_project(g, ACC, maps, random_graph_params(g), out)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    del bad


def test_existing_directory_refused_unless_force(tmp_path):
    g = _two_layer_graph()
    maps, prm = mapped(g), random_graph_params(g)
    out = tmp_path / "proj"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ConfigError, match="force"):
        write_project(g, ACC, maps, prm, out)
    assert (out / "keep.txt").read_text() == "old"
    # a failing forced write leaves the old project whole
    maps_bad = dict(maps, b=Mapping("b", tiles={"REG": {"K": 4}, "DRAM": {"C": 4, "P": 6, "Q": 6}}))
    with pytest.raises(CodaxError):
        write_project(g, ACC, maps_bad, prm, out, force=True)
    assert (out / "keep.txt").read_text() == "old"
    write_project(g, ACC, maps, prm, out, force=True)
    assert not (out / "keep.txt").exists() and (out / "engine.cpp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no temp dirs left behind


def test_hostile_names_stay_out_of_the_sources(tmp_path):
    names = ('x"; system("rm -rf /"); //', "x__system_rm_rf")
    g = _two_layer_graph(names)
    g.add(HostOp("int", "Relu", (f"{names[1]}_out",), ("r",)))
    out = write_project(g, ACC, mapped(g), random_graph_params(g), tmp_path / "p")
    for f in HARDWARE:
        code = (out / f).read_text()
        assert "system(" not in code and "rm -rf" not in code, f
    sched = yaml.safe_load((out / "schedule.yaml").read_text())
    assert [c["node"] for c in sched["calls"]][:2] == list(names)  # names survive as data
    r = subprocess.run(
        ["g++", "-std=c++14", "-fsyntax-only", "-Iinclude", "-isystem", str(ap_types_dir()), "top.cpp",
         "engine.cpp", "tb.cpp"], cwd=out, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]


def test_accelerator_names_become_c_identifiers(tmp_path):
    """Level and engine names come from accel.yaml: the sources use sanitized, distinct identifiers."""
    from codax.ir import Accelerator

    d = ACC.to_dict()
    d["engines"][0]["name"] = "main engine/1"
    d["engines"][0]["levels"][0]["name"] = "BUF-0 (on chip)"
    acc = Accelerator.from_dict(d)
    g = _two_layer_graph()
    maps = {la.name: naive_mapping(la, acc, engine="main engine/1") for la in g.layers}
    out = write_project(g, acc, maps, random_graph_params(g), tmp_path / "p")
    r = subprocess.run(
        ["g++", "-std=c++14", "-fsyntax-only", "-Iinclude", "-isystem", str(ap_types_dir()), "top.cpp",
         "engine.cpp", "tb.cpp"], cwd=out, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert sources_hardware(out)["main engine/1"]["buffer_bytes"] == sum(
        a.bytes for a in acc.engines[0].arrays()
    )


def test_two_engines_one_program(tmp_path):
    """An accelerator of two engines (the chunked designs the co-search can produce): both are built,
    each call runs on its mapping's engine, the testbench passes and the resources add up."""
    from codax.ir import Accelerator

    d = ACC.to_dict()
    second = json.loads(json.dumps(d["engines"][0]))
    second["name"] = "chunk1"
    second["pe_array"]["rows"], second["pe_array"]["cols"] = 8, 8
    d["engines"].append(second)
    acc = Accelerator.from_dict(d)
    g = _two_layer_graph()
    maps = {
        "a": naive_mapping(g.nodes["a"], acc, engine="main"),
        "b": naive_mapping(g.nodes["b"], acc, "chunk1"),
    }
    prm = random_graph_params(g)
    x = np.random.default_rng(0).integers(-128, 128, (1, 4, 6, 6)).astype(np.int8)
    env = run_graph(g, prm, {"in": x}, csim=False)
    out = write_project(g, acc, maps, prm, tmp_path / "p", tb_values=env)
    found = sources_hardware(out)
    assert found["main"]["multipliers"] == 16 * 32 and found["chunk1"]["multipliers"] == 64
    rep = json.loads((out / "report.json").read_text())["resources"]["model"]
    assert rep["dsp"] == accelerator_resources(acc).dsp == sum(e["dsp"] for e in rep["engines"].values())
    # the engine index of each call is in its descriptor; the testbench runs both on their engines
    exe = tmp_path / "tb"
    r = subprocess.run(
        ["g++", "-O1", "-std=c++14", "-w", "-Iinclude", "-I" + str(ap_types_dir()), "top.cpp", "engine.cpp",
         "tb.cpp", "-o", str(exe)], cwd=out, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([str(exe)], cwd=out, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "2 accelerator calls checked, 0 mismatching" in r.stdout, r.stdout
    # and the same two layers through the csim library, layer by layer, equal the golden model
    from codax.codegen import LayerKernel

    y, _ = LayerKernel(g.nodes["b"], acc, maps["b"])(prm["b"], env["a_out"])
    assert np.array_equal(y, env["b_out"])


def test_dram_port_is_one_widened_bundle_and_bad_widths_are_refused():
    accel = load_accelerator("zc706-int8")
    top = engine_sources(accel).files["top.cpp"]
    # one DRAM port, as the model has it, 16 B = 128 bits per beat
    assert top.count("bundle=gmem ") == 3 and "gmem1" not in top
    assert top.count("max_widen_bitwidth=128") == 3
    odd = dataclasses.replace(accel, dram=dataclasses.replace(accel.dram, bandwidth=12.0))
    with pytest.raises(UnsupportedError, match=r"dram\.bandwidth 12\.0 .*power of two"):
        engine_sources(odd)
