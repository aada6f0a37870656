"""Single-layer ONNX models for the codegen tests: float Conv/Gemm built with onnx.helper, and their
QDQ versions from onnxruntime.quantization.quantize_static (per-tensor or per-channel)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_model(rng, c_in, c_out, hw, k, stride=1, pad=0, dil=1, group=1, relu=False, bias=True):
    w = (rng.standard_normal((c_out, c_in // group, k, k)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(c_out) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if bias else [])
    nodes = [
        helper.make_node(
            "Conv", ["x", "w"] + (["b"] if bias else []), ["conv_out" if relu else "y"], name="conv0",
            strides=[stride, stride], pads=[pad] * 4, dilations=[dil, dil], group=group,
        )
    ]  # fmt: skip
    if relu:
        nodes.append(helper.make_node("Relu", ["conv_out"], ["y"], name="relu0"))
    h = (hw + 2 * pad - dil * (k - 1) - 1) // stride + 1
    g = helper.make_graph(
        nodes, "single", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c_out, h, h])], inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def gemm_model(rng, c_in, c_out):
    w = (rng.standard_normal((c_out, c_in)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(c_out) * 0.1).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc0", transB=1)], "single",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c_out])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def quantize(model, calib: list[np.ndarray], tmp_path, per_channel=False):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, src)
    quantize_static(
        str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return onnx.load(dst)


def ort_run(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]
