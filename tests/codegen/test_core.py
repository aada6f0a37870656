"""The GEMM core (codax/codegen/core.py) in C-simulation: random small convolutions and GEMMs packed by
the reference layout (codax/codegen/core_layout.py), each run as one instruction of the core's top in
one spatial mode of zc706-int8's 16 x 32 array, the accumulators compared bit-exactly with numpy's
integer convolution."""

import ctypes

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from codax.codegen.core import core_shape, core_sources
from codax.codegen.core_layout import Conv, plan, reference
from codax.codegen.csim import compile_cached
from codax.errors import UnsupportedError
from codax.hw.library import load_accelerator

SHAPE = core_shape(load_accelerator("zc706-int8"))


@pytest.fixture(scope="module")
def core():
    return ctypes.CDLL(str(compile_cached(core_sources(SHAPE))))


def ptr(a: np.ndarray):
    assert a.flags.c_contiguous  # the C side reads and writes the array's own memory
    return a.ctypes.data_as(ctypes.c_void_p)


def run(core, mode_name: str, conv: Conv, seed: int):
    """(the core's outputs, numpy's, the bias) for a random layer: int8 operands, a random int32 bias
    preloaded into the accumulators."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (conv.groups * conv.cg, conv.h, conv.w), dtype=np.int8)
    w = rng.integers(-128, 128, (conv.groups * conv.kg, conv.cg, conv.r, conv.s), dtype=np.int8)
    bias = rng.integers(-(1 << 20), 1 << 20, conv.groups * conv.kg).astype(np.int32)
    p = plan(SHAPE, SHAPE.mode(mode_name), conv, x, w)
    acc = np.ascontiguousarray(p.acc_with(bias))
    wgt, inp = np.ascontiguousarray(p.wgt), np.ascontiguousarray(p.inp)
    uops, fields = np.ascontiguousarray(p.uops), np.ascontiguousarray(p.fields)
    core.codax_core_load(ptr(uops), len(uops), ptr(wgt), ptr(inp), ptr(acc))
    core.codax_core_run(ptr(fields))
    out = np.zeros(p.acc_shape, np.int32)
    core.codax_core_read(ptr(out))
    expected = reference(conv, x, w) + bias[:, None, None]
    return p.outputs(out).astype(np.int64), expected, bias


# (mode, layer): each mode over stride, padding, dilation and groups where its lanes allow them
CASES = {
    "kxc-3x3-pad": ("kxc", Conv(1, 40, 20, 5, 6, 3, 3, pad=(1, 1))),
    "kxc-stride-dilation": ("kxc", Conv(1, 35, 17, 9, 8, 3, 2, stride=(2, 3), pad=(2, 1), dilation=(2, 2))),
    "kxc-groups": ("kxc", Conv(3, 12, 5, 4, 4, 3, 3, stride=(1, 2), pad=(1, 1))),
    "kxc-gemm": ("kxc", Conv(1, 70, 33, 1, 1, 1, 1)),
    "kxq-3x3-pad": ("kxq", Conv(1, 3, 20, 4, 40, 3, 3, pad=(1, 1))),
    "kxq-stride-dilation": ("kxq", Conv(1, 2, 9, 7, 70, 2, 3, stride=(2, 2), pad=(0, 3), dilation=(1, 3))),
    "kxq-groups": ("kxq", Conv(2, 2, 3, 3, 20, 3, 5, stride=(1, 3), pad=(1, 2))),
    "gxc-groups": ("gxc", Conv(20, 8, 3, 4, 4, 3, 3, pad=(1, 1))),
    "gxc-stride-dilation": ("gxc", Conv(5, 33, 2, 7, 7, 2, 2, stride=(2, 2), dilation=(2, 3))),
    "gxq-depthwise": ("gxq", Conv(20, 1, 1, 5, 36, 3, 3, pad=(1, 1))),
    "gxq-stride-dilation": ("gxq", Conv(7, 2, 2, 6, 50, 3, 3, stride=(2, 2), pad=(1, 1), dilation=(2, 2))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_core_matches_numpy_bit_exactly(core, case):
    mode, conv = CASES[case]
    for seed in range(2):
        got, expected, bias = run(core, mode, conv, seed)
        assert (expected != bias[:, None, None]).mean() > 0.9  # the products reach the outputs
        np.testing.assert_array_equal(got, expected)


def test_core_shape_of_zc706():
    # 16 x 32 array, int8 operands and int32 accumulators; words of 16 x 32 lanes from the BUF level's
    # bytes (128 KiB of weights and of inputs, 64 KiB of int32 accumulators), each mode's capacity in
    # its own vectors
    assert (SHAPE.rows, SHAPE.cols, SHAPE.op_bits, SHAPE.acc_bits) == (16, 32, 8, 32)
    assert (SHAPE.wgt_words, SHAPE.inp_words, SHAPE.acc_words) == (256, 256, 32)
    depths = {m.name: (m.wgt_depth, m.inp_depth, m.acc_depth) for m in SHAPE.modes}
    assert depths == {
        "kxc": (256, 4096, 1024),
        "kxq": (8192, 4096, 32),
        "gxc": (256, 256, 1024),
        "gxq": (8192, 256, 32),
    }


def accumulator_words(p) -> list[int]:
    """The accumulator word each step of the plan's instruction updates (the odometer of core_gemm)."""
    loops = len(p.fields[4:]) // 5
    trips, dst_f, uop_f = (
        p.fields[4 : 4 + loops],
        p.fields[4 + loops : 4 + 2 * loops],
        p.fields[4 + 4 * loops :],
    )
    out = []
    for n in range(int(p.fields[2])):
        digits, rest = [], n
        for t in trips:
            digits.append(rest % t)
            rest //= t
        uop = int(p.uops[int(np.dot(digits, uop_f))])
        dst = (uop & 0xFFFF) + int(np.dot(digits, dst_f))
        out.append(dst if p.mode.x_lanes else dst % SHAPE.acc_words)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_keeps_updates_of_one_accumulator_word_apart(case):
    # the core's accumulator read-modify-write is pipelined (DEPENDENCE inter false): two updates of one
    # word must be pipeline_depth (8) steps apart, or as far apart as the words the layer updates allow
    mode, conv = CASES[case]
    x = np.zeros((conv.groups * conv.cg, conv.h, conv.w), np.int8)
    w = np.zeros((conv.groups * conv.kg, conv.cg, conv.r, conv.s), np.int8)
    p = plan(SHAPE, SHAPE.mode(mode), conv, x, w)
    seq = accumulator_words(p)
    last, gap = {}, len(seq)
    for n, word in enumerate(seq):
        if word in last:
            gap = min(gap, n - last[word])
        last[word] = n
    assert gap >= min(8, len(set(seq)))


