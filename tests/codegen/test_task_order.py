"""The engine's tasks (decode, a load and a store task per port, compute) meet only through their queues,
the dependence tokens and the buffers those tokens guard: each task keeps its own registers. In
hardware they run concurrently, in whatever interleaving the tokens allow. C-simulation can run them in
pseudo-random orders (EngineSim.schedule): every order must give the default order's output, bit for
bit, and its transfer and MAC counts. A missing or misplaced token shows up here as a changed output.
In every order the partial-sum token FIFOs hold no more than NestPlan.ps_tokens, the depth the
hardware FIFOs are given."""

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from codax.codegen import LayerKernel, golden_layer, random_params
from tests.codegen.cases import random_case, random_input


def run_in_order(k: LayerKernel, p, x, order: int):
    k.engine.schedule(order)
    try:
        return k(p, x)
    finally:
        k.engine.schedule(0)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1), orders=st.lists(st.integers(1, 2**32 - 1), min_size=2, max_size=2))
def test_any_task_order_gives_the_same_output_and_counts(seed, orders):
    case = random_case(seed, "int")
    assume(case is not None)
    layer, accel, mapping = case
    rng = np.random.default_rng(seed)
    p = random_params(layer, rng, signed_x=bool(seed % 2))
    x = random_input(layer, rng, p)
    k = LayerKernel(layer, accel, mapping, count=True)
    y0, c0 = k(p, x)
    assert np.array_equal(y0, golden_layer(layer, p, x))
    bound = k.plan.ps_tokens()  # the depth the ps FIFOs need (report.json token_fifos)
    for order in [0, *orders]:
        y, c = run_in_order(k, p, x, order)
        for h, level in enumerate(k.plan.level_names):
            assert c.ps_peak[level] <= bound.get(h, 0), f"seed {seed}, order {order}: ps[{level}] overflows"
        assert np.array_equal(y, y0), f"seed {seed}, order {order}: output differs on {layer} {mapping}"
        assert (c.words_in, c.words_out, c.macs, c.dram_beats) == (
            c0.words_in,
            c0.words_out,
            c0.macs,
            c0.dram_beats,
        )


def test_default_order_is_restored():
    """A random order is local to the calls that ask for it: the cycle figures use the default."""
    case = next(c for c in map(random_case, range(100, 200)) if c is not None)
    layer, accel, mapping = case
    rng = np.random.default_rng(0)
    p = random_params(layer, rng)
    x = random_input(layer, rng, p)
    k = LayerKernel(layer, accel, mapping, count=True)
    _, c0 = k(p, x)
    run_in_order(k, p, x, 12345)
    _, c1 = k(p, x)
    assert c1.cycles == c0.cycles
