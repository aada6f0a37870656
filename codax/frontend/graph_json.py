"""(De)serialising an extracted graph, so an IRModule can carry its ONNX view as a function attribute."""

from __future__ import annotations

import json

from codax.frontend.onnx_graph import OnnxGraph
from codax.ir import Graph, HostOp, Layer


def to_json(og: OnnxGraph) -> str:
    nodes = []
    for n in og.graph.nodes.values():
        if isinstance(n, Layer):
            nodes.append({"kind": "layer", **n.to_dict()})
        else:
            nodes.append(
                {
                    "kind": "host",
                    **{k: (list(v) if isinstance(v, tuple) else v) for k, v in n.__dict__.items()},
                }
            )
    return json.dumps(
        {
            "name": og.graph.name,
            "inputs": list(og.graph.inputs),
            "outputs": list(og.graph.outputs),
            "nodes": nodes,
            "fused": og.fused,
            "keys": og.keys,
            "node_order": og.node_order,
            "op_types": og.op_types,
            "macs": og.macs,
        }
    )


def from_json(text: str) -> OnnxGraph:
    d = json.loads(text)
    g = Graph(name=d["name"], inputs=tuple(d["inputs"]), outputs=tuple(d["outputs"]))
    for n in d["nodes"]:
        kind = n.pop("kind")
        if kind == "layer":
            g.add(Layer.from_dict(n))
        else:
            n["inputs"], n["outputs"] = tuple(n["inputs"]), tuple(n["outputs"])
            g.add(HostOp(**n))
    return OnnxGraph(
        graph=g,
        fused=d["fused"],
        keys=d["keys"],
        node_order=d["node_order"],
        op_types=d["op_types"],
        macs=d["macs"],
    )
