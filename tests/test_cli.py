"""The `codax` command, driven as a user drives it: through a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

CODAX = [sys.executable, "-m", "codax.cli"]


def codax(*args, cwd=None):
    p = subprocess.run([*CODAX, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    return p.returncode, p.stdout, p.stderr


def _model(path: Path) -> Path:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    g = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"], name="relu"),
        ],
        "m",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 8, 8])],
        [w],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _model(tmp_path_factory.mktemp("m") / "m.onnx")


def assert_clean_error(rc, err, *fragments):
    assert rc == 2
    assert "Traceback" not in err
    assert err.startswith("codax: error:") or "codax: error:" in err
    for f in fragments:
        assert f in err, err


def test_help_and_library():
    rc, out, _ = codax("--help")
    assert rc == 0 and all(c in out for c in ("search", "compile", "run", "bench", "accel", "demo"))
    rc, out, _ = codax("accel", "list", "--json")
    assert rc == 0 and {"eyeriss-like", "nvdla-small", "tpu-like"} <= {r["name"] for r in json.loads(out)}
    rc, out, _ = codax("accel", "show", "nvdla-small")
    assert rc == 0 and "weight-stationary" in out
    assert_clean_error(*codax("accel", "show", "nvdla-smal")[::2], "unknown accelerator", "nvdla-small")


def test_compile_run_check(model, tmp_path):
    out = tmp_path / "out"
    rc, stdout, err = codax("compile", model, "--accel", "zcu102-mixed", "-o", out)
    assert rc == 0, err
    assert "conv" in stdout and (out / "model.so").exists() and (out / "engine.cpp").is_file()
    np.save(tmp_path / "x.npy", np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32))
    rc, stdout, err = codax(
        "run", out, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--check", "--json"
    )
    assert rc == 0, err
    res = json.loads(stdout)
    check = res["check"]
    (golden,), (e2e,) = check["golden"], check["end_to_end"]
    assert (golden["reference"], e2e["reference"]) == ("golden", "onnxruntime")
    assert check["ok"] and golden["ok"] and e2e["ok"] is None  # end to end is reported
    assert check["layers"] and all(c["ok"] and c["reference"] == "onnxruntime" for c in check["layers"])
    assert np.load(tmp_path / "y.npy").shape == (1, 8, 8, 8)
    # an existing output directory is refused, and left as it was
    before = sorted(p.name for p in out.iterdir())
    assert_clean_error(
        *codax("compile", model, "--accel", "zcu102-mixed", "-o", out)[::2], "exists", "--force"
    )
    assert sorted(p.name for p in out.iterdir()) == before


def test_bad_inputs(model, tmp_path):
    assert_clean_error(
        *codax("compile", tmp_path / "nope.onnx", "--accel", "tpu-like", "-o", tmp_path / "a")[::2],
        "no such ONNX model file",
    )
    assert_clean_error(
        *codax("compile", model, "--accel", "tpu-lik", "-o", tmp_path / "b")[::2],
        "unknown accelerator 'tpu-lik'",
        "tpu-like",
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntarget: asic\npe_array: {rows: [\n")
    assert_clean_error(*codax("compile", model, "--accel", bad, "-o", tmp_path / "c")[::2], "malformed YAML")
    # a mapping that does not fit the buffers
    maps = tmp_path / "maps.yaml"
    maps.write_text(
        "mappings:\n- layer: conv\n  spatial: {rows: [K, 8], cols: [C, 3]}\n"
        "  tiles: {BUF: {P: 8, Q: 8, R: 3, S: 3}, REG: {R: 3, S: 3}}\n"
    )
    assert_clean_error(
        *codax("compile", model, "--accel", "zcu102-mixed", "--mappings", maps, "-o", tmp_path / "d")[::2],
        "conv",
    )
    for d in "abcd":
        assert not (tmp_path / d).exists()  # nothing half-written
    assert_clean_error(*codax("run", tmp_path / "nothing", "--input", tmp_path / "x.npy")[::2], "no such")


def test_bench_shape_only_model(tmp_path):
    from codax.bench.zigzag_bridge import workload_onnx_path

    rc, out, err = codax(
        "bench", workload_onnx_path("alexnet"), "--accel", "tpu-like", "-o", tmp_path, "--json"
    )
    assert rc == 0, err
    rows = json.loads(out)
    assert rows[0]["accelerator"] == "tpu-like" and rows[0]["layers"] == 8 and rows[0]["fps"] > 0
    assert (tmp_path / "roofline.png").stat().st_size > 1000


def test_compile_analyze_only_shape_only_model(tmp_path):
    from codax.bench.zigzag_bridge import workload_onnx_path

    path = workload_onnx_path("alexnet")
    # a float model: analysed on an accelerator with fp32 MACs
    assert_clean_error(
        *codax("compile", path, "--accel", "zcu102-mixed", "-o", tmp_path / "x")[::2], "weights"
    )
    rc, out, err = codax(
        "compile", path, "--accel", "zcu102-mixed", "--analyze-only", "-o", tmp_path / "y", "--json"
    )
    assert rc == 0, err
    assert json.loads(out)["offloaded_layers"] == 8
    assert (tmp_path / "y" / "mappings.yaml").exists()
