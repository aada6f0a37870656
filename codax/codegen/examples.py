"""Example networks built directly as codax graphs (until the ONNX frontend lands): a ResNet-18-like
int8 network with fused bias/residual/relu epilogues, for tests and benchmarks."""

from __future__ import annotations

import numpy as np

from codax.codegen.params import LayerParams, random_params
from codax.ir import Epilogue, Graph, HostOp, Layer, Precision, conv2d, dense


def resnet18_graph(hw: int = 224, classes: int = 1000, width: int = 64, kind: str = "int") -> Graph:
    """ResNet-18's layer shapes: conv1 7x7/2, maxpool (host), 4 stages of 2 basic blocks (residual add
    and relu fused into the block's second conv), global average pool (host), fc."""
    prec = Precision() if kind == "int" else Precision.float32()
    rq = kind == "int"
    g = Graph("resnet18_like", inputs=("input",), outputs=("logits",))

    def conv(name, x, c_in, c_out, size, k, s, act="relu", res=None) -> tuple[str, int]:
        p = k // 2
        layer = conv2d(
            name, c_in=c_in, c_out=c_out, hw=(size, size), kernel=(k, k), stride=(s, s), pads=(p, p, p, p),
            precision=prec, epilogue=Epilogue(bias=True, activation=act, residual=res, requant=rq),
            inputs=(x,), outputs=(f"{name}_out",), onnx_node=f"/{name}/Conv",
        )  # fmt: skip
        g.add(layer)
        return f"{name}_out", layer.P

    x, size = conv("conv1", "input", 3, width, hw, 7, 2)
    g.add(HostOp("maxpool", "MaxPool", (x,), ("pool_out",), reason="pooling runs on the host"))
    x, size, c = "pool_out", (size + 2 - 3) // 2 + 1, width
    for stage in range(4):
        c_out = width * 2**stage
        for block in range(2):
            s = 2 if (stage > 0 and block == 0) else 1
            name = f"layer{stage + 1}_{block}"
            shortcut = x
            if s != 1 or c != c_out:
                shortcut, _ = conv(f"{name}_down", x, c, c_out, size, 1, s, act=None)
            y, nsize = conv(f"{name}_conv1", x, c, c_out, size, 3, s)
            x, size = conv(f"{name}_conv2", y, c_out, c_out, nsize, 3, 1, res=shortcut)
            c = c_out
    g.add(HostOp("gap", "GlobalAveragePool", (x,), ("gap_out",), reason="pooling runs on the host"))
    fc = dense(
        "fc", c_in=c, c_out=classes, precision=prec, epilogue=Epilogue(bias=True, requant=rq),
        inputs=("gap_out",), outputs=("logits",), onnx_node="/fc/Gemm",
    )  # fmt: skip
    g.add(fc)
    return g


def random_graph_params(graph: Graph, seed: int = 0) -> dict[str, LayerParams]:
    rng = np.random.default_rng(seed)
    return {layer.name: random_params(layer, rng) for layer in graph.layers}


def layer_by_name(graph: Graph, name: str) -> Layer:
    node = graph.nodes[name]
    assert isinstance(node, Layer)
    return node
