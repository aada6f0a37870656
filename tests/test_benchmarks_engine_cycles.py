"""benchmarks/engine_cycles.py's timeline with the instruction fetch: small programs timed by hand, and a
compiled layer replayed from the C-simulation's counts against core_sim's own timing."""

import numpy as np
import pytest

from benchmarks.engine_cycles import CountingEngine, Fetch, Insn, fetch_timing, timeline

LOAD, GEMM, STORE = 0, 1, 2
L2G, G2L, G2S = (LOAD, GEMM), (GEMM, LOAD), (GEMM, STORE)


def _fetch(latency=64, depth=512, per_beat=1):
    return Fetch(latency, 1, 1, per_beat, (depth, depth, depth))


def test_chain_waits_one_round_trip():
    """load -> gemm -> store through tokens: without the fetch 10 + 5 + 3 cycles from 0; with it the load
    starts when the first instruction is back (64), and the others arrived long before they may start."""
    prog = [Insn(LOAD, 10, (), (L2G,)), Insn(GEMM, 5, (L2G,), (G2S,)), Insn(STORE, 3, (G2S,)), Insn(None, 0)]
    bare, fetched = timeline(prog, None), timeline(prog, _fetch())
    assert (bare.cycles, bare.busy, bare.insn_wait) == (18, [10, 5, 3], [0, 0, 0])
    assert (fetched.cycles, fetched.busy, fetched.insn_wait) == (82, [10, 5, 3], [64, 0, 0])


def test_beats_of_several_instructions():
    """Four instructions a beat: the fetch still writes one a cycle, so the second independent module's
    instruction arrives one cycle after the first (latency 10)."""
    prog = [Insn(LOAD, 4), Insn(STORE, 30)]
    assert timeline(prog, _fetch(10, per_beat=4)).cycles == 11 + 30


def test_full_queue_holds_the_fetch():
    """Queues of 2: loads 0 and 1 arrive at 4 and 5; load 2 once load 0 is read (4) and its beat is back
    (6); load 3 once load 1 is read (14, when load 0 ends); the gemm behind them at 15 instead of 8."""
    prog = [Insn(LOAD, 10)] * 4 + [Insn(GEMM, 100)]
    deep, shallow = timeline(prog, _fetch(4, depth=512)), timeline(prog, _fetch(4, depth=2))
    assert (deep.cycles, deep.insn_wait) == (8 + 100, [4, 8, 0])
    assert (shallow.cycles, shallow.insn_wait) == (15 + 100, [4, 15, 0])


def test_full_queue_deadlocks():
    """A queue of one: load 0 is read and waits for the gemm's token, load 1 fills the queue, load 2
    cannot enter, and the gemm behind it never arrives."""
    prog = [Insn(LOAD, 1, (G2L,)), Insn(LOAD, 1), Insn(LOAD, 1), Insn(GEMM, 1, (), (G2L,))]
    assert timeline(prog, None).cycles == 1 + 3  # every instruction there: the gemm runs first
    with pytest.raises(RuntimeError, match="deadlocks"):
        timeline(prog, _fetch(4, depth=1))


def test_compiled_layer_replays_core_sim():
    """A tiled 3x3 layer compiled for zc706-int8: the replay of the counted instructions with every one
    present at cycle 0 is core_sim's run (cycles and each module's busy cycles); through the fetch its
    queues never fill (a few dozen instructions), so it ends one round trip later."""
    from codax.codegen.core import core_shape
    from codax.codegen.core_compile import CoreLayer, Tiling, compile_layer
    from codax.codegen.core_layout import Conv
    from codax.hw import load_accelerator

    shape = core_shape(load_accelerator("zc706-int8"))
    conv = Conv(1, 48, 40, 8, 8, 3, 3, (1, 1), (1, 1))
    layer = CoreLayer(
        "l", conv, 8, True, 0, 8, 8, np.zeros((40, 48, 3, 3), np.int64), np.zeros(40, np.int32), True,
        np.ones(40, np.float32), False, 8,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (48, 8, 8))
    prog = compile_layer(shape, layer, Tiling(blocks=2, rows=2, chunk=1, double=True), x=x)
    engine = CountingEngine(shape)
    run, insns = engine.run_counted(prog)
    bare = timeline(insns, None)
    assert (bare.cycles, dict(zip(("load", "gemm", "store"), bare.busy))) == (run.cycles, run.busy)
    fetch = fetch_timing(shape)
    assert timeline(insns, fetch).cycles == run.cycles + fetch.latency
