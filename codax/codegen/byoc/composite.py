"""Reading a codax composite function (one offloaded layer): which parameter is the layer input and
which the fused residual (matching the codax pattern the composite was made from, by its
annotations), and the layer's numeric parameters (read off its Relax body).

The partitioner's canonical forms:
  float  ``conv2d|matmul(x, W) [+ b] [+ residual] [relu|clip]``: ``W`` OIHW is already
  ``[G*K, C, R, S]``; a matmul weight ``[C, K]`` is transposed to ``[K, C, 1, 1]``; ``b`` flattened.
  int (``LowerQDQ``) ``astype(xq) [- zx] -> conv2d|matmul(., Wq, int32) [+ bq] -> astype * s
  [relu|clip] -> quantize(., sy, zy)``: ``s = s_x * s_w`` (per channel) becomes the parameters'
  ``w_scale`` with ``x_scale = 1``; ``zx``, ``zy``, the signedness (from the dtypes) and the int32 bias
  are taken as they are.
When the compile flow has the layer's parameters from the ONNX model (codax.codegen.params.from_onnx,
the golden model's), those are used instead and only the operand positions are read here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax

from codax.codegen.byoc.glue import LayerSpec
from codax.codegen.params import LayerParams
from codax.errors import ModelError, UnsupportedError
from codax.ir import Layer
from codax.passes.patterns import codax_patterns
from codax.passes.relax_util import const_value, is_constant, op_name


def _bindings(func: relax.Function) -> list:
    body = func.body
    return [b for blk in body.blocks for b in blk.bindings] if isinstance(body, relax.SeqExpr) else []


def _const(spec: LayerSpec, e) -> np.ndarray | None:
    for k, (_, value) in spec.constants.items():
        if k.same_as(e):
            return value
    return const_value(e) if is_constant(e) else None


def _param_index(spec: LayerSpec, e) -> int | None:
    return next((i for i, p in enumerate(spec.func.params) if p.same_as(e)), None)


@dataclass
class _Body:
    core: relax.Call
    weight: np.ndarray | None  # as in Relax: OIHW or [C, K]; None for a run-time weight tensor
    bias: np.ndarray | None
    integer: bool
    x_zero_point: int = 0
    scale: np.ndarray | None = None  # s_x * s_w (integer layers)
    y_scale: float = 1.0
    y_zero_point: int = 0
    y_dtype: str = "float32"
    w_zero_point: int = 0


def _read_body(spec: LayerSpec) -> _Body:  # noqa: C901 - one linear walk over the chain
    binds = _bindings(spec.func)
    values = {}
    for b in binds:
        values[b.var] = b.value

    def val(e):
        for k, v in values.items():
            if k.same_as(e):
                return v
        return e

    def fail(what: str):
        return UnsupportedError(
            f"{spec.composite} (layer {spec.layer}): {what}; the HLS kernel factory reads the codax "
            "partitioner's composite form (conv2d|matmul [+bias] [+residual] [act] or its QDQ-lowered form)"
        )

    core_i = next(
        (i for i, b in enumerate(binds) if op_name(b.value) in ("relax.nn.conv2d", "relax.matmul")), None
    )
    if core_i is None:
        raise fail("no conv2d/matmul in the composite")
    core = binds[core_i].value
    if op_name(core) == "relax.nn.conv2d":
        a = core.attrs
        layouts = (str(a.data_layout), str(a.kernel_layout), str(a.out_layout))
        if layouts != ("NCHW", "OIHW", "NCHW"):
            raise fail(f"conv2d layouts {layouts} (need NCHW/OIHW/NCHW)")

    def centred(e, what: str) -> tuple[relax.Expr, int, bool]:
        """(source, zero point, integer) of an operand: param, or astype(param) [- z]."""
        e, z, integer = val(e), 0, False
        if op_name(e) == "relax.subtract":
            zc = _const(spec, e.args[1])
            if zc is None or zc.size != 1:
                raise fail(f"{what} zero point is not a scalar constant")
            z, e, integer = int(zc.reshape(())), val(e.args[0]), True
        if op_name(e) == "relax.astype":
            e, integer = e.args[0], True
        return e, z, integer

    _, zx, integer = centred(core.args[0], "input")
    w = _const(spec, core.args[1])
    zw = 0
    if w is None:  # a run-time weight
        wv, zw, _ = centred(core.args[1], "the second operand's")
        if _param_index(spec, wv) is None:
            raise fail(
                "the weight is neither a bound constant nor a parameter (partition with bind_constants=True)"
            )
    body = _Body(core, w, None, integer, x_zero_point=zx, w_zero_point=zw)
    prev = binds[core_i].var
    for b in binds[core_i + 1 :]:
        v, name = b.value, op_name(b.value)
        args = list(v.args) if isinstance(v, relax.Call) else []
        if not any(a.same_as(prev) for a in args):
            raise fail(f"binding {b.var.name_hint} does not consume the previous result")
        others = [a for a in args if not a.same_as(prev)]
        if name == "relax.add":
            c = _const(spec, others[0])
            if c is not None:
                body.bias = c.reshape(-1)
            elif _param_index(spec, others[0]) is None:  # a parameter: the residual (layer_operands)
                raise fail("an add whose operand is neither a constant nor a parameter")
        elif name == "relax.multiply":
            s = _const(spec, others[0])
            if s is None:
                raise fail("a requantization scale that is not a constant")
            body.scale = s.reshape(-1).astype(np.float32)
        elif name == "relax.quantize":
            sy, zy = _const(spec, args[1]), _const(spec, args[2])
            if sy is None or zy is None or sy.size != 1 or zy.size != 1:
                raise fail("quantize with a non-scalar or non-constant scale/zero point")
            body.y_scale, body.y_zero_point = float(sy.reshape(())), int(zy.reshape(()))
            body.y_dtype = str(v.attrs.out_dtype)
        elif name not in ("relax.astype", "relax.nn.relu", "relax.clip"):
            raise fail(f"unexpected {name} in the epilogue")
        prev = b.var
    if body.integer and body.scale is None:
        raise fail("an integer layer without requantization")
    return body


def layer_params(spec: LayerSpec, layer: Layer) -> LayerParams:
    """The LayerParams of a composite, read off its body and checked against the layer's shape."""
    b = _read_body(spec)
    ch = layer.G * layer.K
    w = b.weight
    if layer.runtime_weight:
        pass  # the values arrive per call; only the quantization is read here
    elif layer.op == "matmul":
        if w.ndim != 2:
            raise UnsupportedError(f"layer {layer.name}: matmul weight of shape {w.shape}, need [C, K]")
        w = np.ascontiguousarray(w.T).reshape(w.shape[1], w.shape[0], 1, 1)
    expect = (ch, layer.C, layer.R, layer.S)
    if w is not None and tuple(w.shape) != expect:
        raise ModelError(
            f"layer {layer.name}: the composite's weight has shape {tuple(w.shape)} but codax.layer_json "
            f"needs {expect}; re-run the codax pipeline on this module"
        )
    ep = layer.epilogue
    common = dict(activation=ep.activation, clip_min=ep.clip_min, clip_max=ep.clip_max)
    if not b.integer:
        bias = None if b.bias is None else np.broadcast_to(b.bias.astype(np.float32), (ch,)).copy()
        return LayerParams(
            "float", None if w is None else w.astype(np.float32), bias, out_channels=ch, **common
        )
    data, _, wt = layer_operands(spec)
    x_dtype = spec.params[data].dtype
    bias = None if b.bias is None else np.broadcast_to(b.bias.astype(np.int32), (ch,)).copy()
    p = LayerParams(
        "int",
        w,
        bias,
        w_scale=np.broadcast_to(b.scale, (ch,)).astype(np.float32),
        w_zero_point=b.w_zero_point,
        x_scale=1.0,
        x_zero_point=b.x_zero_point,
        y_scale=b.y_scale,
        y_zero_point=b.y_zero_point,
        w_signed=(w.dtype.kind == "i") if w is not None else not spec.params[wt].dtype.startswith("uint"),
        x_signed=not x_dtype.startswith("uint"),
        y_signed=not b.y_dtype.startswith("uint"),
        y_bits=np.dtype(b.y_dtype).itemsize * 8,
        out_channels=ch,
        **common,
    )
    return p


