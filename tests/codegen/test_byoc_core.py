"""relax.ext.codax on the GEMM core: a QDQ CNN (ONNX Runtime's quantize_static: uint8 activations with zero
points, per-channel int8 weights) -> codax pipeline -> tvm.compile with the core's kernel factory, every
offloaded layer one program of LOAD / GEMM / STORE instructions run by the core's C-simulation inside the
executable. Its outputs equal the golden network's (numpy layers, ONNX's reference evaluator for host ops)
bit for bit, in this process and from the exported library; the layers it ran include a strided and a
depthwise convolution and a dense layer, and the residual connection's add runs on the host between
core layers (the integer patterns fuse no residual). The adapters' runtime on its own (the blocked
layout, the scheduler) runs layers of tests/codegen/test_core_engine.py -- fused residuals, depthwise,
unsigned inputs, 4- and 6-bit lanes -- equal to the golden layer."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

from codax.codegen.byoc import MARKER, CoreKernelFactory, build_core_executable
from codax.codegen.byoc.core_kernels import EXPORTED, RUNTIME, RUNTIME_UNIT
from codax.codegen.byoc.core_kernels import MARKER as CORE_MARKER
from codax.codegen.core import core_shape
from codax.codegen.core_compile import CoreLayer, compile_layer
from codax.codegen.core_isa import program_bytes
from codax.codegen.core_load import vector_beats
from codax.codegen.core_sim import engine_sources
from codax.codegen.csim import compile_cached
from codax.codegen.golden_net import golden_network
from codax.codegen.params import from_onnx
from codax.errors import UnsupportedError
from codax.frontend import export_torch, extract_graph, import_onnx, load_onnx
from codax.hw.library import load_accelerator
from codax.passes import pipeline
from codax.passes.attrs import offloaded_layers

ACCEL = "zc706-int8"
SHAPE = (1, 3, 16, 16)


class ResidualCNN(nn.Module):
    """conv-relu, strided conv, depthwise conv, 1x1 conv + residual add + relu, global avg pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(8, 40, 3, stride=2, padding=1), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(40, 40, 3, padding=1, groups=40), nn.ReLU())
        self.pw = nn.Conv2d(40, 40, 1)
        self.fc = nn.Linear(40, 10)

    def forward(self, x):
        y = self.c2(self.c1(x))
        y = torch.relu(self.pw(self.dw(y)) + y)
        return self.fc(y.mean((2, 3)))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tests.test_end_to_end import _quantize

    d = tmp_path_factory.mktemp("byoc_core")
    torch.manual_seed(0)
    path = _quantize(export_torch(ResidualCNN(), torch.randn(SHAPE), d / "f.onnx"), d / "q.onnx", SHAPE)
    accel = load_accelerator(ACCEL)
    mod = pipeline(accel)(import_onnx(path))
    model = load_onnx(path).model
    graph = extract_graph(mod, accel=accel)
    params = {layer.name: from_onnx(model, layer) for layer in graph.layers}
    factory = CoreKernelFactory(accel, params=params)
    ex = build_core_executable(mod, accel, factory=factory)
    so = d / "model.so"
    ex.export_library(str(so))
    return ex, so, factory, mod, model, graph, params


def _golden(model, graph, params, x):
    env = golden_network(model, graph, params, {model.graph.input[0].name: x})
    return np.asarray(env[model.graph.output[0].name])


def test_every_layer_is_a_core_program(built):
    _, _, factory, mod, _, graph, _ = built
    made = {c.layer.name: c for c in factory.calls.values()}
    assert set(made) == set(offloaded_layers(mod))
    for c in made.values():
        assert c.source.code.startswith(CORE_MARKER) and MARKER not in c.source.code
        assert c.program.insns and c.program.regions["output"][1] > 0
    kinds = {
        "strided": any(c.program.layer.conv.stride == (2, 2) for c in made.values()),
        "depthwise": any(c.program.layer.conv.groups == 40 for c in made.values()),
        "residual add on the host": any("add" in h.op_type.lower() for h in graph.host_ops),
        "dense": any(c.layer.op in ("matmul", "dense", "gemm") for c in made.values()),
    }
    assert all(kinds.values()), kinds


@pytest.mark.parametrize("seed", [0, 1])
def test_outputs_equal_the_golden_network(built, seed):
    ex, _, _, _, model, graph, params = built
    x = np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)
    got = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    want = _golden(model, graph, params, x)
    assert got.shape == want.shape and np.abs(want).max() > 0
    np.testing.assert_array_equal(got, want)


