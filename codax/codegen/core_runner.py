"""Layers of a network run on the core engine in C-simulation, for codax.codegen.runtime.run_graph: each
layer compiled once (codax.codegen.core_compile) and run on its tensors under the token scheduler
(codax.codegen.core_sim), its output returned in the layer's own layout, as the golden model returns it.
The cycles of every run are kept per layer."""

from __future__ import annotations

import numpy as np

from codax.codegen.core import CoreShape
from codax.codegen.core_compile import CoreLayer, compile_layer
from codax.codegen.core_sim import Engine, output
from codax.codegen.golden import as_nchw, as_nchw_out, from_nchw
from codax.codegen.params import LayerParams
from codax.errors import UnsupportedError
from codax.ir import Layer


class CoreLayerRunner:
    """`runner(layer, params, x, residual, weight) -> y` (run_graph's layer_runner)."""

    def __init__(self, shape: CoreShape):
        self.engine = Engine(shape)
        self.cycles: dict[str, int] = {}

    def __call__(self, layer: Layer, params: LayerParams, x, residual=None, weight=None) -> np.ndarray:
        if weight is not None or layer.runtime_weight:
            raise UnsupportedError(f"layer {layer.name}: a run-time weight tensor; the core loads constants")
        core_layer = CoreLayer.of(layer, params)
        xin = as_nchw(layer, x)[0]
        res = None if residual is None else as_nchw_out(layer, residual)[0]
        prog = compile_layer(self.engine.shape, core_layer, x=xin, residual=res)
        run = self.engine.run(prog)
        self.cycles[layer.name] = run.cycles
        y = output(prog, run).astype(params.y_dtype)
        return from_nchw(layer, y.reshape(1, layer.G * layer.K, layer.P, layer.Q))
