"""The whole compiler: ONNX -> codax passes -> HLS kernels in C-simulation inside a tvm.compile'd
executable, against ONNX Runtime (reference semantics) and against the same module without offload."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from codax.flow import compile_model, reference_outputs, run_compiled
from codax.frontend import export_torch
from codax.frontend.zoo import mobilenet_v2, resnet18

ACCEL = "zcu102-mixed"  # supports fp32 and int8 layers


def _digits_images(n: int, shape) -> list[np.ndarray]:
    """Real images for calibration: scikit-learn digits, resized to the model's input."""
    from sklearn.datasets import load_digits

    imgs = torch.from_numpy(load_digits().images[:n, None].astype(np.float32) / 16.0)
    imgs = torch.nn.functional.interpolate(imgs, size=shape[2:], mode="bilinear").repeat(1, shape[1], 1, 1)
    return [imgs[i : i + 1].numpy() for i in range(n)]


def _quantize(float_path, out_path, shape):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"input": x} for x in _digits_images(16, shape))

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    return out_path


def _unoffloaded(model_path, x):
    """The same model through TVM alone (no codax passes): the host-only reference build."""
    import tvm
    from tvm import relax

    from codax.frontend import import_onnx

    mod = import_onnx(model_path)
    ex = tvm.compile(mod, target="llvm")
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


@pytest.mark.parametrize("net", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("quantized", [False, True])
def test_network_end_to_end(tmp_path, net, quantized):
    shape = (1, 3, 32, 32)
    model = resnet18(num_classes=10, width=8) if net == "resnet18" else mobilenet_v2(10, width_mult=0.25)
    path = export_torch(model, torch.randn(shape), tmp_path / "float.onnx")
    if quantized:
        path = _quantize(path, tmp_path / "qdq.onnx", shape)
    res = compile_model(path, ACCEL, tmp_path / "out")
    conv_gemm = [n for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(res.report.layers) == len(conv_gemm)  # every conv / dense is offloaded
    x = _digits_images(3, shape)[2]
    got = run_compiled(res.out_dir, x)[0]
    ref = reference_outputs(res.out_dir, x)[0]
    host = _unoffloaded(path, x)
    if quantized:
        # outputs are dequantized: one LSB of the last quantizer at most
        scale = numpy_helper.to_array(
            next(i for i in onnx.load(str(path)).graph.initializer if i.name.endswith("output_scale"))
        )
        lsb = float(np.max(np.abs(got - ref)) / scale)
        print(f"{net} int8: max {lsb:.2f} LSB vs ONNX Runtime, mismatch rate {np.mean(got != ref):.2%}")
        assert lsb <= 1.0 + 1e-6
        assert np.max(np.abs(got - host)) / scale <= 1.0 + 1e-6
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got, host, rtol=1e-4, atol=1e-5)


def _user_model(path):
    """A model unlike the fixtures: two conv branches concatenated, an Erf (no accelerator support),
    max pooling, and a Gemm head with transB and a bias."""
    rng = np.random.default_rng(7)

    def init(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="branch_a", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "wb"], ["b"], name="branch_b", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["b"], ["br"], name="relu_b"),
        helper.make_node("Concat", ["a", "br"], ["cat"], name="concat", axis=1),
        helper.make_node("Erf", ["cat"], ["e"], name="erf"),
        helper.make_node("MaxPool", ["e"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], name="head", transB=1),
    ]
    inits = [
        init("wa", 6, 3, 3, 3),
        init("ba", 6),
        init("wb", 4, 3, 1, 1),
        init("wg", 5, 10 * 4 * 4),
        init("bg", 5),
    ]
    g = helper.make_graph(
        nodes,
        "user",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 5])],
        inits,
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_user_model_with_concat_unsupported_op_and_gemm_head(tmp_path):
    path = _user_model(tmp_path / "user.onnx")
    res = compile_model(path, ACCEL, tmp_path / "out")
    placement = {n.node: n.placement for n in res.report.nodes}
    assert placement["erf"] == "host" and placement["concat"] != "accelerator"
    assert {r.layer for r in res.report.layers} == {"branch_a", "branch_b", "head"}
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(
        run_compiled(res.out_dir, x)[0], reference_outputs(res.out_dir, x)[0], rtol=1e-4, atol=1e-5
    )
