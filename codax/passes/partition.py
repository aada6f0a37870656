"""partition: FuseOpsByPattern with codax patterns, gated by what the accelerator supports.

Accepted matches become composite functions; with `offload=True` each is wrapped in a function with
`Codegen = "codax"` (FuseOpsByPattern's annotate_codegen) for RunCodegen / `relax.ext.codax`. With
`offload=False` the composites stay plain Relax functions that `tvm.compile` builds on the host: the
same partition, runnable as a reference.
"""

from __future__ import annotations

import json
import math

import tvm
from tvm import relax

from codax.frontend.graph_json import from_json
from codax.frontend.onnx_graph import runtime_matmul_key
from codax.ir import Accelerator
from codax.passes import attrs as A
from codax.passes.patterns import CodaxPattern, codax_patterns
from codax.passes.relax_layer import CoreInfo, bias_ok, core_info, offload_reason, residual_ok
from codax.passes.relax_util import attr, dtype, op_name, quantized_source, relax_functions


def _layer_name(keys: dict[str, str], key: str | None) -> str:
    if key is not None and key in keys:
        return keys[key]
    return "layer_" + (key or "unknown").split(":")[-1][:12]


def _act_epilogue(act) -> dict:
    if act is None:
        return {"activation": None}
    if op_name(act) == "relax.nn.relu":
        return {"activation": "relu"}
    lo, hi = float(act.args[1].value), float(act.args[2].value)
    if lo == 0 and hi == 6:
        return {"activation": "relu6"}
    if lo == 0 and math.isinf(hi):
        return {"activation": "relu"}
    return {"activation": "clip", "clip_min": lo, "clip_max": hi}


def _self_contained(ctx) -> bool:
    """Only the root's value may leave the group. An intermediate used elsewhere (e.g. a conv output
    that is also the next block's input) would make the group return a tuple, or form a cycle when
    that other use feeds the group's own residual input."""
    root = ctx.value_to_bound_var.get(ctx.matched_expr)
    inside = set(ctx.matched_bindings.keys())
    for var in inside:
        if root is not None and var.same_as(root):
            continue
        if any(u not in inside for u in ctx.var_usages.get(var, [])):
            return False
    return True


class RuntimeMatmuls:
    """The matmuls of `main` whose second operand is a run-time tensor, numbered in binding order as
    the ONNX view numbers their MatMul nodes (codax.frontend.onnx_graph.runtime_matmul_key): the
    link between the two, since there is no weight to fingerprint."""

    def __init__(self, main: relax.Function) -> None:
        var2val = relax.analysis.get_var2val(main)
        self.calls: list[tuple[relax.Var, relax.Call]] = []
        for block in main.body.blocks:
            for b in block.bindings:
                v = b.value
                if (
                    op_name(v) == "relax.matmul"
                    and core_info(v, weight=var2val.get(v.args[1])).runtime_weight
                ):
                    self.calls.append((b.var, v))

    def key(self, expr) -> str | None:
        for i, (var, call) in enumerate(self.calls):
            if var.same_as(expr) or call.same_as(expr):
                return runtime_matmul_key(i)
        return None


def _info(core, ann: dict, integer: bool, rt: RuntimeMatmuls) -> CoreInfo:
    return core_info(
        core,
        dtype(ann["xq"]) if integer else None,
        ann["weight"],
        dtype(ann["wq"]) if "wq" in ann else None,
        rt.key(core),
    )


