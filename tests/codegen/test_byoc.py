"""BYOC codegen ``relax.ext.codax``: offloaded layers run as g++-compiled kernels inside a TVM executable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import tvm
from torch import nn
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx
from tvm.script import ir as I
from tvm.script import relax as R

from codax.codegen import byoc
from codax.errors import UnsupportedError
from tests.codegen.byoc_reference import partition_for_codax_minimal, reference_kernel


@pytest.fixture(autouse=True, scope="module")
def reference_kernels():
    """These tests exercise the BYOC glue on its own: layers get the plain reference kernel."""
    byoc.register(reference_kernel)
    yield
    byoc.unregister(reference_kernel)


class SmallCNN(nn.Module):
    """conv-relu, grouped strided conv, 1x1 conv with a host-side residual add, relu, gemm."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
        self.c3 = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        y = self.c2(torch.relu(self.c1(x)))
        y = torch.relu(y + self.c3(y))
        return self.fc(torch.flatten(y, 1))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return {"cache_dir": str(tmp_path_factory.mktemp("byoc-cache"))}


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """(Relax module from ONNX, input, ONNX Runtime output, TVM CPU-only output)."""
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("onnx") / "cnn.onnx")
    x = torch.randn(1, 3, 8, 8)
    torch.onnx.export(SmallCNN().eval(), (x,), path, opset_version=17, dynamo=False, input_names=["x"])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    x = x.numpy()
    ref = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    mod = from_onnx(onnx.load(path), keep_params_in_input=False)
    host = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())["main"](tvm.runtime.tensor(x))
    return mod, x, ref, host.numpy()


def run(ex, x: np.ndarray) -> np.ndarray:
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


@pytest.mark.parametrize(
    "partition, n_calls",
    [({}, 4), ({"bind_constants": False}, 4), ({"merge": True}, 2)],
    ids=["per-layer", "weights-as-args", "merged"],
)
def test_offloaded_cnn_matches_onnxruntime_and_host(cnn, cache, partition, n_calls):
    mod, x, ref, host = cnn
    lowered = byoc.run_codegen(partition_for_codax_minimal(mod, **partition), cache)
    calls = byoc.offloaded_calls(lowered)
    assert len(calls) == n_calls and all(c.endswith("_codax") for c in calls)
    assert len(lowered.attrs["external_mods"]) == n_calls
    assert not [gv for gv, f in lowered.functions.items() if f.attrs and "Codegen" in f.attrs]
    assert "const_name_to_constant" not in lowered.attrs  # baked weights are not stored twice
    out = run(tvm.compile(lowered, target="llvm"), x)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out, host, rtol=1e-4, atol=1e-5)


def test_export_library_loads_in_fresh_process(cnn, cache, tmp_path):
    mod, x, ref, _ = cnn
    ex = byoc.build(partition_for_codax_minimal(mod), options=cache)
    expected = run(ex, x)
    lib = tmp_path / "cnn.so"
    ex.export_library(str(lib))
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        """
        import sys, numpy as np, tvm
        from tvm import relax
        vm = relax.VirtualMachine(tvm.runtime.load_module(sys.argv[1]), tvm.cpu())
        np.save(sys.argv[3], vm["main"](tvm.runtime.tensor(np.load(sys.argv[2]))).numpy())
        assert "codax" not in sys.modules  # the .so is self-contained
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(lib), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    np.testing.assert_allclose(expected, ref, rtol=1e-4, atol=1e-5)


def test_registered_factory_replaces_reference_kernel(cnn, cache):
    """A factory sees each layer's spec; its kernel (not TVM's) computes the layer; None declines."""
    mod, x, _, host = cnn
    seen: list[byoc.LayerSpec] = []

    def fill_dense(spec: byoc.LayerSpec):
        seen.append(spec)
        if not spec.composite.startswith("codax.dense"):
            return None
        fill = f"for (int i = 0; i < {spec.output.size}; ++i) out[i] = 7.0f;"
        return f"{spec.prototype()} {{\n  {fill}\n  return 0;\n}}\n"

    byoc.register(fill_dense)
    try:
        out = run(byoc.build(partition_for_codax_minimal(mod), options=cache), x)
    finally:
        byoc.unregister(fill_dense)
    assert sorted(s.composite for s in seen) == [
        "codax.conv2d_bias",
        "codax.conv2d_bias",
        "codax.conv2d_bias_relu",
        "codax.dense_bias",
    ]
    dense = next(s for s in seen if s.composite == "codax.dense_bias")
    assert dense.params[0].shape == (1, 128) and dense.output.shape == (1, 10)
    assert [v.shape for _, v in dense.constants.values()] == [(128, 10), (10,)]
    np.testing.assert_array_equal(out, np.full_like(host, 7.0))


def test_int8_conv_is_bit_exact(cache):
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (6, 4, 3, 3), dtype=np.int8)
    b = rng.integers(-1000, 1000, (1, 6, 1, 1), dtype=np.int32)

    @I.ir_module
    class Quant:
        @R.function
        def main(x: R.Tensor((1, 4, 7, 7), "int8")) -> R.Tensor((1, 6, 4, 4), "int32"):
            with R.dataflow():
                y = R.nn.conv2d(x, R.const(w), strides=2, padding=1, out_dtype="int32")
                z = R.nn.relu(R.add(y, R.const(b)))
                R.output(z)
            return z

    lowered = byoc.run_codegen(partition_for_codax_minimal(Quant), cache)
    assert len(byoc.offloaded_calls(lowered)) == 1
    x = rng.integers(-128, 128, (1, 4, 7, 7), dtype=np.int8)
    out = run(tvm.compile(lowered, target="llvm"), x)
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    golden = np.maximum(np.einsum("ncpqrs,kcrs->nkpq", patches, w.astype(np.int64)) + b, 0)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, golden)


def test_unsupported_layer_names_the_problem():
    @I.ir_module
    class Nhwc:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 4), "float32")) -> R.Tensor((1, 6, 6, 8), "float32"):
            with R.dataflow():
                w = R.const(np.ones((8, 4, 3, 3), "float32"))
                y = R.nn.conv2d(x, w, padding=1, data_layout="NHWC", out_layout="NHWC")
                R.output(y)
            return y

    with pytest.raises(UnsupportedError, match="conv2d layouts .*NHWC.*ConvertLayout"):
        byoc.run_codegen(partition_for_codax_minimal(Nhwc))


def test_kernel_checks_its_arguments(cnn, cache):
    mod, *_ = cnn
    ex = byoc.build(partition_for_codax_minimal(mod), options=cache)
    fn = ex.jit().get_function("fused_relax_matmul_relax_add_codax", query_imports=True)
    out = tvm.runtime.tensor(np.zeros((1, 10), "float32"))
    with pytest.raises(ValueError, match=r"argument 0 has shape \(1,127\), expected \(1,128\)"):
        fn(tvm.runtime.tensor(np.zeros((1, 127), "float32")), out)
    with pytest.raises(ValueError, match="wrong dtype"):
        fn(tvm.runtime.tensor(np.zeros((1, 128), "float64")), out)
