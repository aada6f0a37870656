"""Matmuls of two run-time tensors (attention's Q K^T and A V) on the engine: for random batched
matmuls ([G, N, C] x [G, C, K] or x [G, K, C]), random quantization (unsigned second operands with
zero points) and random legal mappings, the C-simulation equals the golden model bit for bit, the
golden model equals numpy's batched matmul, and the engine's transfer counts equal the cost model's."""

import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codax.codegen import LayerKernel, compare_counts, golden_layer
from codax.codegen.params import LayerParams
from codax.ir import Epilogue, Layer, Precision
from tests.codegen.cases import ACCELS, legal_mapping


def _case(seed: int):
    r = random.Random(seed)
    g, n, c, k = r.randint(1, 4), r.randint(1, 9), r.randint(1, 12), r.randint(1, 12)
    layout = r.choice(["GCK", "GKC"])
    layer = Layer(
        "attn", N=n, G=g, K=k, C=c, op="matmul", in_hw=(1, 1), precision=Precision(),
        epilogue=Epilogue(requant=True, activation=r.choice([None, "relu"])), runtime_weight=layout,
    )  # fmt: skip
    accel = r.choice(ACCELS)
    m = legal_mapping(layer, accel, r)
    return None if m is None else (layer, accel, m)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1))
def test_runtime_weight_matmul_is_bit_exact_and_counted(seed):
    case = _case(seed)
    if case is None:
        return
    layer, accel, mapping = case
    rng = np.random.default_rng(seed)
    w_unsigned = bool(seed % 2)
    params = LayerParams(
        "int", None, None, w_scale=np.full(1, 0.03, np.float32), w_zero_point=int(rng.integers(0, 9)),
        x_scale=0.05, x_zero_point=int(rng.integers(-5, 5)), y_scale=0.4, y_zero_point=3,
        w_signed=not w_unsigned, activation=layer.epilogue.activation, out_channels=layer.G * layer.K,
    )  # fmt: skip
    x = rng.integers(-128, 128, (layer.G, layer.N, layer.C)).astype(np.int8)
    wshape = (layer.G, layer.C, layer.K) if layer.runtime_weight == "GCK" else (layer.G, layer.K, layer.C)
    w = rng.integers(0, 256, wshape).astype(np.uint8) if w_unsigned else rng.integers(-128, 128, wshape)
    w = w.astype(np.uint8 if w_unsigned else np.int8)
    y, counts = LayerKernel(layer, accel, mapping, count=True)(params, x, weight=w)
    gold = golden_layer(layer, params, x, weight=w)
    assert np.array_equal(y, gold.reshape(y.shape)), f"seed {seed}: csim != golden\n{layer}\n{mapping}"
    # the golden model itself: the batched matmul of the centred operands, requantized
    b = w if layer.runtime_weight == "GCK" else w.transpose(0, 2, 1)
    acc = np.matmul(x.astype(np.int64) - params.x_zero_point, b.astype(np.int64) - params.w_zero_point)
    v = np.rint(acc.astype(np.float32) * params.multiplier[0]) + params.y_zero_point
    lo, hi = params.clamp
    want = np.clip(v, lo, hi).astype(np.int8)
    assert np.array_equal(gold.reshape(want.shape), want)
    check = compare_counts(layer, accel, mapping, counts)
    assert check.ok, f"seed {seed}: {check}\n{layer}\n{mapping}"


def test_a_runtime_weight_is_required():
    layer = Layer("attn", N=2, G=2, K=3, C=4, op="matmul", in_hw=(1, 1), runtime_weight="GCK")
    params = LayerParams("float", None, None, out_channels=6)
    try:
        golden_layer(layer, params, np.zeros((2, 2, 4), np.float32))
    except ValueError as e:
        assert "run-time tensor" in str(e)
    else:
        raise AssertionError("a missing run-time weight must be refused")
