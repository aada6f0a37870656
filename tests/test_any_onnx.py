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

from codax.flow import compile_model, reference_outputs, run_compiled
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
    # the Linear layers on [1, T, D] tokens are dense layers; attention's QK^T and AV stay on the
    # host (their second operand is an activation), as do Softmax, LayerNormalization and Erf
    assert all(rows[f"/{n}/MatMul"].placement == "accelerator" for n in ("qkv", "proj", "fc1", "fc2"))
    assert {rows[n].placement for n in ("/MatMul", "/MatMul_1")} == {"host"}
    assert "run-time tensors" in rows["/MatMul"].reason
    assert all(r.placement == "host" for r in rows.values() if r.op_type in ("Softmax", "Erf"))
    got = share(res, path)
    const_w, total = mac_count(path)
    assert got == pytest.approx(const_w / total) and 0.9 < got < 1.0


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
