"""extract_graph: a codax.ir.Graph from an ONNX model or from an imported / partitioned IRModule."""

from __future__ import annotations

import tvm

from codax.errors import ModelError
from codax.frontend.graph_json import from_json
from codax.frontend.importer import ATTR_GRAPH, ATTR_HOST_LAYERS, ATTR_LAYER, ATTR_LAYER_JSON
from codax.frontend.onnx_graph import VECTOR_KINDS, graph_from_onnx
from codax.frontend.onnx_io import LoadedModel, ModelSource, load_onnx
from codax.ir import Accelerator, Graph, HostOp, Layer


def extract_graph(
    source: ModelSource | LoadedModel | tvm.IRModule,
    shapes: dict[str, list[int]] | None = None,
    accel: Accelerator | None = None,
) -> Graph:
    """Layers (conv / matmul with fused epilogues) and HostOps (with reasons), in execution order.

    From an IRModule the graph is the one import_onnx recorded; if the module was partitioned, layers
    the accelerator cannot run become HostOps with the partition's reason and offloaded layers carry
    the precision/epilogue actually fused. With `accel`, host ops its post-processing unit executes
    get placement "vector".
    """
    if isinstance(source, tvm.IRModule):
        graph = _from_module(source)
    else:
        lm = source if isinstance(source, LoadedModel) else load_onnx(source, shapes)
        graph = graph_from_onnx(lm).graph
    if accel is not None:
        for name, n in list(graph.nodes.items()):
            if isinstance(n, HostOp) and VECTOR_KINDS.get(n.op_type) in accel.host_ops:
                graph.nodes[name] = HostOp(
                    n.name, n.op_type, n.inputs, n.outputs, "vector", n.reason, n.onnx_node
                )
    return graph


def _attr(func, name: str):
    return None if func.attrs is None or name not in func.attrs else func.attrs[name]


def _from_module(mod: tvm.IRModule) -> Graph:
    import json

    from tvm import relax

    main = mod["main"]
    gj = _attr(main, ATTR_GRAPH)
    if gj is None:
        raise ModelError(
            "this IRModule was not created by codax.frontend.import_onnx (no codax.graph attribute)"
        )
    graph = from_json(str(gj)).graph
    hosts = _attr(main, ATTR_HOST_LAYERS)
    if hosts is None:  # imported, not partitioned yet
        return graph
    hosts = json.loads(str(hosts))
    offloaded: dict[str, Layer | None] = {}
    for _, f in mod.functions_items():
        if isinstance(f, relax.Function) and _attr(f, ATTR_LAYER) is not None:
            lj = _attr(f, ATTR_LAYER_JSON)
            offloaded[str(_attr(f, ATTR_LAYER))] = Layer.from_dict(json.loads(str(lj))) if lj else None
    for name, n in list(graph.nodes.items()):
        if not isinstance(n, Layer):
            continue
        if name in offloaded:
            graph.nodes[name] = offloaded[name] or n
        else:
            op = {"conv": "Conv", "matmul": "Gemm"}[n.op]
            reason = hosts.get(name, "not partitioned")
            graph.nodes[name] = HostOp(name, op, n.inputs, n.outputs, "host", reason, n.onnx_node)
    return graph