def test_exported_library_runs_alone(built):
    """The exported library, loaded as a module, gives the golden outputs, twice in a row (each call starts
    from the layer's own DRAM image)."""
    _, so, _, _, model, graph, params = built
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(so)), tvm.cpu())
    x = np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32)
    want = _golden(model, graph, params, x)
    for _ in range(2):
        np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), want)


def test_refuses_an_accelerator_the_core_cannot_be():
    with pytest.raises(UnsupportedError, match="eyeriss-like"):
        CoreKernelFactory(load_accelerator("eyeriss-like"))


RUNTIME_CASES = {
    "3x3 residual": dict(c=32, k=32, hw=(6, 6), kernel=(3, 3), stride=(1, 1), pad=1, residual=True),
    "3x3 s2 depthwise, unsigned": dict(
        c=40, k=40, hw=(9, 9), kernel=(3, 3), stride=(2, 2), pad=1, groups=40, signed_x=False
    ),
    "7x7 s2 stem, unsigned input": dict(
        c=3, k=20, hw=(16, 16), kernel=(7, 7), stride=(2, 2), pad=3, signed_x=False
    ),
    "1x1 residual, 4-bit": dict(
        c=40, k=24, hw=(5, 5), kernel=(1, 1), stride=(1, 1), pad=0, residual=True, bits=(4, 4, 4)
    ),
    "3x3, 6-bit lanes": dict(c=20, k=36, hw=(7, 5), kernel=(3, 3), stride=(1, 1), pad=1, bits=(6, 6, 8)),
}


@pytest.fixture(scope="module")
def runtime():
    """The core's C-simulation and the adapters' runtime as a shared library exporting the entries."""
    shape = core_shape(load_accelerator(ACCEL))
    lib = ctypes.CDLL(
        str(compile_cached({**engine_sources(shape), RUNTIME_UNIT: RUNTIME}, flags=(EXPORTED,)))
    )
    return shape, lib


@pytest.mark.parametrize("name", list(RUNTIME_CASES))
def test_runtime_runs_a_layer_as_the_golden_model(runtime, name):
    """What an adapter does -- the layer's image copied, input and residual put into their regions, the
    program run, the output region read back -- gives the golden layer (numpy, ONNX Runtime's float32
    requantization) bit for bit, through int8 / uint8 / int32 tensors."""
    from tests.codegen.test_core_engine import _case

    shape, lib = runtime
    layer, params, x, res, want = _case(**RUNTIME_CASES[name], seed=3)
    cl = CoreLayer.of(layer, params)
    prog = compile_layer(shape, cl)  # the image holds zeros where the tensors go, as an adapter's
    bb = shape.beat_bits // 8
    dram = ctypes.create_string_buffer(bytes(prog.dram), len(prog.dram))

    def put(region, t, dtype, bits):
        a = np.ascontiguousarray(t, dtype)
        elem = a.itemsize * (1 if a.dtype.kind == "u" else -1)
        c, h, w = a.shape
        lib.codax_core_byoc_put(
            ctypes.byref(dram, prog.regions[region][0] * bb), a.ctypes.data_as(ctypes.c_void_p), elem,
            ctypes.c_long(c), ctypes.c_long(h), ctypes.c_long(w), bits, shape.cols,
            ctypes.c_long(vector_beats(shape, bits) * bb),
        )  # fmt: skip

    put("input", x, np.uint8 if not params.x_signed else np.int8, cl.x_bits)
    if res is not None:
        put("residual", res, np.int32, cl.r_bits)
    words = program_bytes(prog.insns)
    lib.codax_core_byoc_run(dram, ctypes.c_long(len(prog.dram) // bb), words, ctypes.c_long(len(prog.insns)))
    got = np.zeros((cl.k, layer.P, layer.Q), params.y_dtype)
    lib.codax_core_byoc_get(
        ctypes.byref(dram, prog.regions["output"][0] * bb), got.ctypes.data_as(ctypes.c_void_p),
        got.itemsize * (1 if got.dtype.kind == "u" else -1), ctypes.c_long(cl.k), ctypes.c_long(layer.P),
        ctypes.c_long(layer.Q), cl.y_bits, int(cl.y_signed), shape.cols,
        ctypes.c_long(vector_beats(shape, cl.y_bits) * bb),
    )  # fmt: skip
    np.testing.assert_array_equal(got, want)
