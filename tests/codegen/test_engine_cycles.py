"""Properties of the engine's cycle accounting (codax_engine.h) over random layers and legal mappings:
the accounted cycles respect the roofline (cycles >= MACs / PEs and >= the DRAM bytes the engine moved
at the DRAM port's width), and double buffering a level never makes the same mapping slower; and on
layers mapped by codax's mapper they agree with the cost model."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codax.codegen import LayerKernel, random_params
from codax.errors import CodaxError
from codax.hw import evaluate, load_accelerator
from codax.hw.mapper import map_layer
from codax.ir import Mapping, conv2d, dense, validate_mapping
from codax.ir.descriptor import WORDS
from tests.codegen.cases import random_case, random_input


def accounted(layer, accel, mapping, seed):
    rng = np.random.default_rng(seed)
    p = random_params(layer, rng)
    k = LayerKernel(layer, accel, mapping, count=True)
    return k(p, random_input(layer, rng, p))[1]


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1))
def test_accounted_cycles_respect_the_roofline_and_double_buffering_helps(seed):
    case = random_case(seed, "int")
    if case is None:
        return
    layer, accel, mapping = case
    counts = accounted(layer, accel, mapping, seed)
    pes = accel.engine(mapping.engine).pe_array.pes
    assert counts.cycles >= counts.macs / pes
    cost = evaluate(layer, accel, mapping)
    dram_bytes = cost.dram_bytes  # equal to the engine's (counts test)
    assert counts.cycles >= dram_bytes / accel.dram.bandwidth - 1e-9
    # the DRAM port moves whole beats: every weight and every final output crosses it at least once
    # (inputs may be mostly padding, which is never read), and so does the descriptor
    desc_beats = math.ceil(WORDS * 4 / accel.dram.bandwidth)
    p = layer.precision
    once = (layer.operand_size("W") * p.weight + layer.operand_size("O") * p.out) / 8
    assert counts.dram_beats >= once / accel.dram.bandwidth + desc_beats - 1e-9
    assert counts.cycles >= counts.dram_beats + accel.dram.latency  # one port, one beat per cycle
    assert cost.fetch_cycles == accel.dram.latency + desc_beats
    # the same mapping with one more level double-buffered (where both copies still fit)
    for lv in accel.engine(mapping.engine).levels:
        if mapping.double_buffer.get(lv.name):
            continue
        more = dataclasses.replace(mapping, double_buffer={**mapping.double_buffer, lv.name: True})
        try:
            validate_mapping(layer, accel, more)
        except CodaxError:
            continue
        assert accounted(layer, accel, more, seed).cycles <= counts.cycles + 1e-9, (lv.name, mapping)


# Layers of the shapes the benchmarks run (3x3, strided 3x3, 1x1, depthwise, a classifier), each
# mapped by codax's mapper: the engine's accounted cycles are the model's (docs/cost_model.md).
AGREEMENT_LAYERS = [
    conv2d("c3", c_in=64, c_out=64, hw=(8, 8), pads=(1, 1, 1, 1)),
    conv2d("c3s2", c_in=32, c_out=64, hw=(16, 16), stride=(2, 2), pads=(1, 1, 1, 1)),
    conv2d("c1", c_in=96, c_out=24, hw=(8, 8), kernel=(1, 1)),
    conv2d("dw", c_in=96, c_out=96, hw=(16, 16), pads=(1, 1, 1, 1), groups=96),
    dense("fc", c_in=256, c_out=10),
]


@pytest.mark.parametrize("accel_name", ["zc706-int8", "zcu102-int8"])
def test_accounted_cycles_agree_with_the_model_on_mapped_layers(accel_name):
    accel = load_accelerator(accel_name)
    ratios = []
    for layer in AGREEMENT_LAYERS:
        mapping = map_layer(layer, accel).mapping
        cost = evaluate(layer, accel, mapping)
        counts = accounted(layer, accel, mapping, 0)
        model, code = cost.cycles, counts.cycles
        ratios.append(code / model)
        assert abs(code / model - 1) <= 0.10, (layer.name, code, model, mapping)
        # the beats the engine's addresses touch and the model's expectation over alignments
        assert abs(counts.dram_beats / cost.dram_beats - 1) <= 0.05, (
            layer.name,
            counts.dram_beats,
            cost.dram_beats,
        )
    assert abs(math.exp(sum(map(math.log, ratios)) / len(ratios)) - 1) <= 0.03, ratios


def test_short_rows_cost_whole_beats():
    # A 1x1 convolution over 16 channels of an 8x8 int8 input on a 64-byte DRAM port: a channel plane
    # is 64 B, so the whole input is one 1 KiB run, 16 beats. Tiled by output rows (8 DRAM tiles of
    # one row), every input tile is 16 rows of 8 B lying 64 B apart: one beat per row, 16 beats for
    # 128 bytes; the outputs likewise. The engine counts what its addresses touch.
    layer = conv2d("pw", c_in=16, c_out=16, hw=(8, 8), kernel=(1, 1))
    accel = load_accelerator("zcu102-int8")
    desc = math.ceil(WORDS * 4 / 64)
    whole = Mapping("pw", spatial={"rows": ("K", 16), "cols": ("C", 16)}, tiles={"BUF": {"P": 8, "Q": 8}})
    validate_mapping(layer, accel, whole)
    # weights 256 B (4 beats), inputs and outputs 1 KiB each (16 beats)
    assert accounted(layer, accel, whole, 0).dram_beats == desc + 4 + 16 + 16
    rows = Mapping(
        "pw", spatial={"rows": ("K", 16), "cols": ("C", 16)}, tiles={"DRAM": {"P": 8}, "BUF": {"Q": 8}}
    )  # fmt: skip
    validate_mapping(layer, accel, rows)
    per_row = accounted(layer, accel, rows, 0)
    # weights once (4 beats); per output row, inputs 16 rows of 8 B (16 beats), outputs likewise
    assert per_row.dram_beats == desc + 4 + 8 * 16 + 8 * 16
    for m, code in ((whole, desc + 36), (rows, per_row.dram_beats)):
        assert evaluate(layer, accel, m).dram_beats == pytest.approx(code, rel=0.05)
