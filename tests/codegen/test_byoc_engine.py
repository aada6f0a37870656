"""relax.ext.codax with the HLS kernels: a PyTorch CNN -> ONNX -> codax pipeline -> tvm.compile, where the
offloaded layers run the emitter's C-simulated kernels; checked against ONNX Runtime and the host build."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

from codax.codegen import byoc
from codax.codegen.byoc import MARKER, EngineKernelFactory, build_executable
from codax.codegen.engine import engine_sources
from codax.errors import CodaxError
from codax.frontend import export_torch, import_onnx
from codax.hw import load_accelerator
from codax.passes import pipeline
from codax.passes.attrs import offloaded_layers

ort = pytest.importorskip("onnxruntime")


class SmallCNN(nn.Module):
    """conv-bn-relu, strided conv, depthwise conv, 1x1 conv + residual add + relu, global avg pool, gemm."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU())
        self.pw = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = self.c2(self.c1(x))
        y = torch.relu(self.pw(self.dw(y)) + y)
        return self.fc(y.mean((2, 3)))


@pytest.fixture(scope="module")
def accel():
    a = load_accelerator("zcu102-mixed")  # int8 and fp32 MACs in every PE
    assert a.float_ok
    return a


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory):
    torch.manual_seed(0)
    m = SmallCNN()
    bn = m.c1[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return export_torch(m, torch.randn(1, 3, 16, 16), tmp_path_factory.mktemp("hls") / "cnn.onnx")


def ort_session(path):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_vm(ex, x: np.ndarray) -> np.ndarray:
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def check_engine_calls(factory: EngineKernelFactory, mod, accel) -> None:
    """Every offloaded layer became one call of the accelerator's engine with its mapping's descriptor."""
    from codax.codegen.program import OFFSET

    layers = offloaded_layers(mod)
    made = {k.layer.name: k for k in factory.calls.values()}
    assert set(made) == set(layers)
    sym = engine_sources(accel).entries[accel.engines[0].name]
    for name, k in made.items():
        assert k.mapping == layers[name].mapping
        code = k.source.code
        assert code.startswith(MARKER) and f"codax_byoc::call({sym}, " in code
        assert factory.engine_object in k.source.objects  # the engine compiled once, linked in
        assert k.descriptor[OFFSET["NLOOPS"]] >= 0 and k.descriptor[OFFSET["DIM"] + 2] == layers[name].layer.K


def test_float_cnn_runs_on_the_engine(accel, float_onnx):
    mod = pipeline(accel)(import_onnx(str(float_onnx)))
    assert len(offloaded_layers(mod)) == 5  # c1 (bn folded), strided c2, depthwise, pw + residual, fc
    factory = EngineKernelFactory(accel)
    ex = build_executable(mod, accel, factory=factory)
    check_engine_calls(factory, mod, accel)
    dw = next(k for k in factory.calls.values() if k.layer.name == "/dw/dw.0/Conv")
    assert dw.layer.G == 16 and dw.layer.K == 1
    pw = next(k for k in factory.calls.values() if k.layer.name == "/pw/Conv")
    assert pw.layer.epilogue.residual

    host = tvm.compile(pipeline(accel, offload=False, map_layers=False)(import_onnx(str(float_onnx))), "llvm")
    sess = ort_session(float_onnx)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
        y = run_vm(ex, x)
        want = sess.run(None, {"input": x})[0]
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(y, run_vm(host, x), rtol=1e-4, atol=1e-5)


def test_factory_registration_and_missing_mapping(accel, float_onnx):
    from codax.codegen.byoc import glue

    before = list(glue._FACTORIES)
    with EngineKernelFactory(accel) as f:
        assert glue._FACTORIES[0] is f
    assert glue._FACTORIES == before
    partitioned = pipeline(accel, map_layers=False)(import_onnx(str(float_onnx)))
    with EngineKernelFactory(accel), pytest.raises(CodaxError, match="codax.layer_json"):
        byoc.run_codegen(partitioned)
    # without a factory a layer is an error naming the way to build, never a silent fallback
    with pytest.raises(CodaxError, match="build_executable"):
        byoc.run_codegen(pipeline(accel)(import_onnx(str(float_onnx))))
    # a mapped module supplies layers and mappings for the same partition
    mapped = pipeline(accel)(import_onnx(str(float_onnx)))
    f = EngineKernelFactory(accel, mapped)
    assert set(f.mappings) == set(offloaded_layers(mapped))


def test_qdq_cnn_within_one_lsb(accel, float_onnx, tmp_path):
    pytest.importorskip("onnxruntime.quantization")
    datasets = pytest.importorskip("sklearn.datasets")
    from onnx import load as onnx_load
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    digits = datasets.load_digits().images.astype(np.float32) / 16.0  # [n, 8, 8]
    imgs = ((np.kron(digits, np.ones((2, 2), np.float32))[:, None] - 0.5) * 2).repeat(3, 1)  # [n,3,16,16]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"input": imgs[i : i + 1]} for i in range(64))

        def get_next(self):
            return next(self.it, None)

    qpath = tmp_path / "cnn_qdq.onnx"
    quantize_static(
        str(float_onnx), str(qpath), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    mod = pipeline(accel)(import_onnx(str(qpath)))
    layers = offloaded_layers(mod)
    assert len(layers) == 5 and all(o.layer.precision.kind == "int" for o in layers.values())
    factory = EngineKernelFactory(accel)
    ex = build_executable(mod, accel, factory=factory)
    check_engine_calls(factory, mod, accel)
    assert all(k.params.kind == "int" and not k.params.x_signed for k in factory.calls.values())

    # the output is DequantizeLinear(q): one LSB is its scale
    q = onnx_load(str(qpath))
    inits = {t.name: t for t in q.graph.initializer}
    last = next(n for n in q.graph.node if n.output[0] == q.graph.output[0].name)
    assert last.op_type == "DequantizeLinear"
    from onnx import numpy_helper

    lsb = float(numpy_helper.to_array(inits[last.input[1]]).reshape(-1)[0])
    sess = ort_session(qpath)
    diffs = []
    for i in range(100, 132):
        x = imgs[i : i + 1]
        diffs.append(np.rint(np.abs(run_vm(ex, x) - sess.run(None, {"input": x})[0]) / lsb))
    d = np.concatenate([a.reshape(-1) for a in diffs])
    print(f"QDQ engine vs ORT: {np.mean(d > 0):.2%} of {d.size} outputs differ, max {int(d.max())} LSB")
    assert d.max() <= 1
