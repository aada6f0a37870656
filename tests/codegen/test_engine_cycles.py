"""Properties of the engine's cycle accounting (codax_engine.h) over random layers and legal mappings:
the accounted cycles respect the roofline (cycles >= MACs / PEs and >= the DRAM bytes the engine moved
at the DRAM port's width), and double buffering a level never makes the same mapping slower."""

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codax.codegen import LayerKernel, random_params
from codax.errors import CodaxError
from codax.hw import evaluate
from codax.ir import validate_mapping
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
    dram_bytes = evaluate(layer, accel, mapping).dram_bytes  # equal to the engine's (counts test)
    assert counts.cycles >= dram_bytes / accel.dram.bandwidth - 1e-9
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
