"""C-simulation of the core engine: the generated IPs (core_load, core_gemm, core_store) compiled into
one library with a DRAM of beats, driven instruction by instruction the way VTA's modules run --
three in-order queues (load, compute, store) that pop and push dependence tokens -- by a scheduler that
lives here, outside the synthesized sources. The scheduler runs any module whose next instruction's
tokens are available, preferring the one furthest upstream, so a missing token shows up as a buffer
overwritten early (a wrong result), and a token nobody pushes as a deadlock (an error naming it).

The same walk times the program: each module is busy for its instruction's cycles -- the iterations its
IP's pipelined loops ran, counted by the C-simulation hooks, at the II the reader finds
(codax.codegen.core_cycles) -- and starts an instruction once the module is free and the tokens it pops
were pushed.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from codax.codegen import core
from codax.codegen.core import CoreShape
from codax.codegen.core_compile import CoreProgram
from codax.codegen.core_cycles import insn_cycles
from codax.codegen.csim import compile_cached

MODULE = {"load": 0, "gemm": 1, "store": 2}

EXEC = """
// C-simulation only: one DRAM of beats that every IP's ports address, and one instruction run at a time
// through its IP and dependence queues (codax_core::dispatch, core_csim.cpp); the scheduler is
// codax/codegen/core_sim.py.
#include <vector>
#include "core_system.h"
#include "core_csim.h"
static std::vector<codax_core::beat_t> codax_dram;

extern "C" {
void codax_core_dram_put(const unsigned char *bytes, long beats) {
  using namespace codax_core;
  codax_dram.assign(beats, beat_t(0));
  for (long b = 0; b < beats; ++b)
    for (int i = 0; i < BEAT_BITS / 8; ++i)
      codax_dram[b].range(8 * i + 7, 8 * i) = bytes[b * (BEAT_BITS / 8) + i];
}

void codax_core_dram_get(unsigned char *bytes, long first, long beats) {
  using namespace codax_core;
  for (long b = 0; b < beats; ++b)
    for (int i = 0; i < BEAT_BITS / 8; ++i)
      bytes[b * (BEAT_BITS / 8) + i] = codax_dram[first + b].range(8 * i + 7, 8 * i).to_uint();
}

// one instruction: the tokens it pops were granted by the scheduler, those it pushes are counted there
void codax_core_exec(unsigned long long lo, unsigned long long hi) {
  using namespace codax_core;
  dispatch((insn_t(hi) << 64) | insn_t(lo), codax_dram.data(), codax_dram.data(), codax_dram.data());
}
}  // extern "C"
"""
EXEC_UNIT = "core_exec.cpp"


def engine_sources(shape: CoreShape) -> dict[str, str]:
    """The core's sources plus the C-simulation DRAM and dispatch (a unit of their own)."""
    return {**core.core_sources(shape), EXEC_UNIT: EXEC}


@dataclass
class RunResult:
    dram: bytes
    cycles: int
    busy: dict[str, int]  # cycles each module worked
    order: list[int]  # the program indices in the order the scheduler ran them


class Engine:
    """The compiled C-simulation library of one core shape."""

    def __init__(self, shape: CoreShape):
        self.shape = shape
        self.lib = ctypes.CDLL(str(compile_cached(engine_sources(shape), kind="shared")))
        self.lib.codax_core_exec.argtypes = [ctypes.c_ulonglong, ctypes.c_ulonglong]
        self.lib.codax_core_trips.argtypes = [ctypes.c_void_p]

    def trips(self) -> dict[str, int]:
        """Each IP's pipelined-loop iterations since the last call (the hooks' counts), then reset."""
        out = (ctypes.c_longlong * 3)()
        self.lib.codax_core_trips(out)
        return dict(zip(("load", "gemm", "store"), out))

    def run(self, prog: CoreProgram, upstream_first: bool = True) -> RunResult:
        bb = self.shape.beat_bits // 8
        data = bytes(prog.dram)
        self.lib.codax_core_dram_put(data, ctypes.c_long(len(data) // bb))
        self.trips()  # the hooks count from here

        queues: list[list[int]] = [[], [], []]
        for i, (fmt, _) in enumerate(prog.queue):
            if fmt.kind in MODULE:
                queues[MODULE[fmt.kind]].append(i)
        # tokens: (from, to) -> list of push times
        tokens: dict[tuple[int, int], list[int]] = {(0, 1): [], (1, 0): [], (1, 2): [], (2, 1): []}
        free = [0, 0, 0]
        busy = {"load": 0, "gemm": 0, "store": 0}
        heads = [0, 0, 0]
        order = []
        prefs = (0, 1, 2) if upstream_first else (2, 1, 0)
        while any(heads[m] < len(queues[m]) for m in range(3)):
            ran = False
            for m in prefs:
                if heads[m] >= len(queues[m]):
                    continue
                i = queues[m][heads[m]]
                fmt, f = prog.queue[i]
                pops = _pops(m, f)
                if any(not tokens[p] for p in pops):
                    continue
                start = max([free[m]] + [tokens[p].pop(0) for p in pops])
                word = prog.insns[i]
                self.lib.codax_core_exec(word & (2**64 - 1), word >> 64)
                # the instruction's time from its loops' iterations as the IP ran them (the hooks)
                cyc = insn_cycles(self.shape, fmt.kind, f, trips=self.trips()[fmt.kind])
                free[m] = start + cyc
                busy[fmt.kind] += cyc
                for p in _pushes(m, f):
                    tokens[p].append(free[m])
                heads[m] += 1
                order.append(i)
                ran = True
                break
            if not ran:
                stuck = {k: prog.queue[queues[m][heads[m]]][0].kind for k, m in MODULE.items()
                         if heads[m] < len(queues[m])}  # fmt: skip
                raise RuntimeError(f"the program deadlocks: waiting modules {stuck}, tokens {tokens}")
        out = ctypes.create_string_buffer(len(data))
        self.lib.codax_core_dram_get(out, ctypes.c_long(0), ctypes.c_long(len(data) // bb))
        return RunResult(out.raw, max(free), busy, order)


def _pops(m: int, f: dict) -> list[tuple[int, int]]:
    out = []
    if f.get("pop_prev") and m > 0:
        out.append((m - 1, m))
    if f.get("pop_next") and m < 2:
        out.append((m + 1, m))
    return out


def _pushes(m: int, f: dict) -> list[tuple[int, int]]:
    out = []
    if f.get("push_prev") and m > 0:
        out.append((m, m - 1))
    if f.get("push_next") and m < 2:
        out.append((m, m + 1))
    return out


def output(prog: CoreProgram, result: RunResult) -> np.ndarray:
    """The layer's output [K, OH, OW] from the run's DRAM."""
    from codax.codegen.core_compile import unblocked

    bb = prog.shape.beat_bits // 8
    first, beats = prog.regions["output"]
    oh, ow = prog.layer.conv.out
    data = result.dram[first * bb : (first + beats) * bb]
    return unblocked(prog.shape, data, prog.layer.k, oh, ow, prog.layer.y_bits, prog.layer.y_signed)