@st.composite
def layers(draw, mode: str):
    """A random layer that fits the mode's buffers (plan refuses the others)."""
    groups = draw(st.integers(1, 20 if mode.startswith("g") else 3))
    r, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, dilation[0] * (r - 1) + 1 - 2 * pad[0]), 7))
    w = draw(st.integers(max(1, dilation[1] * (s - 1) + 1 - 2 * pad[1]), 40 if mode.endswith("q") else 7))
    cg, kg = draw(st.integers(1, 40 if mode.endswith("c") else 3)), draw(st.integers(1, 20))
    return Conv(groups, cg, kg, h, w, r, s, stride, pad, dilation)


@settings(max_examples=12, deadline=None)
@given(data=st.data(), mode=st.sampled_from(["kxc", "kxq", "gxc", "gxq"]))
def test_random_layers_match_numpy_bit_exactly(core, data, mode):
    conv = data.draw(layers(mode))
    try:
        got, expected, _ = run(core, mode, conv, seed=hash(conv) % 1000)
    except UnsupportedError:
        assume(False)  # more than the buffers hold
    np.testing.assert_array_equal(got, expected)


def test_two_instructions_accumulate_and_reset_clears(core):
    # the taps split over two instructions (uop_begin and the micro-op loop's trip), then a reset
    mode, conv = "kxq", Conv(1, 2, 9, 4, 40, 3, 3, stride=(1, 2), pad=(1, 1))
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (conv.cg, conv.h, conv.w), dtype=np.int8)
    w = rng.integers(-128, 128, (conv.kg, conv.cg, conv.r, conv.s), dtype=np.int8)
    p = plan(SHAPE, SHAPE.mode(mode), conv, x, w)
    acc = np.zeros(p.acc_shape, np.int32)
    core.codax_core_load(ptr(p.uops), len(p.uops), ptr(p.wgt), ptr(p.inp), ptr(acc))
    loops = (len(p.fields) - 4) // 5
    trip_of_uops = 4 + loops - 1  # the micro-ops are the outermost loop
    n_uops = int(p.fields[trip_of_uops])
    first = n_uops // 2
    for begin, count in ((0, first), (first, n_uops - first)):
        f = p.fields.copy()
        f[1], f[trip_of_uops], f[2] = begin, count, p.fields[2] // n_uops * count
        core.codax_core_run(ptr(f))
    out = np.zeros(p.acc_shape, np.int32)
    core.codax_core_read(ptr(out))
    np.testing.assert_array_equal(p.outputs(out), reference(conv, x, w))
    f = p.fields.copy()
    f[3] = 1  # reset: every accumulator the instruction visits becomes 0
    core.codax_core_run(ptr(f))
    core.codax_core_read(ptr(out))
    assert not p.outputs(out).any()


ZCU102 = core_shape(load_accelerator("zcu102-int8"))  # 32 x 64: every constant of the core changes


@pytest.mark.parametrize("mode", ["kxc", "kxq", "gxc", "gxq"])
def test_another_array_shape_matches_numpy_bit_exactly(mode):
    lib = ctypes.CDLL(str(compile_cached(core_sources(ZCU102))))
    # the G modes hold one word per input pixel (K: 32 a word) and 16 accumulator words: a smaller layer
    cg, kg, h, width = (5, 7, 5, 70) if mode.startswith("k") else (3, 4, 3, 20)
    conv = Conv(3, cg, kg, h, width, 3, 3, stride=(1, 2), pad=(1, 1), dilation=(1, 2))
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (conv.groups * conv.cg, conv.h, conv.w), dtype=np.int8)
    w = rng.integers(-128, 128, (conv.groups * conv.kg, conv.cg, conv.r, conv.s), dtype=np.int8)
    p = plan(ZCU102, ZCU102.mode(mode), conv, x, w)
    acc = np.zeros(p.acc_shape, np.int32)
    lib.codax_core_load(ptr(p.uops), len(p.uops), ptr(p.wgt), ptr(p.inp), ptr(acc))
    lib.codax_core_run(ptr(p.fields))
    lib.codax_core_read(ptr(acc))
    np.testing.assert_array_equal(p.outputs(acc), reference(conv, x, w))
