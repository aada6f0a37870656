"""The descriptor fetch hidden behind work (codax_engine.h, "the descriptor fetch"): a program's calls run
in order find their descriptors prefetched by the call before, an out-of-order call fetches its own,
the results do not depend on which, and the cost model's exposed fetch (codax.hw.evaluate.chain_calls)
is the code's."""

import math

import numpy as np
import pytest

from codax.codegen import LayerKernel, random_params
from codax.hw import evaluate, load_accelerator
from codax.hw.evaluate import chain_calls
from codax.hw.mapper import map_layer
from codax.ir import conv2d, dense
from codax.ir.descriptor import WORDS
from tests.codegen.cases import random_input

ACCEL = "zc706-int8"


def round_trip(accel) -> float:
    """One descriptor through the DRAM port: the latency, then DESC_WORDS int32 words in beats."""
    return accel.dram.latency + math.ceil(WORDS * 4 / accel.dram.bandwidth)


def program_of(layers, accel):
    kernels = [LayerKernel(la, accel, map_layer(la, accel).mapping, count=True) for la in layers]
    params = [random_params(la, np.random.default_rng(i)) for i, la in enumerate(layers)]
    program = np.stack([k.descriptor(p) for k, p in zip(kernels, params)])
    inputs = [
        random_input(la, np.random.default_rng(100 + i), p) for i, (la, p) in enumerate(zip(layers, params))
    ]
    return kernels, params, program, inputs


def run(kernels, params, program, inputs, order):
    return {i: kernels[i](params[i], inputs[i], program=program, call=i) for i in order}


def long_layers():
    return [conv2d(f"c{i}", c_in=16, c_out=16, hw=(8, 8), pads=(1, 1, 1, 1)) for i in range(3)]


def test_calls_in_order_pay_the_fetch_once():
    accel = load_accelerator(ACCEL)
    kernels, params, program, inputs = program_of(long_layers(), accel)
    f = round_trip(accel)
    out = run(kernels, params, program, inputs, range(3))
    fetch = [out[i][1].fetch_cycles for i in range(3)]
    own = [out[i][1].cycles - fetch[i] for i in range(3)]
    assert min(own) > f  # each layer outlasts its prefetch
    assert fetch == [f, 0.0, 0.0]
    # the same layer on its own (a program of one call) fetches its descriptor and prefetches nothing:
    # in a program it saves the fetch and spends the prefetch's beats on its DRAM port instead
    y_alone, alone = kernels[1](params[1], inputs[1])
    assert alone.fetch_cycles == f
    assert out[1][1].cycles == pytest.approx(alone.cycles - f + math.ceil(WORDS * 4 / accel.dram.bandwidth))
    # the prefetched descriptor runs the same layer
    np.testing.assert_array_equal(out[1][0], y_alone)


def test_an_out_of_order_call_fetches_its_descriptor():
    accel = load_accelerator(ACCEL)
    kernels, params, program, inputs = program_of(long_layers(), accel)
    f = round_trip(accel)
    in_order = run(kernels, params, program, inputs, range(3))
    out = run(kernels, params, program, inputs, [0, 2])  # call 1 skipped: call 2 was not prefetched
    assert out[2][1].fetch_cycles == f
    np.testing.assert_array_equal(out[2][0], in_order[2][0])
    # running call 0 again starts a new run: it fetches, then call 1 finds its descriptor on chip
    out = run(kernels, params, program, inputs, [0, 1])
    assert [out[0][1].fetch_cycles, out[1][1].fetch_cycles] == [f, 0.0]


def test_a_program_row_that_is_not_the_layers_descriptor_is_refused():
    accel = load_accelerator(ACCEL)
    kernels, params, program, inputs = program_of(long_layers()[:2], accel)
    kernels[0](params[0], inputs[0], program=program, call=0)  # prefetches call 1
    with pytest.raises(ValueError, match="not this layer's descriptor"):
        kernels[1](params[1], inputs[1], program=program[::-1].copy(), call=1)


def test_the_models_exposed_fetch_is_the_codes():
    """A small network of long and short layers. The model's exposed fetch per call is the code's, up to
    how far the model's cycles of the call before are from the code's (relu is 1-Lipschitz); the first
    call's is exact. Every layer reads DRAM after its prefetch (the port's first transfer), so no layer
    ends before the next descriptor is in: the network waits for one round trip."""
    accel = load_accelerator(ACCEL)
    layers = [
        conv2d("a", c_in=16, c_out=16, hw=(8, 8), pads=(1, 1, 1, 1)),
        dense("short", c_in=4, c_out=4),
        conv2d("b", c_in=16, c_out=16, hw=(4, 4), pads=(1, 1, 1, 1)),
        dense("fc", c_in=64, c_out=10),
    ]
    kernels, params, program, inputs = program_of(layers, accel)
    out = run(kernels, params, program, inputs, range(len(layers)))
    code = [out[i][1] for i in range(len(layers))]
    model = chain_calls([evaluate(la, accel, k.mapping) for la, k in zip(layers, kernels)], accel)
    f = round_trip(accel)
    assert code[0].fetch_cycles == model[0].fetch_cycles == f
    for i in range(1, len(layers)):
        own_code = code[i - 1].cycles - code[i - 1].fetch_cycles
        own_model = model[i - 1].cycles - model[i - 1].fetch_cycles
        assert abs(code[i].fetch_cycles - model[i].fetch_cycles) <= abs(own_code - own_model) + 1e-6, i
        assert code[i].cycles == pytest.approx(model[i].cycles, rel=0.10), layers[i].name
    assert sum(c.fetch_cycles for c in code) == sum(m.fetch_cycles for m in model) == f
