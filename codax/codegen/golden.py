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


def as_nchw(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Inputs as [N, G*C, H, W] (dense layers take [N, C])."""
    h, w = layer.in_hw
    return np.asarray(x).reshape(layer.N, layer.G * layer.C, h, w)


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


def golden_layer(layer: Layer, params: LayerParams, x: np.ndarray, residual: np.ndarray | None = None):
    """The layer's output as the accelerator computes it: [N, G*K, P, Q] (dense: [N, K])."""
    acc = reduce(layer, params, x)
    ep = layer.epilogue
    ch = (1, layer.G * layer.K, 1, 1)
    res = None if residual is None else np.asarray(residual).reshape(acc.shape)
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
    if layer.op == "matmul":
        return y.reshape(layer.N, layer.K)
    return y
