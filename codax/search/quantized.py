"""The derived network as the integer accelerator computes it: the searched widths, static ranges.

The search and the retraining quantize with `supernet.fake_quant`: symmetric, zero point 0, round
half to even, a `b`-bit grid [-2^(b-1), 2^(b-1) - 1] scaled by max |x| / (2^(b-1) - 1), taken per
batch for activations. A deployed network cannot take ranges per batch, and the hardware quantizes
at more places than the training does. `QuantizedNet` is the fused derived network with exactly
the hardware's quantization points, each with a range calibrated once (max |x| over calibration
images, as ONNX Runtime's MinMax calibration takes it) and the same `fake_quant`:

- every tensor is quantized once, at the activation width of the unit that reads it: a layer's
  input (the network input, a ReLU output, a block's output) and, in a block with a residual, the
  project layer's output (the accelerator requantizes it before the add); the block input that
  the residual adds is the quantized tensor the block's first layer reads;
- the classifier's input before and after global average pooling, and the logits at 8 bits;
- weights per tensor at the layer's weight width (scale max |w| / (2^(b-1) - 1)), biases as int32
  with scale input scale x weight scale (the QDQ convention).

`derive.quantize_qdq` writes these scales and widths into the QDQ model, so ONNX Runtime on the
exported model computes this module's function (docs/bitwidths.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codax.search.supernet import ConvBNAct, DerivedNet, IRBlock, QLinear, fake_quant

LOGIT_BITS = 8


@dataclass(frozen=True)
class TensorQuant:
    """A quantization point: width and range (a float32 value); zero point 0. Its scale is computed
    from the range exactly as fake_quant computes it, so both sides use the same float32 scale."""

    bits: int
    amax: float

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def scale(self) -> float:
        return float(torch.tensor(self.amax, dtype=torch.float32).clamp(min=1e-8) / float(self.qmax))


def _q(x: torch.Tensor, t: TensorQuant) -> torch.Tensor:
    return fake_quant(x, t.bits, torch.tensor(t.amax, dtype=torch.float32))


class QuantizedNet(nn.Module):
    """A fused DerivedNet at its widths with calibrated static ranges (see the module docstring).

    `points` maps a point name to its TensorQuant: `<layer>.in` for each layer's input, `<unit>.res`
    for a residual block's project output, `<fc>.pool` for the pooled tensor's input, `logits`.
    """

    def __init__(self, model: DerivedNet, calib: torch.Tensor):
        super().__init__()
        if any(isinstance(m, ConvBNAct) and m.bn is not None for m in model.modules()):
            raise ValueError("QuantizedNet needs the fused network (call model.fuse() first)")
        self.model = model.eval()
        self.bits = {u.name: b for u, b in zip(model.space.units, model.bits)}  # (weight, act) per unit
        self._amax: dict[str, torch.Tensor] | None = {}
        self._integers: dict[str, np.ndarray] | None = None  # recorded by run_integers()
        self.points: dict[str, TensorQuant] = {}
        with torch.no_grad():
            self._run(calib)  # records max |x| per point, float
        amax, self._amax = self._amax, None
        self.points = {k: TensorQuant(self._bits_of(k), float(v)) for k, v in amax.items()}

    # --- widths and weights --------------------------------------------------------------------------
    def _bits_of(self, point: str) -> int:
        if point == "logits":
            return LOGIT_BITS
        unit = point.split(".")[0]
        return self.bits[unit][1]

    def weight_quant(self, layer: str) -> TensorQuant:
        """The layer's weight width and scale (per tensor, max |w| / qmax, as fake_quant)."""
        conv = self.model.get_submodule(layer)
        bits = self.bits[layer.split(".")[0]][0]
        return TensorQuant(bits, float(conv.weight.detach().abs().amax()))

    # --- forward -----------------------------------------------------------------------------------
    def _point(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if self._amax is not None:  # calibrating: float, record the range
            m = x.detach().abs().amax()
            self._amax[name] = torch.maximum(self._amax[name], m) if name in self._amax else m
            return x
        y = _q(x, self.points[name])
        if self._integers is not None:  # y is an integer times the float32 scale: exact division
            self._integers[name] = torch.round(y / self.points[name].scale).to(torch.int8).numpy()
        return y

    def run_integers(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """The output on `x` and, by point name, the integer tensor at every quantization point (int8:
        each width is <= 8 bits), from one forward pass."""
        self._integers = {}
        try:
            with torch.no_grad():
                out = self._run(x)
            return out, self._integers
        finally:
            self._integers = None

    def _layer(self, name: str, x: torch.Tensor, xq: torch.Tensor | None = None) -> torch.Tensor:
        """Layer `name` on its input (quantized here unless `xq`, the already quantized input, is given)."""
        m = self.model.get_submodule(name)
        xq = self._point(x, f"{name}.in") if xq is None else xq
        w, b = m.weight, m.bias
        if self._amax is None:
            wq, sx = self.weight_quant(name), self.points[f"{name}.in"].scale
            w = fake_quant(w, wq.bits)
            if b is not None:  # int32 bias at scale sx * sw, as the QDQ model stores it
                sb = torch.tensor(sx, dtype=torch.float32) * torch.tensor(wq.scale, dtype=torch.float32)
                b = torch.round(b.double() / sb.double()).float() * sb
        if isinstance(m, QLinear):
            return F.linear(xq, w, b)
        y = F.conv2d(xq, w, b, m.stride, m.pad, 1, m.groups)
        return F.relu(y) if m.act else y

    def _block(self, name: str, blk: IRBlock, x: torch.Tensor) -> torch.Tensor:
        layers = [s for s in ("expand", "dw", "project") if getattr(blk, s) is not None]
        xq = self._point(x, f"{name}.{layers[0]}.in")
        y = None
        for i, s in enumerate(layers):
            y = self._layer(f"{name}.{s}", y, xq if i == 0 else None)
        if not blk.residual:
            return y
        return xq + self._point(y, f"{name}.res")

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.model.order:
            m = getattr(self.model, name)
            if isinstance(m, IRBlock):
                x = self._block(name, m, x)
            elif isinstance(m, QLinear):
                x = self._point(x, f"{name}.pool")
                x = self._layer(name, F.adaptive_avg_pool2d(x, 1).flatten(1))
            else:
                x = self._layer(name, x)
        return self._point(x, "logits")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)
