"""FPGA resources (DSP, BRAM18, LUT) and ASIC area of an accelerator, as differentiable torch functions.

FPGA rules: a MAC of up to 8x8 bits takes half a DSP48E2 (two multiplies sharing an operand, as in
Xilinx WP486) and a whole DSP48E1; up to 18x27 bits one DSP; fp32 five DSPs (3 multiply + 2 add).
A buffer is partitioned into `banks`; a bank of more than 1 Kbit maps to ceil(bits / 18 Kbit) BRAM18
(smaller banks go to LUTRAM); a double-buffered buffer takes twice that.
"""

from __future__ import annotations

import torch

from codax.hw.library import FpgaDevice, Technology

BRAM18_BITS = 18 * 1024
LUTRAM_MAX_BITS = 1024
LUT_PER_INT_MAC = 30.0  # operand muxing and accumulator glue around the DSP
LUT_PER_FP32_MAC = 700.0
LUT_CONTROL = 4000.0  # AXI masters, tile counters, control FSM
LUT_PER_LUTRAM_BITS = 1.0 / 64.0


def dsp_per_mac(
    w_bits: torch.Tensor, a_bits: torch.Tensor, is_float: torch.Tensor, dsp_kind: str
) -> torch.Tensor:
    small = torch.maximum(w_bits, a_bits) <= 8
    packed = 0.5 if dsp_kind == "dsp48e2" else 1.0
    fits = (torch.minimum(w_bits, a_bits) <= 18) & (torch.maximum(w_bits, a_bits) <= 27)
    per = torch.where(small, torch.full_like(w_bits, packed), torch.where(fits, torch.ones_like(w_bits), 4.0))
    return torch.where(is_float > 0, torch.full_like(per, 5.0), per)


def bram18(
    bytes_: torch.Tensor, banks: torch.Tensor, double: torch.Tensor, relaxed: bool = False
) -> torch.Tensor:
    """BRAM18 blocks for a buffer of `bytes_` split into `banks` (x2 when double-buffered)."""
    bank_bits = bytes_ * 8.0 / banks
    if relaxed:
        per_bank = bank_bits / BRAM18_BITS
    else:
        per_bank = torch.where(bank_bits > LUTRAM_MAX_BITS, torch.ceil(bank_bits / BRAM18_BITS), 0.0)
    return per_bank * banks * (1.0 + double)


def lutram_bits(bytes_: torch.Tensor, banks: torch.Tensor, double: torch.Tensor) -> torch.Tensor:
    bank_bits = bytes_ * 8.0 / banks
    return torch.where(bank_bits <= LUTRAM_MAX_BITS, bytes_ * 8.0, 0.0) * (1.0 + double)


def lut(pes: torch.Tensor, is_float: torch.Tensor, lutram: torch.Tensor) -> torch.Tensor:
    per = torch.where(is_float > 0, LUT_PER_FP32_MAC, LUT_PER_INT_MAC)
    return pes * per + LUT_CONTROL + lutram * LUT_PER_LUTRAM_BITS


def asic_area_um2(
    pes: torch.Tensor,
    w_bits: torch.Tensor,
    a_bits: torch.Tensor,
    is_float: torch.Tensor,
    sram_bytes: torch.Tensor,
    tech: Technology,
) -> torch.Tensor:
    mac = torch.where(
        is_float > 0, torch.full_like(w_bits, tech.fp32_mac_um2), tech.mac_um2_8x8 * w_bits * a_bits / 64.0
    )
    return pes * mac + sram_bytes / 1024.0 * tech.sram_um2_per_kb


def fits_device(dsp: float, bram: float, luts: float, device: FpgaDevice) -> list[str]:
    """Which budget lines a design exceeds, as readable strings (empty when it fits)."""
    over = []
    for what, used, have in (
        ("DSP", dsp, device.dsp),
        ("BRAM18", bram, device.bram18),
        ("LUT", luts, device.lut),
    ):
        if used > have:
            over.append(f"{what} {used:,.0f} > {have:,} on {device.name}")
    return over
