"""Energy per MAC and per memory access from a technology table, as differentiable torch functions."""

from __future__ import annotations

import math

import torch

from codax.hw.library import Technology


def sram_pj_per_bit(size_bytes: torch.Tensor, tech: Technology) -> torch.Tensor:
    """Access energy per bit of an SRAM of the given capacity: log-log interpolation of the table,
    extrapolated along the end segments (so larger memories always cost more per access)."""
    xs = torch.tensor([math.log(b) for b, _ in tech.sram_pj_per_64b], dtype=size_bytes.dtype)
    ys = torch.tensor([math.log(e / 64.0) for _, e in tech.sram_pj_per_64b], dtype=size_bytes.dtype)
    x = torch.log(size_bytes.clamp(min=1.0))
    idx = torch.searchsorted(xs, x.detach().contiguous()).clamp(1, len(xs) - 1)
    x0, x1, y0, y1 = xs[idx - 1], xs[idx], ys[idx - 1], ys[idx]
    return torch.exp(y0 + (x - x0) * (y1 - y0) / (x1 - x0))


def dram_pj_per_bit(tech: Technology) -> float:
    return tech.dram_pj_per_64b / 64.0


def mac_pj(
    w_bits: torch.Tensor,
    a_bits: torch.Tensor,
    acc_bits: torch.Tensor,
    is_float: torch.Tensor,
    tech: Technology,
) -> torch.Tensor:
    """One multiply-accumulate: the multiplier scales with the product of operand widths, the adder
    with the accumulator width (Horowitz: int8 mult 0.2 pJ, int add 0.03 pJ per 8 bits); fp32 from
    the table."""
    integer = tech.int_mult_pj_8x8 * w_bits * a_bits / 64.0 + tech.int_add_pj_per_bit * acc_bits
    return torch.where(is_float > 0, torch.full_like(integer, tech.fp32_mult_pj + tech.fp32_add_pj), integer)
