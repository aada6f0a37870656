"""Property: for random layers (strides, pads, dilations, groups, depthwise, partial tiles) and random
legal mappings (every loop order, bypassed levels, per-PE levels, double buffering) the instrumented
C-simulation equals the golden model bit for bit and its transfer counts equal the cost model's."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codax.codegen import LayerKernel, compare_counts, golden_layer, random_params
from tests.codegen.cases import random_case, random_input


def check_case(seed: int, kind: str = "int") -> bool:
    case = random_case(seed, kind)
    if case is None:
        return False
    layer, accel, mapping = case
    rng = np.random.default_rng(seed)
    p = random_params(layer, rng, signed_x=bool(seed % 2))
    k = LayerKernel(layer, accel, mapping, count=True)
    x = random_input(layer, rng, p)
    y, counts = k(p, x)
    g = golden_layer(layer, p, x)
    if kind == "int":
        assert np.array_equal(y, g), f"seed {seed}: csim != golden on {layer} {mapping}"
    else:
        np.testing.assert_allclose(y, g, rtol=1e-4, atol=1e-4)
    check = compare_counts(layer, accel, mapping, counts)
    assert check.ok, f"seed {seed}: {check}\n{layer}\n{mapping}"
    return True


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1))
def test_random_int_layers_and_mappings(seed):
    check_case(seed, "int")


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1))
def test_random_float_layers_and_mappings(seed):
    check_case(seed, "float")


@pytest.mark.slow
def test_count_equality_sweep():
    """A fixed sweep of 120 seeds (about 5 minutes on 2 cores)."""
    done = sum(check_case(seed) for seed in range(1000, 1120))
    assert done >= 100
