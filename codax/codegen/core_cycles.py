"""Cycles of one core instruction, from the loops its IP runs: the iterations of the IP's pipelined loops
(`insn_trips`, from the instruction's fields) times the II the reader finds for them in the generated
sources (codax.codegen.hls_ii), plus a pipeline fill per loop invocation that runs (`insn_loops`) and an
AXI round trip per DRAM burst:

    LOAD   per data row one burst loop (DATA: x_size units x their beats), the pad runs between the
           bursts one loop each (PAD: one iteration a unit, no DRAM); a round trip per row burst
    GEMM   iter_out x iter_in x (uop_end - uop_bgn) steps; one loop
    STORE  COLS parameter entries (PARAMS), then per row the residual's burst (RES_IN: x_size x VB(w_res)
           beats), the pixels' blocks (PIXELS: x_size x blocks) and the output's burst (BEATS_OUT: x_size
           x VB(w) beats); a round trip per row burst, each way

A burst is its own loop, one after the other in the IP's code, so each pays its round trip: the
request goes out when the loop starts and its first beat is back AXI_LATENCY later, and no two loops
overlap (no DATAFLOW between them). The C-simulation counts the same iterations as the IPs run them (the
hooks of codax.codegen.core_system) and times the program from the counts (codax.codegen.core_sim);
`insn_trips` is what a model predicts without running anything (codax.codegen.core_model), so the two
agree only if the formula describes the loops. The IIs are measured once per core shape (`ip_iis`); a
loop the reader finds slower makes its instructions slower here.
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


def _load_runs(f: dict) -> tuple[list[int], int]:
    """A LOAD's pad runs (units of each PAD loop invocation, core_load's order) and its data row bursts."""
    ys, xs = f.get("y_size", 0), f.get("x_size", 0)
    xp0, xp1 = f.get("x_pad_0", 0), f.get("x_pad_1", 0)
    units = xp0 + xs + xp1
    lead = f.get("y_pad_0", 0) * units + (xp0 if ys else 0)
    tail = f.get("y_pad_1", 0) * units + (xp1 if ys else 0)
    pads = [lead + tail] if ys == 0 else [lead, *[xp1 + xp0] * (ys - 1), tail]
    return pads, ys if xs else 0


def _store_beats(shape: CoreShape, f: dict, res_bits: int | None) -> tuple[int, int]:
    """VB(w) of a STORE's output and of its residual (0 without one)."""
    vb_out = vector_beats(shape, shape.in_widths[f.get("width", 0)])
    vb_res = vector_beats(shape, res_bits or max(shape.in_widths)) if f.get("res", 0) else 0
    return vb_out, vb_res


def _store_blocks(shape: CoreShape, f: dict) -> int:
    """Accumulator vectors a STORE requantizes per pixel: its `blocks` field, or 1 where the format has
    `part` instead (ROWS > COLS: core_store.store_format)."""
    return f.get("blocks", 0) if shape.cols >= shape.rows else 1


def insn_trips(shape: CoreShape, kind: str, f: dict, res_bits: int | None = None) -> int:
    """The iterations of the pipelined loops the instruction's IP runs (`res_bits`: a STORE's residual
    width, which its layer record holds, not its fields)."""
    if kind == "gemm":
        return f.get("iter_out", 0) * f.get("iter_in", 0) * max(0, f.get("uop_end", 0) - f.get("uop_bgn", 0))
    if kind == "load":
        pads, _ = _load_runs(f)
        memory = {v: k for k, v in MEMORIES.items()}[f.get("memory", 0)]
        beats = unit_beats(shape, memory, shape.in_widths[f.get("width", 0)])
        return f.get("y_size", 0) * f.get("x_size", 0) * beats + sum(pads)
    if kind == "store":
        vb_out, vb_res = _store_beats(shape, f, res_bits)
        per_pixel = vb_res + _store_blocks(shape, f) + vb_out
        return shape.cols + f.get("y_size", 0) * f.get("x_size", 0) * per_pixel
    return 0


def insn_loops(shape: CoreShape, kind: str, f: dict, res_bits: int | None = None) -> tuple[int, int]:
    """(pipelined loop invocations that run at least one iteration, DRAM bursts among them)."""
    if kind == "gemm":
        return 1, 0
    if kind == "load":
        pads, bursts = _load_runs(f)
        return sum(n > 0 for n in pads) + bursts, bursts
    if kind == "store":
        vb_out, vb_res = _store_beats(shape, f, res_bits)
        rows = f.get("y_size", 0) if f.get("x_size", 0) else 0
        bursts = rows * (int(vb_res > 0) + 1)
        return 1 + rows * int(_store_blocks(shape, f) > 0) + bursts, bursts
    return 0, 0


def insn_cycles(
    shape: CoreShape, kind: str, f: dict, trips: int | None = None, res_bits: int | None = None
) -> int:
    """The instruction's cycles from its loops' iterations (`trips`: as counted, else `insn_trips`): the
    iterations at the IP's II, a pipeline fill per loop that runs and a round trip per burst."""
    if kind not in PIPELINE_DEPTH:
        return 0
    n = insn_trips(shape, kind, f, res_bits) if trips is None else trips
    loops, bursts = insn_loops(shape, kind, f, res_bits)
    return n * ip_iis(shape)[kind] + loops * PIPELINE_DEPTH[kind] + bursts * AXI_LATENCY
