"""A transposed convolution as an ordinary convolution over its zero-inserted input.

ConvTranspose(x, w) with stride s, dilation d, pads (pb, pe) and output padding op equals, per
spatial axis, a stride-1 convolution with dilation d of the flipped, transposed weight over x with
s - 1 zeros inserted between neighbours, padded by d*(k-1) - pb before and d*(k-1) - pe + op after
(a negative pad crops the zero-inserted input instead). The zero insertion and crop are host work;
the convolution is an ordinary layer. The ONNX view (onnx_graph) and the Relax rewrite
(codax.passes.layout) both take the geometry from here, so they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """The equivalent convolution of one ConvTranspose (2 spatial axes, (h, w) order)."""

    stride: tuple[int, int]  # of the transposed convolution: the zero-insertion factor
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]  # the convolution's pads (top, left, bottom, right), all >= 0
    crop: tuple[int, int, int, int]  # rows/cols cut from the zero-inserted input (top, left, bottom, right)
    inserted_hw: tuple[int, int]  # zero-inserted extent before the crop: (H - 1) * s + 1
    in_hw: tuple[int, int]  # the convolution's input extent (after the crop)
    out_hw: tuple[int, int]


def geometry(
    x_hw: tuple[int, int],
    kernel: tuple[int, int],
    strides=(1, 1),
    dilations=(1, 1),
    pads=(0, 0, 0, 0),
    output_padding=(0, 0),
) -> Geometry:
    pad, crop, ins, inp, out = [0] * 4, [0] * 4, [0, 0], [0, 0], [0, 0]
    for i in range(2):
        halo = dilations[i] * (kernel[i] - 1)
        before, after = halo - pads[i], halo - pads[i + 2] + output_padding[i]
        pad[i], pad[i + 2] = max(0, before), max(0, after)
        crop[i], crop[i + 2] = max(0, -before), max(0, -after)
        ins[i] = (x_hw[i] - 1) * strides[i] + 1
        inp[i] = ins[i] - crop[i] - crop[i + 2]
        out[i] = inp[i] + pad[i] + pad[i + 2] - halo
    return Geometry(
        tuple(strides), tuple(dilations), tuple(pad), tuple(crop), tuple(ins), tuple(inp), tuple(out)
    )


def node_geometry(attrs: dict, x_hw: tuple[int, int], kernel: tuple[int, int]) -> Geometry:
    """The geometry of a ConvTranspose node from its ONNX attributes (pads, output_padding, ...)."""
    return geometry(
        x_hw,
        kernel,
        tuple(attrs.get("strides", [1, 1])),
        tuple(attrs.get("dilations", [1, 1])),
        tuple(attrs.get("pads", [0, 0, 0, 0])),
        tuple(attrs.get("output_padding", [0, 0])),
    )


def conv_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """ConvTranspose weight [C_in, C_out/g, kh, kw] as the equivalent conv's [C_out, C_in/g, kh, kw]:
    per group, in and out channels swapped, the kernel flipped in both axes."""
    c_in, k_g, kh, kw = w.shape
    c_g = c_in // groups
    wg = w.reshape(groups, c_g, k_g, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return np.ascontiguousarray(wg.reshape(groups * k_g, c_g, kh, kw))


def channel_scale(scale: np.ndarray, groups: int) -> np.ndarray:
    """A per-output-channel scale of the transposed weight (axis 1: C_out/g entries) for all C_out."""
    s = np.asarray(scale).reshape(-1)
    return s if s.size == 1 else np.ascontiguousarray(np.tile(s, groups))


def zero_insert(x: np.ndarray, g: Geometry, fill=0) -> np.ndarray:
    """The convolution's input: x [N, C, H, W] with stride - 1 `fill` values (a QDQ input's zero
    point) between neighbours, cropped as the geometry says. What the host runs before the layer."""
    n, c, h, w = x.shape
    sh, sw = g.stride
    z = np.full((n, c, *g.inserted_hw), fill, dtype=x.dtype)
    z[:, :, ::sh, ::sw] = x
    ct, cl, cb, cr = g.crop
    return z[:, :, ct : g.inserted_hw[0] - cb, cl : g.inserted_hw[1] - cr]
