"""Names of the function attributes codax passes attach, and readers for downstream code.

On every offloaded function (the outer function with `Codegen = "codax"`, the one RunCodegen hands
to `relax.ext.codax`; its inner `Composite` function carries the first three as well):
  codax.layer          ONNX node name of the layer (str)
  codax.key            weight fingerprint linking it to the ONNX graph (str)
  codax.epilogue       JSON of what the pattern fused (bias/activation/clip/residual/requant)
  codax.layer_json     JSON of the full ir.Layer (set by map)
  codax.mapping        JSON of the ir.Mapping (set by map)
  codax.mapping_source "mappings.yaml" | "mapper" (set by map)
  codax.mapping_summary, codax.cycles, codax.energy_pj  (set by annotate)
On `main`: codax.graph / codax.layer_keys / codax.missing_weights (set by import_onnx) and
codax.host_layers (JSON {layer: reason}, set by partition).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import tvm

from codax.frontend.importer import ATTR_HOST_LAYERS, ATTR_LAYER, ATTR_LAYER_JSON
from codax.ir import Layer, Mapping
from codax.passes.relax_util import attr, relax_functions

CODEGEN = "codax"
LAYER = ATTR_LAYER
KEY = "codax.key"
EPILOGUE = "codax.epilogue"
LAYER_JSON = ATTR_LAYER_JSON
MAPPING = "codax.mapping"
MAPPING_SOURCE = "codax.mapping_source"
MAPPING_SUMMARY = "codax.mapping_summary"
CYCLES = "codax.cycles"
ENERGY = "codax.energy_pj"
HOST_LAYERS = ATTR_HOST_LAYERS


@dataclass
class OffloadedLayer:
    """What a downstream codegen needs about one offloaded function."""

    function: str  # the global function name in the module
    layer: Layer
    mapping: Mapping | None
    mapping_source: str | None
    cycles: float | None
    energy_pj: float | None


def offloaded_functions(mod: tvm.IRModule):
    """(GlobalVar, Function) of every function offloaded to codax, in module order."""
    for gv, f in relax_functions(mod):
        if attr(f, "Codegen") == CODEGEN or (attr(f, "Composite") and attr(f, LAYER) is not None):
            yield gv, f


def offloaded_layers(mod: tvm.IRModule) -> dict[str, OffloadedLayer]:
    """{layer name: OffloadedLayer} decoded from the attributes (after the map/annotate passes)."""
    out = {}
    for gv, f in offloaded_functions(mod):
        lj, mj = attr(f, LAYER_JSON), attr(f, MAPPING)
        if lj is None:
            continue
        layer = Layer.from_dict(json.loads(str(lj)))
        cyc, en = attr(f, CYCLES), attr(f, ENERGY)
        out[layer.name] = OffloadedLayer(
            function=gv.name_hint,
            layer=layer,
            mapping=Mapping.from_dict(json.loads(str(mj))) if mj is not None else None,
            mapping_source=None if attr(f, MAPPING_SOURCE) is None else str(attr(f, MAPPING_SOURCE)),
            cycles=None if cyc is None else float(cyc),
            energy_pj=None if en is None else float(en),
        )
    return out
