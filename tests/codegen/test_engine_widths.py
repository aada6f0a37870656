"""Layers run on the engines at the widths the model declares: a user's ONNX Runtime INT4 model compiles
for the descriptor engine with 4-bit storage (weights packed two per byte in weights.bin and on chip,
4-bit activations packed in DRAM), its DRAM bytes and cycles are the cost model's at 4 bits; for the core
(the default engine) with every layer's instructions at the model's widths; either executable is
bit-exact against the golden model and at most one quantization step from ONNX Runtime."""

from __future__ import annotations

import json

import pytest
import yaml

from codax.flow import References, check_compiled, compile_model, run_compiled
from codax.hw import evaluate, load_accelerator
from codax.hw.evaluate import chain_calls
from codax.ir import load_mappings
from tests.frontend.test_widths import _ort_quantize, digits_float_opset21  # noqa: F401 (fixture)
from tests.passes.models import digits


@pytest.mark.parametrize("activation_type, act_bits", [("QUInt4", 4), ("QUInt8", 8)])
def test_int4_model_compiles_and_runs_at_its_widths(
    digits_float_opset21,  # noqa: F811 (the fixture imported above)
    tmp_path,
    activation_type,
    act_bits,
):
    path = _ort_quantize(digits_float_opset21, tmp_path / "q4.onnx", "QInt4", activation_type)
    accel = load_accelerator("zc706-int8")
    res = compile_model(path, accel, tmp_path / "out", engine="descriptor")
    sched = yaml.safe_load((res.out_dir / "schedule.yaml").read_text())
    calls = [c for c in sched["calls"] if c["kind"] == "accel"]
    assert len(calls) == 5
    rep = {r["layer"]: r for r in json.loads((res.out_dir / "report.json").read_text())["layers"]}
    maps = load_mappings(res.out_dir / "mappings.yaml")
    from codax.frontend import extract_graph, import_onnx
    from codax.passes import pipeline

    graph = extract_graph(pipeline(accel, maps)(import_onnx(str(path))), accel=accel)
    # the calls as the program runs them: each call's descriptor prefetched by the call before
    chained = {
        c.layer: c for c in chain_calls([evaluate(la, accel, maps[la.name]) for la in graph.layers], accel)
    }
    for c in calls:
        layer = graph.nodes[c["node"]]
        assert c["widths"]["weight"] == 4 and c["widths"]["input"] == act_bits
        # weights packed at 4 bits, half a byte per weight, in tile order (edge tiles not padded)
        slots = layer.G * layer.K * layer.C * layer.R * layer.S
        assert c["weights"]["bytes"] == -(-slots * 4 // 8)
        cost = chained[layer.name]
        assert rep[layer.name]["dram_bytes"] == cost.dram_bytes
        assert rep[layer.name]["predicted_cycles"] == cost.cycles
    _bit_exact_on_digits(res.out_dir, len(calls))


def _bit_exact_on_digits(out_dir, n_layers: int) -> None:
    refs = References(out_dir)
    for x in digits(24)[::3]:
        got = run_compiled(out_dir, x[None])
        check = check_compiled(out_dir, x[None], got, refs)
        assert check.ok and check.golden[0].mismatching == 0, check.lines()
        assert len(check.layers) >= n_layers and all(c.max_steps <= 1 for c in check.layers)


def test_int4_model_runs_on_the_core_at_its_widths(digits_float_opset21, tmp_path):  # noqa: F811
    """The default engine for zc706-int8 is the core: every layer a core node of schedule.yaml at the
    model's 4-bit weights and inputs, bit-exact in the project's check and in the executable."""
    path = _ort_quantize(digits_float_opset21, tmp_path / "q4.onnx", "QInt4", "QUInt4")
    res = compile_model(path, "zc706-int8", tmp_path / "out", check=True)
    assert res.engine == "core"
    cores = [
        n for n in yaml.safe_load((res.out_dir / "schedule.yaml").read_text())["nodes"] if n["kind"] == "core"
    ]
    assert len(cores) == 5 and all(n["widths"]["weight"] == 4 and n["widths"]["input"] == 4 for n in cores)
    assert res.report.to_dict()["check"]["bit_exact"]
    _bit_exact_on_digits(res.out_dir, len(cores))
