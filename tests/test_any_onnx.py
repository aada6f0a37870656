"""Models no fixture resembles, written here, compiled and run end to end against ONNX Runtime: a
transformer encoder block (float and QDQ), a Conv1d network, a ConvTranspose decoder, and a float CNN
compiled with `codax compile --calibrate`. Each report's offloaded MAC share is printed and checked
against a count made straight from the ONNX graph."""

from __future__ import annotations

import subprocess
import sys
from functools import cache

import numpy as np
import onnx
import pytest
import yaml

from codax.flow import check_compiled, compile_model, reference_outputs, run_compiled
from tests.frontend.any_models import export, quantize, samples
from tests.passes.helpers import float_accel

INT_ACCEL = "zc706-int8"  # integer only


@cache
def _models(root: str) -> dict:
    from pathlib import Path

    out = {}
    for name in ("encoder", "keyword", "decoder"):
        f = export(name, Path(root) / f"{name}.onnx")
        out[name] = f
        out[f"{name}_qdq"] = quantize(f, Path(root) / f"{name}_qdq.onnx", samples(name, 16))
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return _models(str(tmp_path_factory.mktemp("any")))


def mac_count(path) -> tuple[int, int]:
    """(MACs of MAC nodes with a constant weight, MACs of all MAC nodes), from ONNX shapes alone."""
    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)), data_prop=True)
    shapes = {t.name: list(t.dims) for t in m.graph.initializer}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    producer = {o: n for n in m.graph.node for o in n.output}
    consts = set(shapes) & {t.name for t in m.graph.initializer}
    const_w = total = 0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        w = n.input[1]
        if w in producer and producer[w].op_type == "DequantizeLinear":
            w = producer[w].input[0]
        x, y, ws = shapes[n.input[0]], shapes[n.output[0]], shapes[w]
        if n.op_type == "Conv":
            macs = np.prod(y) * np.prod(ws[1:])
        elif n.op_type == "ConvTranspose":  # as the convolution over the zero-inserted input runs
            macs = np.prod(y) * ws[0] * np.prod(ws[2:])
        else:
            macs = np.prod(y) * x[-1]
        total += int(macs)
        const_w += int(macs) if w in consts else 0
    return const_w, total


def output_step(path) -> float:
    """The quantization step of a QDQ model's output (the scale of its last DequantizeLinear)."""
    m = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    last = next(n for n in m.graph.node if n.output[0] == m.graph.output[0].name)
    assert last.op_type == "DequantizeLinear"
    return float(inits[last.input[1]])


def check(res, x, quantized_model=None):
    got, want = run_compiled(res.out_dir, x)[0], reference_outputs(res.out_dir, x)[0]
    if quantized_model is None:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    else:
        step = output_step(quantized_model)
        assert np.abs(got - want).max() <= step * (1 + 1e-5), (np.abs(got - want).max(), step)


def share(res, path, expected_const_only: bool = True) -> float:
    t = res.report.totals
    const_w, total = mac_count(path)
    print(
        f"{path.name}: {t['offloaded_macs']:,} of {t['model_macs']:,} MACs offloaded "
        f"({t['offloaded_mac_share']:.1%})"
    )
    assert t["model_macs"] == total
    if expected_const_only:  # every MAC node with a constant weight, and only those
        assert t["offloaded_macs"] == const_w
    return t["offloaded_mac_share"]


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "qdq"])
def test_transformer_encoder_block(models, tmp_path, quantized):
    path = models["encoder_qdq" if quantized else "encoder"]
    res = compile_model(path, INT_ACCEL if quantized else float_accel(), tmp_path / "out")
    check(res, samples("encoder", 1, seed=7), path if quantized else None)
    rows = {r.node: r for r in res.report.nodes}
    # every MatMul runs on the accelerator: the Linear layers on [1, T, D] tokens as dense layers,
    # attention's Q K^T and A V as batched matmuls whose second operand is a run-time tensor (the
    # heads are the group dim); Softmax, LayerNormalization and Erf stay on the host
    assert all(rows[f"/{n}/MatMul"].placement == "accelerator" for n in ("qkv", "proj", "fc1", "fc2"))
    assert {rows[n].placement for n in ("/MatMul", "/MatMul_1")} == {"accelerator"}
    assert all(r.placement == "host" for r in rows.values() if r.op_type in ("Softmax", "Erf"))
    got = share(res, path, expected_const_only=False)
    const_w, total = mac_count(path)
    assert res.report.totals["offloaded_macs"] == total > const_w
    assert got == 1.0
    # the attention matmuls ran on the engine: their calls are in the program, reading the second
    # operand from the activation region
    sched = yaml.safe_load((res.out_dir / "schedule.yaml").read_text())
    calls = {c["node"]: c for c in sched["calls"] if c["kind"] == "accel"}
    for n in ("/MatMul", "/MatMul_1"):
        assert calls[n]["weights"]["tensor"] in sched["tensors"]


