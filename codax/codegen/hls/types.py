"""Element types of a generated kernel: on-chip (ap_int/ap_uint/float by bitwidth) and in DRAM.

On chip, operands take exactly their bitwidth (`ap_int<N>` / `ap_uint<N>`), accumulators
`ap_int<acc>`; float layers are `float` throughout. In DRAM every element occupies a whole
native integer (int8_t for <= 8 bits, int16_t for <= 16, ...), which keeps the host side
(numpy, ctypes, the weights blob) simple; sub-byte packing is left to a later DMA engine.
Signedness is not part of `ir.Precision`; it comes from the layer's parameters (uint8
activations from onnxruntime's quantize_static, int8 weights) and defaults to signed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codax.errors import UnsupportedError
from codax.ir import Layer


def _mem_int(bits: int, signed: bool) -> tuple[str, np.dtype]:
    for w in (8, 16, 32, 64):
        if bits <= w:
            return (f"int{w}_t" if signed else f"uint{w}_t"), np.dtype(f"{'i' if signed else 'u'}{w // 8}")
    raise UnsupportedError(f"bitwidth {bits} exceeds 64")


@dataclass(frozen=True)
class KernelTypes:
    kind: str  # "int" | "float"
    w_bits: int = 8
    x_bits: int = 8
    y_bits: int = 8
    acc_bits: int = 32
    w_signed: bool = True
    x_signed: bool = True
    y_signed: bool = True
    r_signed: bool = True  # fused residual tensor (same width as the output)

    @staticmethod
    def for_layer(layer: Layer, params=None) -> KernelTypes:
        """Types from the layer's precision and, for integer layers, its parameters' signedness."""
        p = layer.precision
        if p.kind == "float":
            return KernelTypes("float", 32, 32, 32, 32)
        if p.acc > 32:
            raise UnsupportedError(
                f"layer {layer.name}: accumulator of {p.acc} bits; codegen supports up to 32 "
                "(set precision.acc <= 32)"
            )
        sg = (lambda a, d: getattr(params, a, d)) if params is not None else (lambda a, d: d)
        return KernelTypes(
            "int",
            p.weight,
            p.act,
            p.out,
            p.acc,
            bool(sg("w_signed", True)),
            bool(sg("x_signed", True)),
            bool(sg("y_signed", True)),
            bool(sg("r_signed", sg("y_signed", True))),
        )

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    def chip(self, operand: str) -> str:
        """On-chip C++ type of W, I, Y (final output), ACC."""
        if self.is_float:
            return "float"
        bits, signed = {
            "W": (self.w_bits, self.w_signed),
            "I": (self.x_bits, self.x_signed),
            "Y": (self.y_bits, self.y_signed),
            "ACC": (self.acc_bits, True),
        }[operand]
        return f"ap_int<{bits}>" if signed else f"ap_uint<{bits}>"

    def mem(self, operand: str) -> str:
        """DRAM C type of W, I, Y, R (residual), ACC (bias and partial-sum scratch)."""
        return self._mem(operand)[0]

    def dtype(self, operand: str) -> np.dtype:
        return self._mem(operand)[1]

    def _mem(self, operand: str) -> tuple[str, np.dtype]:
        if self.is_float:
            return "float", np.dtype("f4")
        if operand == "ACC":
            return _mem_int(max(self.acc_bits, 32), True)
        bits, signed = {
            "W": (self.w_bits, self.w_signed),
            "I": (self.x_bits, self.x_signed),
            "Y": (self.y_bits, self.y_signed),
            "R": (self.y_bits, self.r_signed),
        }[operand]
        return _mem_int(bits, signed)

    def range(self, operand: str) -> tuple[int, int]:
        """Representable integer range of W, I or Y."""
        bits, signed = {
            "W": (self.w_bits, self.w_signed),
            "I": (self.x_bits, self.x_signed),
            "Y": (self.y_bits, self.y_signed),
            "R": (self.y_bits, self.r_signed),
        }[operand]
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
