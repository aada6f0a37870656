"""Cycles of one core instruction, from the loops its IP runs: each IP is one pipelined loop (the II its
reader finds in the generated sources, codax.codegen.hls_ii) over a trip count the instruction's fields
give, plus the pipeline's depth and, for the IPs on DRAM, one AXI round trip per burst.

    LOAD   data units x their beats + pad units (one iteration each); one AXI round trip
    GEMM   iter_out x iter_in x (uop_end - uop_bgn) steps
    STORE  rows x pixels x beats per output vector; one burst per row

The IIs are measured once per core shape (`ip_iis`) and are 1 on the library's accelerators (tests/
codegen/test_core_engine_hls.py); a loop the reader finds slower makes its instructions slower here.
"""

from __future__ import annotations

from functools import lru_cache

from codax.codegen.core import CoreShape
from codax.codegen.core_load import MEMORIES, unit_beats, vector_beats

PIPELINE_DEPTH = {"load": 4, "gemm": 8, "store": 12}  # stages from an iteration's start to its write
AXI_LATENCY = 64  # cycles from a burst's request to its first beat (the accelerator's dram.latency)


@lru_cache(maxsize=None)
def ip_iis(shape: CoreShape) -> dict[str, int]:
    """The II of each IP's pipelined loop, from the generated sources (codax.codegen.hls_ii)."""
    from codax.codegen.core_hw import ip_loop_iis

    return ip_loop_iis(shape)


def insn_cycles(shape: CoreShape, kind: str, f: dict) -> int:
    ii = ip_iis(shape)[kind]
    if kind == "gemm":
        steps = f.get("iter_out", 1) * f.get("iter_in", 1) * (f.get("uop_end", 0) - f.get("uop_bgn", 0))
        return steps * ii + PIPELINE_DEPTH["gemm"]
    if kind == "load":
        rows = f.get("y_pad_0", 0) + f.get("y_size", 0) + f.get("y_pad_1", 0)
        units = f.get("x_pad_0", 0) + f.get("x_size", 0) + f.get("x_pad_1", 0)
        data = f.get("y_size", 0) * f.get("x_size", 0)
        memory = {v: k for k, v in MEMORIES.items()}[f.get("memory", 0)]
        beats = data * unit_beats(shape, memory, shape.in_widths[f.get("width", 0)])
        return (beats + rows * units - data) * ii + AXI_LATENCY + PIPELINE_DEPTH["load"]
    if kind == "store":
        vb = vector_beats(shape, shape.in_widths[f.get("width", 0)])
        return f.get("y_size", 0) * f.get("x_size", 0) * vb * ii + AXI_LATENCY + PIPELINE_DEPTH["store"]
    return 0
