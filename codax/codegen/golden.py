"""The accelerator's numerics, defined in numpy: what every generated kernel must compute.

Float layers: float32 operands; the reduction is computed here in float64 and rounded once, the
kernel accumulates in float32 in its loop order, so the two agree within a tolerance.

Integer layers (bit-exact contract with the C-simulation):
    acc = int32( sum (w - zw) * (x - zx) )              padding positions hold zx, i.e. contribute 0
    acc = int32( acc + bias )                            bias in int32 at scale s_w * s_x
    v   = float32(acc) * M[ch]                           M = float32(s_w[ch] * s_x / s_y)
    v   = v + float32(res - zr) * float32(s_r / s_y)     only with a fused residual
    y   = clamp(rint(v) + zy, lo, hi)                    rint: round half to even
`lo`/`hi` fold the output type's range and the fused activation (relu -> zy, relu6 -> zy + rint(6/s_y),
clip -> the clip bounds quantized). Without requantization the output is clamp(acc + res - zr, lo, hi).
The multiplier is a float32 (not a fixed-point multiplier + shift) because ONNX Runtime rounds through
float32 too; the float products are single IEEE operations with no fused multiply-add (-ffp-contract=off),
so the C++ kernel reproduces them bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from codax.codegen.params import LayerParams
from codax.ir import Layer


def _windows(layer: Layer, x: np.ndarray, pad_value) -> np.ndarray:
    """x [N, G*C, H, W] -> patches [N, G, C, R, S, P, Q] (padded with pad_value)."""
    n, _, h, w = x.shape
    pt, pl, pb, pr = layer.pads
    xp = np.full((n, layer.G * layer.C, h + pt + pb, w + pl + pr), pad_value, dtype=x.dtype)
    xp[:, :, pt : pt + h, pl : pl + w] = x
    sh, sw = layer.stride
    dh, dw = layer.dilation
    out = np.empty((n, layer.G * layer.C, layer.R, layer.S, layer.P, layer.Q), dtype=x.dtype)
    for r in range(layer.R):
        for s in range(layer.S):
            rows = slice(r * dh, r * dh + (layer.P - 1) * sh + 1, sh)
            cols = slice(s * dw, s * dw + (layer.Q - 1) * sw + 1, sw)
            out[:, :, r, s] = xp[:, :, rows, cols]
    return out.reshape(n, layer.G, layer.C, layer.R, layer.S, layer.P, layer.Q)


def _to_nchw(layer: Layer, t: np.ndarray, ch: int, hw: tuple[int, int]) -> np.ndarray:
    t = np.asarray(t)
    if layer.op == "matmul":  # [G, N, ch] -> [N, G, ch]
        t = t.reshape(layer.G, layer.N, ch).transpose(1, 0, 2)
    return t.reshape(layer.N, layer.G * ch, *hw)


def as_nchw(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Inputs as [N, G*C, H, W]. Tensors keep their own layouts: a convolution's input is
    [N, G*C, H, W]; a matmul's is [G, N, C] (G: the batch of a batched matmul; [N, C] when G = 1)."""
    return _to_nchw(layer, x, layer.C, layer.in_hw)


def as_nchw_out(layer: Layer, y: np.ndarray) -> np.ndarray:
    """An output-shaped tensor (a residual) from the layer's output layout to [N, G*K, P, Q]."""
    return _to_nchw(layer, y, layer.K, (layer.P, layer.Q))


def from_nchw(layer: Layer, y: np.ndarray) -> np.ndarray:
    """Outputs [N, G*K, P, Q] in the layer's output layout: a matmul's is [G, N, K] ([N, K] for G = 1)."""
    if layer.op != "matmul":
        return y
    y = y.reshape(layer.N, layer.G, layer.K).transpose(1, 0, 2)
    return np.ascontiguousarray(y.reshape(layer.N, layer.K) if layer.G == 1 else y)


def runtime_weight(layer: Layer, tensor: np.ndarray) -> np.ndarray:
    """A run-time weight tensor (layer.runtime_weight's layout) as weights [G*K, C, 1, 1]."""
    t = np.asarray(tensor)
    if layer.runtime_weight == "GCK":
        t = t.reshape(layer.G, layer.C, layer.K).transpose(0, 2, 1)
    return np.ascontiguousarray(t).reshape(layer.G * layer.K, layer.C, 1, 1)


def with_weight(layer: Layer, params: LayerParams, weight: np.ndarray | None) -> LayerParams:
    """The parameters with a run-time weight tensor filled in (unchanged for a constant weight)."""
    if not layer.runtime_weight:
        return params
    if weight is None:
        raise ValueError(f"layer {layer.name} multiplies by a run-time tensor: pass `weight`")
    return dataclasses.replace(params, weight=runtime_weight(layer, weight))


def reduce(layer: Layer, params: LayerParams, x: np.ndarray) -> np.ndarray:
    """The raw reduction acc[N, G*K, P, Q]: int64 for integer layers (before wrapping), float64 else."""
    xw = as_nchw(layer, x)
    wt = params.weight.reshape(layer.G, layer.K, layer.C, layer.R, layer.S)
    if params.kind == "int":
        patches = _windows(layer, xw.astype(np.int64), params.x_zero_point) - params.x_zero_point
        wq = wt.astype(np.int64) - params.w_zero_point
    else:
        patches = _windows(layer, xw.astype(np.float64), 0.0)
        wq = wt.astype(np.float64)
    acc = np.einsum("gkcrs,ngcrspq->ngkpq", wq, patches, optimize=True)
    return acc.reshape(layer.N, layer.G * layer.K, layer.P, layer.Q)


def golden_layer(
    layer: Layer,
    params: LayerParams,
    x: np.ndarray,
    residual: np.ndarray | None = None,
    weight: np.ndarray | None = None,
):
    """The layer's output as the accelerator computes it: [N, G*K, P, Q] (matmul: [G, N, K], [N, K]
    for G = 1). `weight`: the run-time weight tensor of a layer that has one."""
    params = with_weight(layer, params, weight)
    acc = reduce(layer, params, x)
    ep = layer.epilogue
    ch = (1, layer.G * layer.K, 1, 1)
    res = None if residual is None else as_nchw_out(layer, residual).reshape(acc.shape)
    if ep.residual and res is None:
        raise ValueError(f"layer {layer.name} fuses a residual add: pass `residual`")
    lo, hi = params.clamp
    if params.kind == "float":
        y = acc.astype(np.float32)
        if ep.bias and params.bias is not None:
            y = y + params.bias.astype(np.float32).reshape(ch)
        if ep.residual:
            y = y + res.astype(np.float32)
        y = np.clip(y, np.float32(lo), np.float32(hi)).astype(np.float32)
    else:
        a = acc.astype(np.int64).astype(np.int32)  # wraps like the int32 accumulator
        if ep.bias and params.bias is not None:
            a = (a.astype(np.int64) + params.bias.astype(np.int64).reshape(ch)).astype(np.int32)
        if ep.requant:
            v = a.astype(np.float32) * params.multiplier.reshape(ch)
            if ep.residual:
                v = v + (res.astype(np.float32) - np.float32(params.r_zero_point)) * np.float32(
                    params.r_multiplier
                )
            r = np.clip(np.rint(v), -(2.0**30), 2.0**30).astype(np.int64) + params.y_zero_point
        else:
            r = a.astype(np.int64)
            if ep.residual:
                r = r + res.astype(np.int64) - params.r_zero_point
        y = np.clip(r, int(lo), int(hi)).astype(params.y_dtype)
    return from_nchw(layer, y)