def layer_operands(spec: LayerSpec) -> tuple[int, int | None, int | None]:
    """(data, residual or None, run-time weight or None) parameter indices of a composite, found by
    matching the codax pattern the composite was made from (codax.passes.patterns, by its Composite
    name) against its body: the pattern's `data` (integer patterns: `xq`), `residual` and `wt`
    annotations name them."""
    pat = next((p for p in codax_patterns() if p.name == spec.composite), None)
    if pat is None:
        raise UnsupportedError(
            f"{spec.composite} (layer {spec.layer}): not a codax pattern's composite; partition with "
            "codax.passes.pipeline(accel)"
        )
    body = spec.func.body
    root = body.body if isinstance(body, relax.SeqExpr) else body
    var2val = relax.analysis.get_var2val(spec.func)
    matched = pat.pattern.extract_matched_expr(var2val.get(root, root), var2val)
    if matched is None:
        raise UnsupportedError(
            f"{spec.composite} (layer {spec.layer}): its body no longer matches its pattern"
        )

    def param(role: str) -> int | None:
        ann = pat.annotations.get(role)
        e = matched.get(ann) if ann is not None else None
        if e is None:
            return None
        idx = _param_index(spec, e)
        if idx is None:
            raise UnsupportedError(f"{spec.composite} (layer {spec.layer}): its {role} is not a parameter")
        return idx

    data = param("xq" if pat.integer else "data")
    if data is None:
        raise UnsupportedError(f"{spec.composite} (layer {spec.layer}): no layer input in the match")
    return data, param("residual"), param("wt")
