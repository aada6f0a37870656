"""The golden model of a whole compiled network: what the accelerator and the host compute together.

Accelerator layers run through the numpy golden model (`codax.codegen.golden`, the accelerator's
semantics, bit-exact with the C-simulation); every host op runs as its own ONNX node in ONNX's
reference evaluator (`onnx.reference`), on exactly the tensors the layers produced. A difference
between this and the compiled executable is therefore a difference in the accelerator's layers or
in the host's execution of an ONNX op, never the float-vs-integer rounding that separates a QDQ
model's float reference (ONNX Runtime) from its integer pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from codax.codegen.params import LayerParams
from codax.codegen.runtime import run_graph
from codax.errors import ModelError
from codax.frontend.conv_transpose import node_geometry, zero_insert
from codax.ir import Graph, HostOp, Layer

# onnx.reference implements QuantizeLinear/DequantizeLinear from opset 19 only; their 8-bit semantics
# (per tensor or per axis, round half to even, saturate) are the same since opset 13
_QDQ_OPSET = 21


def _node_fn(node: onnx.NodeProto, opset: list) -> Callable:
    undefined = onnx.TensorProto.UNDEFINED
    if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        opset = [o for o in opset if o.domain not in ("", "ai.onnx")] + [
            onnx.helper.make_opsetid("", _QDQ_OPSET)
        ]
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            [node],
            "host_op",
            [onnx.helper.make_tensor_value_info(i, undefined, None) for i in node.input if i],
            [onnx.helper.make_tensor_value_info(o, undefined, None) for o in node.output],
        ),
        opset_imports=opset,
    )
    ev = ReferenceEvaluator(model)
    names = [i for i in node.input if i]

    def run(*xs):
        outs = ev.run(None, dict(zip(names, xs)))
        return outs[0] if len(outs) == 1 else tuple(outs)  # Split and the like: every output

    return run


def golden_network(
    model: onnx.ModelProto,
    graph: Graph,
    params: dict[str, LayerParams],
    inputs: dict[str, np.ndarray],
    layer_runner: Callable | None = None,
) -> dict[str, np.ndarray]:
    """Every tensor of `graph` (built from `model` by the codax passes) by name, accelerator layers
    through the golden model (or `layer_runner`, run_graph's: an engine's C-simulation on the same
    host ops) and host ops through ONNX's reference evaluator."""
    nodes = {n.name: n for n in model.graph.node}
    opset = list(model.opset_import)
    host_fns = {}
    for h in graph.host_ops:
        node = nodes.get(h.onnx_node or h.name)
        if node is None:
            raise ModelError(f"host op {h.name} ({h.op_type}): no ONNX node of that name in the model")
        host_fns[h.name] = _node_fn(node, opset)
    env = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            env[n.output[0]] = _node_fn(n, opset)()
    env.update(inputs)
    shapes = {
        vi.name: tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
        if all(d.dim_value > 0 for d in vi.type.tensor_type.shape.dim)
    }
    graph = _with_zero_insertion(graph, nodes, shapes, params, host_fns)
    return run_graph(
        graph, params, env, host_fns=host_fns, csim=False, shapes=shapes, layer_runner=layer_runner
    )


def _with_zero_insertion(graph: Graph, nodes: dict, shapes: dict, params: dict, host_fns: dict) -> Graph:
    """A ConvTranspose layer convolves its zero-inserted input (codax.frontend.conv_transpose): the
    host's insertion runs as a host op before it."""
    out = Graph(name=graph.name, inputs=graph.inputs, outputs=graph.outputs)
    for n in graph.nodes.values():
        onnx_node = nodes.get(n.onnx_node) if isinstance(n, Layer) else None
        if onnx_node is not None and onnx_node.op_type == "ConvTranspose":
            x, inserted = n.inputs[0], f"{n.name}/zero_inserted"
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in onnx_node.attribute}
            geo = node_geometry(attrs, shapes[x][2:], (n.R, n.S))
            host_fns[f"{n.name}/zero_insert"] = partial(zero_insert, g=geo, fill=params[n.name].x_zero_point)
            out.add(HostOp(f"{n.name}/zero_insert", "ZeroInsert", (x,), (inserted,)))
            n = n.with_(inputs=(inserted, *n.inputs[1:]))
        out.add(n)
    return out
