"""The analysis precision of float layers, tensor sizes for the schedule, import errors naming the node."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from codax.errors import ModelError
from codax.frontend import import_onnx, load_onnx
from codax.frontend.tensor_sizes import tensor_bytes
from codax.hw import load_accelerator
from codax.hw.precision import analysis_precision, graph_at
from codax.ir import Graph, Precision, conv2d
from tests.passes.helpers import float_accel


def test_analysis_precision():
    assert analysis_precision(float_accel()) is None  # float: true
    assert analysis_precision(load_accelerator("eyeriss-like")) == Precision(8, 8, 32, 8)  # 16 and 8
    d = load_accelerator("zc706-int8").to_dict()
    d["precision"].update(weight=[4], act=[6, 4])
    from codax.ir import Accelerator

    assert analysis_precision(Accelerator.from_dict(d)) == Precision(4, 6, 32, 6)
    g = Graph(name="g")
    g.add(conv2d("a", c_in=3, c_out=4, hw=(6, 6), precision=Precision.float32()))
    g.add(conv2d("b", c_in=4, c_out=4, hw=(6, 6), precision=Precision(4, 4, 32, 8)))
    at = graph_at(g, load_accelerator("tpu-like"))
    assert at.nodes["a"].precision == Precision() and at.nodes["b"].precision == Precision(4, 4, 32, 8)


def test_tensor_sizes_cover_scalars_and_shapes_inference_cannot_follow():
    # Range with a computed limit: ONNX shape inference leaves its length unknown
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ReduceSum", ["s"], ["n"], keepdims=0),
        helper.make_node("Range", ["zero", "n", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Mul", ["rf", "half"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
            numpy_helper.from_array(np.array(1, np.int64), "one"),
            numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        ],
    )
    lm = load_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    sizes = tensor_bytes(lm.model)
    assert sizes["n"] == 8 and sizes["half"] == 4  # scalars: one element
    assert sizes["r"] == 5 * 8 and sizes["y"] == 5 * 4  # measured: range(0, 2 + 3)


def test_import_failure_names_the_onnx_node():
    # output_padding >= stride: ONNX allows it under dilation, TVM's importer does not
    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w")
    node = helper.make_node(
        "ConvTranspose",
        ["x", "w"],
        ["y"],
        name="/dec/up",
        strides=[1, 1],
        dilations=[2, 2],
        output_padding=[1, 1],
    )
    g = helper.make_graph(
        [node],
        "m",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 3, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [w],
    )
    with pytest.raises(
        ModelError, match=r"at node /dec/up \(ConvTranspose\).*output padding.*change the node"
    ):
        import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
