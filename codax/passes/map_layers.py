"""map: give every offloaded layer its ir.Mapping — from mappings.yaml when given, else from the mapper.

A mapping from the file is matched by layer name and must fit that layer's shape exactly: a missing
name, a mapping made for another shape or an illegal mapping raise a MappingError naming the layer
and the field; there is no silent fall back to the mapper for a layer the file names.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import tvm
from tvm import relax

from codax.errors import MappingError, ModelError
from codax.frontend.graph_json import from_json
from codax.hw.mapper import map_layer
from codax.hw.precision import at_listed_widths, layer_at
from codax.ir import DIMS, Accelerator, Epilogue, Layer, Mapping, load_mappings, validate_mapping
from codax.passes import attrs as A
from codax.passes.relax_layer import core_info, layer_from_relax
from codax.passes.relax_util import attr, dtype, op_name, quantized_source

MappingsSource = dict[str, Mapping] | str | Path | None


def composite_of(func: relax.Function) -> relax.Function:
    """The Composite function (the pattern's body) of an offloaded function."""
    if attr(func, "Composite"):
        return func
    for block in func.body.blocks:
        for b in block.bindings:
            if isinstance(b.value, relax.Function):
                return b.value
    raise ModelError("an offloaded codax function holds no composite function; was it partitioned by codax?")


def layer_of_function(func: relax.Function, onnx_layers: dict[str, Layer]) -> Layer:
    """The Layer of an offloaded function: shapes read from Relax, names/tensors from the ONNX graph."""
    comp = composite_of(func)
    name = str(attr(func, A.LAYER) or attr(comp, A.LAYER))
    ep = json.loads(str(attr(comp, A.EPILOGUE)))
    core, bound = None, {}
    for block in comp.body.blocks:
        for b in block.bindings:
            bound[b.var] = b.value
            if op_name(b.value) in ("relax.nn.conv2d", "relax.matmul"):
                core = b.value

    def quantized_dtype(e) -> str | None:  # of a parameter q in astype(q) [- z]
        q = quantized_source(e, lambda u: bound.get(u, u))
        return dtype(q) if isinstance(q, relax.Var) and ep.get("requant") else None

    info = core_info(
        core, quantized_dtype(core.args[0]), bound.get(core.args[1]), quantized_dtype(core.args[1])
    )
    onnx = onnx_layers.get(name)
    residual = (onnx.epilogue.residual if onnx is not None else None) or "?" if ep["residual"] else None
    epilogue = Epilogue(
        bias=ep["bias"],
        activation=ep.get("activation"),
        clip_min=ep.get("clip_min"),
        clip_max=ep.get("clip_max"),
        residual=residual,
        requant=ep["requant"],
    )
    layer = layer_from_relax(core, name, info.precision, epilogue, info.runtime_weight)
    if onnx is None:
        return layer
    for f in (*DIMS, "stride", "dilation", "pads", "in_hw", "op", "runtime_weight"):
        if getattr(onnx, f) != getattr(layer, f):
            raise ModelError(
                f"layer {name}: the Relax function has {f}={getattr(layer, f)} but the ONNX node has "
                f"{getattr(onnx, f)}; the model changed between import and partition — re-import it"
            )
    precision = layer.precision
    if precision.kind == "int" and onnx.precision.kind == "int":  # widths the model states (frontend.widths)
        precision = replace(
            precision, weight=onnx.precision.weight, act=onnx.precision.act, out=onnx.precision.out
        )
    return onnx.with_(precision=precision, epilogue=epilogue)


def check_fits(layer: Layer, m: Mapping) -> None:
    """A file mapping must be made for this layer's shape: no dim under-covered or over-covered by a
    whole DRAM-level iteration (which is how a mapping for another shape shows)."""
    inner_levels = tuple(lv for lv in m.tiles if lv != "DRAM")
    for d in DIMS:
        bound, dram = getattr(layer, d), m.factor("DRAM", d)
        inner = m.coverage(d, inner_levels)
        if inner * dram < bound or math.ceil(bound / inner) != dram:
            raise MappingError(
                f"mappings.yaml: the mapping for layer {layer.name} covers {d} = {inner * dram} (DRAM "
                f"factor {dram} x {inner}) but the layer has {d} = {bound}; it was made for a different "
                "shape — regenerate mappings.yaml for this model or remove the entry to use the mapper"
            )


def check_widths(layer: Layer, m: Mapping) -> None:
    """A file mapping that states widths (a search's hand-off) must be made for the widths the model
    states: the mapping and its cost were chosen for them (docs/bitwidths.md)."""
    want, have = m.precision, layer.precision
    if want is None or have.kind != "int":
        return
    for f in ("weight", "act", "out"):
        if getattr(want, f) != getattr(have, f):
            raise MappingError(
                f"mappings.yaml: layer {layer.name} has precision.{f} = {getattr(want, f)} bits but the "
                f"model quantizes it to {getattr(have, f)} bits; export the model and mappings.yaml "
                "from the same search, or remove the entry's precision"
            )


@tvm.transform.module_pass(opt_level=0, name="codax.MapLayers")
class MapLayers:
    """Attach codax.layer_json / codax.mapping / codax.mapping_source (+ mapper cost) to each layer."""

    def __init__(
        self,
        accel: Accelerator,
        mappings: MappingsSource = None,
        objective: str = "latency",
        analysis: bool = False,
    ):
        self.accel = accel
        self.mappings = load_mappings(mappings) if isinstance(mappings, (str, Path)) else dict(mappings or {})
        self.objective = objective
        self.analysis = analysis

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        gj = attr(mod["main"], "codax.graph")
        onnx_layers = {l.name: l for l in from_json(str(gj)).graph.layers} if gj is not None else {}
        funcs = list(A.offloaded_functions(mod))
        names = {str(attr(f, A.LAYER)) for _, f in funcs}
        unknown = sorted(set(self.mappings) - names)
        if unknown:
            raise MappingError(
                f"mappings.yaml maps layer(s) {unknown[:5]} that are not offloaded layers of this model "
                f"(offloaded: {sorted(names)[:5]}{' ...' if len(names) > 5 else ''}); it was made for "
                "another model or accelerator"
            )
        memo: dict[tuple, tuple[Mapping, float, float]] = {}
        for gv, f in funcs:
            layer = at_listed_widths(layer_of_function(f, onnx_layers), self.accel)
            if self.analysis:
                layer = layer_at(layer, self.accel)
            extra: dict = {}
            if layer.name in self.mappings:
                m = self.mappings[layer.name]
                check_fits(layer, m)
                check_widths(layer, m)
                try:
                    validate_mapping(layer, self.accel, m)
                except MappingError as e:
                    raise MappingError(f"mappings.yaml: {e}") from None
                source = "mappings.yaml"
            else:
                key = layer.shape_key()
                if key not in memo:
                    res = map_layer(layer, self.accel, objective=self.objective)
                    memo[key] = (res.mapping, float(res.cost.cycles), float(res.cost.energy_pj))
                m0, cyc, en = memo[key]
                m = replace(m0, layer=layer.name)
                source = "mapper"
                extra = {A.CYCLES: cyc, A.ENERGY: en}
            mod[gv] = f.with_attrs(
                {
                    A.LAYER_JSON: json.dumps(layer.to_dict()),
                    A.MAPPING: json.dumps(m.to_dict()),
                    A.MAPPING_SOURCE: source,
                    **extra,
                }
            )
        return mod
