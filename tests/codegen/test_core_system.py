"""The core engine's C-simulation hooks (codax/codegen/core_system.py) on a whole layer: the iterations
each IP's pipelined loops ran, counted by the hooks the IPs call, against the loop nests the layer's
instructions describe (VTA's GEMM loops; the LOAD's beats and pad units; the STORE's parameter entries
and pixel periods) as the cycle model reads them from the instructions' fields
(codax.codegen.core_cycles.insn_trips)."""

import numpy as np
import pytest

from codax.codegen.core import core_shape
from codax.codegen.core_compile import CoreLayer, compile_layer
from codax.codegen.core_cycles import insn_cycles, insn_trips
from codax.codegen.core_sim import Engine, output
from codax.codegen.golden import golden_layer
from codax.codegen.params import random_params
from codax.hw.library import load_accelerator
from codax.ir import Epilogue, Precision, conv2d


@pytest.fixture(scope="module")
def engine():
    return Engine(core_shape(load_accelerator("zc706-int8")))


def expected_trips(shape, prog) -> dict[str, int]:
    """The iterations the cycle model predicts from the instructions' fields (core_cycles.insn_trips)."""
    out = {"load": 0, "gemm": 0, "store": 0}
    for fmt, f in prog.queue:
        if fmt.kind in out:
            out[fmt.kind] += insn_trips(shape, fmt.kind, f, res_bits=prog.layer.r_bits)
    return out


@pytest.mark.parametrize(
    "bits, residual, c, k",
    [(8, False, 40, 48), (8, True, 32, 32), (4, False, 24, 24), (6, True, 20, 40)],
)
def test_the_hooks_count_every_loop_iteration_of_a_layer(engine, bits, residual, c, k):
    """Widths change the beats a vector takes (8: 2, 6: 2, 4: 1 on zc706-int8), a residual the store's
    period and lead, an odd number of row blocks the last store's blocks."""
    layer = conv2d(
        "l", c_in=c, c_out=k, hw=(9, 7), kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1),
        precision=Precision(weight=bits, act=bits, out=bits),
        epilogue=Epilogue(bias=True, activation="relu", residual="r" if residual else None, requant=True),
        inputs=("x",), outputs=("y",),
    )  # fmt: skip
    rng = np.random.default_rng(2)
    params = random_params(layer, rng, signed_x=True)
    half = 1 << (bits - 1)
    x = rng.integers(-half, half, (c, 9, 7))
    res = rng.integers(-half, half, (k, 9, 7)) if residual else None
    prog = compile_layer(engine.shape, CoreLayer.of(layer, params), x=x, residual=res)
    engine.trips()  # reset
    result = engine.run(prog)
    got = engine.trips()
    want_y = golden_layer(layer, params, x[None], None if res is None else res[None])[0]
    np.testing.assert_array_equal(output(prog, result), want_y)
    # engine.run reads the counts per instruction (its timing), so they are read back from its busy time
    want = expected_trips(engine.shape, prog)
    model_busy = {kind: 0 for kind in want}
    for fmt, f in prog.queue:
        if fmt.kind in model_busy:
            model_busy[fmt.kind] += insn_cycles(engine.shape, fmt.kind, f, res_bits=prog.layer.r_bits)
    assert want["gemm"] > 0 and want["store"] > 0 and want["load"] > 0
    assert result.busy == model_busy
    assert got == {"load": 0, "gemm": 0, "store": 0}  # engine.run consumed every count


def test_cycles_pay_a_fill_per_loop_and_a_round_trip_per_row_burst(engine):
    """A ResNet-18 3x3 layer's instructions on zc706-int8 (II 1, fill 4 / 12, AXI round trip 64), by hand:
    an input load of 3 rows of 56 vectors (2 beats each) and a 1-vector pad either side runs 4 pad runs
    (1, 2, 2, 1 units) and 3 row bursts; a store of a 56-pixel row with 2 blocks and an 8-bit residual
    runs PARAMS, then RES_IN, PIXELS and BEATS_OUT, two of them bursts."""
    shape = engine.shape
    load = dict(memory=2, width=0, y_size=3, x_size=56, x_stride=56, x_pad_0=1, x_pad_1=1)
    assert insn_trips(shape, "load", load) == 3 * 56 * 2 + 6 == 342
    assert insn_cycles(shape, "load", load) == 342 + 7 * 4 + 3 * 64
    padded = dict(load, y_pad_0=1, y_size=2)  # the first row of the image: a pad row first
    assert insn_trips(shape, "load", padded) == 2 * 56 * 2 + (58 + 1) + 2 + 1 == 286  # pad runs 59, 2, 1
    assert insn_cycles(shape, "load", padded) == 286 + (3 + 2) * 4 + 2 * 64
    store = dict(y_size=1, x_size=56, x_stride=56, blocks=2, width=0, res=1)
    assert insn_trips(shape, "store", store, res_bits=8) == 32 + 56 * (2 + 2 + 2) == 368
    assert insn_cycles(shape, "store", store, res_bits=8) == 368 + 4 * 12 + 2 * 64
