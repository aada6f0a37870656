"""annotate: the mapping summary and the predicted cost as attributes, visible in `mod.script()`."""

from __future__ import annotations

import json

import tvm

from codax.ir import Accelerator, Layer, Mapping
from codax.passes import attrs as A
from codax.passes.relax_util import attr


@tvm.transform.module_pass(opt_level=0, name="codax.Annotate")
class Annotate:
    """Add codax.mapping_summary, codax.cycles and codax.energy_pj to every mapped layer."""

    def __init__(self, accel: Accelerator):
        self.accel = accel

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        from codax.hw.evaluate import evaluate

        for gv, f in list(A.offloaded_functions(mod)):
            mj = attr(f, A.MAPPING)
            if mj is None:
                continue
            m = Mapping.from_dict(json.loads(str(mj)))
            new = {A.MAPPING_SUMMARY: m.summary()}
            if attr(f, A.CYCLES) is None:
                layer = Layer.from_dict(json.loads(str(attr(f, A.LAYER_JSON))))
                cost = evaluate(layer, self.accel, m)
                new.update({A.CYCLES: float(cost.cycles), A.ENERGY: float(cost.energy_pj)})
            mod[gv] = f.with_attrs(new)
        return mod