def _make(
    p: CodaxPattern,
    accel: Accelerator,
    keys: dict[str, str],
    residual_layers: set[str] | None,
    analysis: bool,
    rt: RuntimeMatmuls,
) -> relax.transform.FusionPattern:
    def info(ann):
        return _info(ann["core"], ann, p.integer, rt)

    def check(ctx) -> bool:
        ann = ctx.annotated_expr
        if not _self_contained(ctx):
            return False
        i = info(ann)
        if i.runtime_weight != p.runtime_weight or offload_reason(i, accel, analysis) is not None:
            return False
        if "bias" in ann and not bias_ok(ann["core"], ann["bias"]):
            return False
        if "residual" in ann:
            if not residual_ok(ann["res_add"], ann["residual"]):
                return False
            # an Add joining two conv chains goes to the layer the ONNX view gave it to, so the
            # Relax partition and extract_graph/report agree
            if residual_layers is not None and _layer_name(keys, info(ann).key) not in residual_layers:
                return False
        return True

    def getter(ann) -> dict[str, str]:
        key = info(ann).key
        ep = {"bias": "bias" in ann, "residual": "residual" in ann, "requant": p.integer}
        ep.update(_act_epilogue(ann.get("act")))
        return {A.LAYER: _layer_name(keys, key), A.KEY: key or "", A.EPILOGUE: json.dumps(ep)}

    return relax.transform.FusionPattern(p.name, p.pattern, p.annotations, check, getter)


def _inner_composite(outer: relax.Function) -> relax.Function | None:
    for block in outer.body.blocks:
        for b in block.bindings:
            if isinstance(b.value, relax.Function):
                return b.value
    return None


def _host_layers(
    mod: tvm.IRModule, accel: Accelerator, keys: dict[str, str], analysis: bool, rt: RuntimeMatmuls
) -> dict[str, str]:
    """{layer name: reason} for every conv2d/matmul left in main."""
    main = mod["main"]
    var2val = relax.analysis.get_var2val(main)
    out = {}
    for block in main.body.blocks:
        for b in block.bindings:
            v = b.value
            if op_name(v) not in ("relax.nn.conv2d", "relax.matmul"):
                continue

            def quantized_dtype(e):
                q = quantized_source(e, lambda u: var2val.get(u, u))
                return None if q is None else dtype(q)

            info = core_info(
                v,
                quantized_dtype(v.args[0]),
                var2val.get(v.args[1], v.args[1]),
                quantized_dtype(v.args[1]),
                rt.key(b.var) or rt.key(v),
            )
            reason = (
                offload_reason(info, accel, analysis)
                or "no codax pattern matched it (unsupported epilogue or shape)"
            )
            out[_layer_name(keys, info.key)] = reason
    return out


@tvm.transform.module_pass(opt_level=0, name="codax.Partition")
class Partition:
    """Group accelerator-executable layers into codax composite functions. With `analysis`, float
    layers on an integer accelerator are offloaded too, to be costed at its precision (never built)."""

    def __init__(self, accel: Accelerator, offload: bool = True, analysis: bool = False):
        self.accel = accel
        self.offload = offload
        self.analysis = analysis

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        keys = {str(k): str(v) for k, v in (attr(mod["main"], "codax.layer_keys") or {}).items()}
        gj = attr(mod["main"], "codax.graph")
        residual_layers = None
        if gj is not None:
            residual_layers = {lay.name for lay in from_json(str(gj)).graph.layers if lay.epilogue.residual}
        rt = RuntimeMatmuls(mod["main"])
        patterns = [_make(p, self.accel, keys, residual_layers, self.analysis, rt) for p in codax_patterns()]
        mod = relax.transform.FuseOpsByPattern(patterns, bind_constants=True, annotate_codegen=self.offload)(
            mod
        )
        if self.offload:
            for gv, f in list(relax_functions(mod)):
                if attr(f, "Codegen") != A.CODEGEN:
                    continue
                inner = _inner_composite(f)
                if inner is not None:
                    mod[gv] = f.with_attrs({k: inner.attrs[k] for k in (A.LAYER, A.KEY, A.EPILOGUE)})
        hosts = _host_layers(mod, self.accel, keys, self.analysis, rt)
        mod["main"] = mod["main"].with_attr(A.HOST_LAYERS, json.dumps(hosts))
        return mod