def test_vector_unit_placement_of_softmax_layernorm_gelu(models, tmp_path):
    """An accelerator that declares softmax / layernorm / gelu in host_ops gets those nodes placed
    on its post-processing unit in the report; without them they stay on the host."""
    from codax.hw import load_accelerator
    from codax.ir import Accelerator

    d = load_accelerator(INT_ACCEL).to_dict()
    d["host_ops"] = [*d["host_ops"], "softmax", "layernorm", "gelu"]
    for accel, want in ((Accelerator.from_dict(d), "vector"), (load_accelerator(INT_ACCEL), "host")):
        res = compile_model(models["encoder"], accel, tmp_path / want, analyze_only=True)
        rows = [r for r in res.report.nodes if r.op_type in ("Softmax", "LayerNormalization", "Erf")]
        assert len(rows) == 4 and {r.placement for r in rows} == {want}


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "qdq"])
def test_conv1d_network(models, tmp_path, quantized):
    path = models["keyword_qdq" if quantized else "keyword"]
    res = compile_model(path, INT_ACCEL if quantized else float_accel(), tmp_path / "out")
    check(res, samples("keyword", 1, seed=7), path if quantized else None)
    layers = {r.layer: r for r in res.report.layers}
    assert {"/c1/Conv", "/c2/Conv", "/dw/Conv", "/pw/Conv"} <= set(layers)
    assert layers["/dw/Conv"].kind == "depthwise" and layers["/c1/Conv"].dims["P"] == 1
    assert share(res, path) == 1.0


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "qdq"])
def test_conv_transpose_decoder(models, tmp_path, quantized):
    path = models["decoder_qdq" if quantized else "decoder"]
    res = compile_model(path, INT_ACCEL if quantized else float_accel(), tmp_path / "out")
    check(res, samples("decoder", 1, seed=7), path if quantized else None)
    rows = {r.node: r for r in res.report.nodes}
    assert rows["/up1/ConvTranspose"].placement == rows["/up2/ConvTranspose"].placement == "accelerator"
    assert share(res, path) == 1.0


def test_float_cnn_compiled_with_calibrate(tmp_path):
    path = export("cnn", tmp_path / "cnn.onnx")
    np.save(tmp_path / "calib.npy", samples("cnn", 32))
    cli = [sys.executable, "-m", "codax.cli", "compile", str(path), "--accel", INT_ACCEL]
    # a float model on an integer accelerator: an error that says how to give calibration data
    p = subprocess.run([*cli, "-o", str(tmp_path / "no")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "float model" in p.stderr and "--calibrate SAMPLES" in p.stderr and INT_ACCEL in p.stderr
    out = tmp_path / "out"
    p = subprocess.run(
        [*cli, "--calibrate", str(tmp_path / "calib.npy"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    print(p.stdout.splitlines()[-3])
    # the output keeps the quantized model: QDQ, per-channel weights
    q = onnx.load(str(out / "model.onnx"))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in q.graph.initializer}
    conv_dq = [
        n
        for n in q.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0], np.zeros(0)).ndim == 4
    ]
    assert conv_dq and all(inits[n.input[1]].size > 1 for n in conv_dq)
    from codax.flow import CompileResult

    x = samples("cnn", 1, seed=11)
    check(CompileResult(out, None, {}, out / "model.so"), x, out / "model.onnx")
    import json

    totals = json.loads((out / "report.json").read_text())["totals"]
    print(f"calibrated cnn: {totals['offloaded_mac_share']:.1%} of MACs offloaded")
    assert totals["offloaded_mac_share"] == 1.0 and totals["offloaded_layers"] == 5


def test_torch_transformer_encoder_layer_calibrated(tmp_path):
    """PyTorch's own nn.TransformerEncoderLayer (its ONNX export, not the block written here), float,
    quantized with --calibrate: every MatMul / Gemm runs on the engine, the attention's Q K^T and A V
    among them, and the executable matches ONNX Runtime on the quantized model within one step."""
    import torch

    from codax.frontend import export_torch

    torch.manual_seed(0)

    class Block(torch.nn.Module):  # forward(x) only: the layer's own forward has optional masks
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)

        def forward(self, x):
            return self.layer(x)

    torch.backends.mha.set_fastpath_enabled(False)  # the fused fast path has no ONNX export
    try:
        path = export_torch(Block().eval(), torch.randn(1, 6, 32), tmp_path / "tel.onnx")
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    rng = np.random.default_rng(1)
    np.save(tmp_path / "calib.npy", rng.standard_normal((8, 1, 6, 32)).astype(np.float32))
    res = compile_model(path, INT_ACCEL, tmp_path / "out", calibrate=tmp_path / "calib.npy")
    mats = [r for r in res.report.nodes if r.op_type in ("MatMul", "Gemm")]
    print(f"torch TransformerEncoderLayer: {res.report.totals['offloaded_mac_share']:.1%} of MACs offloaded")
    assert len(mats) == 6 and all(r.placement == "accelerator" for r in mats)
    assert res.report.totals["offloaded_mac_share"] == 1.0
    x = rng.standard_normal((1, 6, 32)).astype(np.float32)
    check = check_compiled(res.out_dir, x)
    assert check.ok and check.golden[0].mismatching == 0, check.lines()
    assert all(c.max_steps <= 1 for c in check.layers)
