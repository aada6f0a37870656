"""Run a mapped graph: accelerator layers in C-simulation (or the numpy golden model), host ops in numpy.

This is the host side of the runtime schedule in Python: nodes run in the schedule's order, tensors
are passed by name. Host ops without attributes (Add, Relu, GlobalAveragePool, Flatten, Concat on
channels) have numpy defaults; others (pooling windows, reshapes) come from `host_fns`
{op name or op_type: fn(*inputs) -> output}, e.g. built by the frontend from the ONNX attributes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from codax.codegen.golden import golden_layer
from codax.codegen.params import LayerParams
from codax.errors import UnsupportedError
from codax.ir import Accelerator, Graph, HostOp, Layer, Mapping

HOST_DEFAULTS: dict[str, Callable] = {
    "Add": lambda a, b: a + b,
    "Relu": lambda a: np.maximum(a, 0),
    "GlobalAveragePool": lambda a: a.mean(axis=(2, 3), keepdims=True).astype(a.dtype),
    "Flatten": lambda a: a.reshape(a.shape[0], -1),
    "Identity": lambda a: a,
    "Concat": lambda *xs: np.concatenate(xs, axis=1),
}


def run_graph(
    graph: Graph,
    params: dict[str, LayerParams],
    inputs: dict[str, np.ndarray],
    accel: Accelerator | None = None,
    mappings: dict[str, Mapping] | None = None,
    host_fns: dict[str, Callable] | None = None,
    csim: bool = True,
    shapes: dict[str, tuple[int, ...]] | None = None,
    layer_runner: Callable | None = None,
) -> dict[str, np.ndarray]:
    """Every tensor of the graph by name. With `csim` (needs accel and mappings) the layers run as
    compiled kernels; otherwise through the golden model, which defines the same numbers. `shapes`
    gives layer outputs their model shapes (a Conv1d's [N, K, W], a token matmul's [B, T, K]).
    `layer_runner(layer, params, x, residual, weight) -> y` runs the layers instead (e.g. the core
    engine's C-simulation, codax.codegen.core_runner)."""
    env = dict(inputs)
    fns = {**HOST_DEFAULTS, **(host_fns or {})}
    kernels = {}
    for name in graph.topological_order():
        node = graph.nodes[name]
        if isinstance(node, Layer):
            x = env[node.inputs[0]]
            res = env[node.epilogue.residual] if node.epilogue.residual else None
            wt = env[node.inputs[1]] if node.runtime_weight else None  # attention's K^T / V
            if layer_runner is not None:
                y = layer_runner(node, params[node.name], x, res, wt)
            elif csim:
                from codax.codegen.csim import LayerKernel

                if node.name not in kernels:
                    kernels[node.name] = LayerKernel(node, accel, mappings[node.name])
                y, _ = kernels[node.name](params[node.name], x, res, wt)
            else:
                y = golden_layer(node, params[node.name], x, res, wt)
            env[node.outputs[0]] = y.reshape(shapes.get(node.outputs[0], y.shape)) if shapes else y
        else:
            assert isinstance(node, HostOp)
            fn = fns.get(node.name) or fns.get(node.op_type)
            if fn is None:
                raise UnsupportedError(
                    f"host op {node.name} ({node.op_type}): no numpy implementation; pass host_fns="
                    f"{{{node.name!r}: fn}}"
                )
            out = fn(*[env[t] for t in node.inputs])
            env.update(zip(node.outputs, out if isinstance(out, tuple) else (out,)))
    return env
