"""Cycles of one core instruction, from the loops its IP runs: the iterations of the IP's pipelined loops
(`insn_trips`, from the instruction's fields) times the II the reader finds for them in the generated
sources (codax.codegen.hls_ii), plus a pipeline fill per loop invocation and, for the IPs on DRAM, one
AXI round trip:

    LOAD   data units x their beats + pad units (one iteration each); one loop, one round trip
    GEMM   iter_out x iter_in x (uop_end - uop_bgn) steps; one loop
    STORE  COLS parameter entries, then per row (pixels + 1 + residual lead) x the pixel's period (the
           most of its accumulator vectors, output beats and residual beats); a loop per row

The C-simulation counts the same iterations as the IPs run them (the hooks of codax.codegen.core_system)
and times the program from the counts (codax.codegen.core_sim); `insn_trips` is what a model predicts
without running anything (codax.codegen.core_model), so the two agree only if the formula describes the
loops. The IIs are measured once per core shape (`ip_iis`); a loop the reader finds slower makes its
instructions slower here.
"""

from __future__ import annotations

from functools import cache

from codax.codegen.core import CoreShape
from codax.codegen.core_load import MEMORIES, unit_beats, vector_beats

PIPELINE_DEPTH = {"load": 4, "gemm": 8, "store": 12}  # stages from an iteration's start to its write
AXI_LATENCY = 64  # cycles from a burst's request to its first beat (the accelerator's dram.latency)


@cache
def ip_iis(shape: CoreShape) -> dict[str, int]:
    """The II of each IP's pipelined loops (the largest), from the generated sources (hls_ii)."""
    from codax.codegen.core_hw import ip_loop_iis

    return ip_loop_iis(shape)


def insn_trips(shape: CoreShape, kind: str, f: dict, res_bits: int | None = None) -> int:
    """The iterations of the pipelined loops the instruction's IP runs (`res_bits`: a STORE's residual
    width, which its layer record holds, not its fields)."""
    if kind == "gemm":
        return f.get("iter_out", 0) * f.get("iter_in", 0) * max(0, f.get("uop_end", 0) - f.get("uop_bgn", 0))
    if kind == "load":
        grid = (f.get("y_pad_0", 0) + f.get("y_size", 0) + f.get("y_pad_1", 0)) * (
            f.get("x_pad_0", 0) + f.get("x_size", 0) + f.get("x_pad_1", 0)
        )
        data = f.get("y_size", 0) * f.get("x_size", 0)
        memory = {v: k for k, v in MEMORIES.items()}[f.get("memory", 0)]
        return data * unit_beats(shape, memory, shape.in_widths[f.get("width", 0)]) + grid - data
    if kind == "store":
        res = bool(f.get("res", 0))
        period = max(f.get("blocks", 0), vector_beats(shape, shape.in_widths[f.get("width", 0)]))
        if res:
            period = max(period, vector_beats(shape, res_bits or max(shape.in_widths)))
        return shape.cols + f.get("y_size", 0) * (f.get("x_size", 0) + 1 + int(res)) * period
    return 0


def insn_cycles(
    shape: CoreShape, kind: str, f: dict, trips: int | None = None, res_bits: int | None = None
) -> int:
    """The instruction's cycles from its loops' iterations (`trips`: as counted, else `insn_trips`)."""
    n = insn_trips(shape, kind, f, res_bits) if trips is None else trips
    ii = ip_iis(shape)[kind]
    if kind == "gemm":
        return n * ii + PIPELINE_DEPTH["gemm"]
    if kind == "load":
        return n * ii + AXI_LATENCY + PIPELINE_DEPTH["load"]
    if kind == "store":  # the parameters' loop, then one pipelined loop per row
        return n * ii + AXI_LATENCY + (1 + f.get("y_size", 0)) * PIPELINE_DEPTH["store"]
    return 0
