"""The GEMM core (codax/codegen/core.py) in C-simulation: random small convolutions and GEMMs packed by
the reference layout (codax/codegen/core_layout.py), each run as one 128-bit GEMM instruction of the
core's top in one spatial mode of zc706-int8's 16 x 32 array, the accumulators compared bit-exactly with
numpy's integer convolution; random instructions against the GEMM's loop semantics in numpy; and each
plan's accumulator addresses replayed against the pipeline's distance rule."""

import ctypes

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from codax.codegen.core import core_shape, core_sources, gemm_format, gemm_steps
from codax.codegen.core_layout import Conv, plan, reference
from codax.codegen.csim import compile_cached
from codax.errors import UnsupportedError
from codax.hw.library import load_accelerator

SHAPE = core_shape(load_accelerator("zc706-int8"))
ZCU102 = core_shape(load_accelerator("zcu102-int8"))  # 32 x 64: every constant of the core changes
DEPTH = 8  # the step pipeline's depth (docs/engine_core.md): updates of one word this far apart


def library(shape):
    lib = ctypes.CDLL(str(compile_cached(core_sources(shape))))
    lib.codax_core_run.argtypes = [ctypes.c_ulonglong, ctypes.c_ulonglong]
    return lib


@pytest.fixture(scope="module")
def core():
    return library(SHAPE)


def ptr(a: np.ndarray):
    assert a.flags.c_contiguous  # the C side reads and writes the array's own memory
    return a.ctypes.data_as(ctypes.c_void_p)


def execute(lib, shape, fields: dict) -> None:
    """One GEMM instruction: the word gemm_format encodes, handed over as its two 64-bit halves."""
    word = gemm_format(shape).encode(**fields)
    lib.codax_core_run(word & (1 << 64) - 1, word >> 64)


def run(core, mode_name: str, conv: Conv, seed: int):
    """(the core's outputs, numpy's, the bias) for a random layer: int8 operands, a random int32 bias
    preloaded into the accumulators."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (conv.groups * conv.cg, conv.h, conv.w), dtype=np.int8)
    w = rng.integers(-128, 128, (conv.groups * conv.kg, conv.cg, conv.r, conv.s), dtype=np.int8)
    bias = rng.integers(-(1 << 20), 1 << 20, conv.groups * conv.kg).astype(np.int32)
    p = plan(SHAPE, SHAPE.mode(mode_name), conv, x, w)
    acc = np.ascontiguousarray(p.acc_with(bias))
    core.codax_core_load(ptr(p.uops), len(p.uops), ptr(p.wgt), ptr(p.inp), ptr(acc))
    execute(core, SHAPE, p.fields)
    out = np.zeros(p.acc_shape, np.int32)
    core.codax_core_read(ptr(out))
    expected = reference(conv, x, w) + bias[:, None, None]
    return p, p.outputs(out).astype(np.int64), expected, bias


def updates(shape, p) -> list[tuple[int, bool]]:
    """(accumulator word, whether it is the sink) of each step of the plan's instruction, replayed from
    the decoded word: VTA's three loops, the micro-ops' dst field (bits 0..15) plus the loop offsets."""
    f = gemm_format(shape).decode(gemm_format(shape).encode(**p.fields))
    out = []
    for i0 in range(f["iter_out"]):
        for i1 in range(f["iter_in"]):
            for u in range(f["uop_bgn"], f["uop_end"]):
                dst = (int(p.uops[u]) & 0xFFFF) + i0 * f["dst_factor_out"] + i1 * f["dst_factor_in"]
                out.append((dst if p.mode.x_lanes else dst % shape.acc_words, dst == p.mode.acc_depth - 1))
    return out


def assert_updates_apart(shape, p) -> None:
    """Two updates of one accumulator word are DEPTH steps apart or more, except two pads into the sink
    (they change nothing but the sink); and the instruction runs gemm_steps steps."""
    seq = updates(shape, p)
    assert len(seq) == gemm_steps(p.fields)
    last_real, last_sink = {}, {}
    for n, (word, sink) in enumerate(seq):
        near = [last_real.get(word)] + ([] if sink else [last_sink.get(word)])
        assert all(m is None or n - m >= DEPTH for m in near), (n, word, sink)
        (last_sink if sink else last_real)[word] = n


# (mode, layer): each mode over stride, padding, dilation and groups where its lanes allow them
CASES = {
    "kxc-3x3-pad": ("kxc", Conv(1, 40, 20, 5, 6, 3, 3, pad=(1, 1))),
    "kxc-stride-dilation": ("kxc", Conv(1, 35, 17, 9, 8, 3, 2, stride=(2, 3), pad=(2, 1), dilation=(2, 2))),
    "kxc-groups": ("kxc", Conv(3, 12, 5, 4, 4, 3, 3, stride=(1, 2), pad=(1, 1))),
    "kxc-gemm": ("kxc", Conv(1, 70, 33, 1, 1, 1, 1)),
    "kxc-wrapping-words": ("kxc", Conv(1, 33, 16, 5, 7, 3, 3, pad=(1, 1))),  # 35 outputs: 3 past a round
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
        p, got, expected, bias = run(core, mode, conv, seed)
        assert (expected != bias[:, None, None]).mean() > 0.9  # the products reach the outputs
        np.testing.assert_array_equal(got, expected)
    assert_updates_apart(SHAPE, p)


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


def test_pads_and_reordered_runs_keep_their_distance():
    # fewer outputs than the depth: each kernel column's run is padded to 8 with the sink (vector 1023 of
    # K x C, word 31 of K x Q); 35 outputs over 32 words: the 3 past the first round sit in its middle
    x1, w1 = np.zeros((70, 1, 1), np.int8), np.zeros((33, 70, 1, 1), np.int8)
    p = plan(SHAPE, SHAPE.mode("kxc"), Conv(1, 70, 33, 1, 1, 1, 1), x1, w1)
    assert p.run == 8 and [int(u) & 0xFFFF for u in p.uops] == [0, 1, 2] + [1023] * 5
    conv = CASES["kxc-wrapping-words"][1]
    p = plan(SHAPE, SHAPE.mode("kxc"), conv, np.zeros((33, 5, 7), np.int8), np.zeros((16, 33, 3, 3), np.int8))
    dst = [int(u) & 0xFFFF for u in p.uops[: p.run]]
    assert dst == [*range(16), 32, 33, 34, *range(16, 32)]
    assert_updates_apart(SHAPE, p)


def test_plan_refuses_more_micro_ops_than_the_buffer():
    # 3 row blocks x 18 x 18 pixels = 972 outputs x 3 kernel columns = 2,916 micro-ops > 2,048
    conv = Conv(1, 32, 48, 18, 18, 3, 3, pad=(1, 1))
    x, w = np.zeros((32, 18, 18), np.int8), np.zeros((48, 32, 3, 3), np.int8)
    with pytest.raises(UnsupportedError, match="2916 micro-ops"):
        plan(SHAPE, SHAPE.mode("kxc"), conv, x, w)


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
        p, got, expected, _ = run(core, mode, conv, seed=hash(conv) % 1000)
    except UnsupportedError:
        assume(False)  # more than the buffers hold
    np.testing.assert_array_equal(got, expected)
    assert_updates_apart(SHAPE, p)


def test_two_instructions_accumulate_and_reset_clears(core):
    # the kernel columns split over two instructions (two micro-op ranges), then a reset over the whole
    mode, conv = "kxq", Conv(1, 2, 9, 4, 40, 3, 3, stride=(1, 2), pad=(1, 1))
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (conv.cg, conv.h, conv.w), dtype=np.int8)
    w = rng.integers(-128, 128, (conv.kg, conv.cg, conv.r, conv.s), dtype=np.int8)
    p = plan(SHAPE, SHAPE.mode(mode), conv, x, w)
    assert_updates_apart(SHAPE, p)
    acc = np.zeros(p.acc_shape, np.int32)
    core.codax_core_load(ptr(p.uops), len(p.uops), ptr(p.wgt), ptr(p.inp), ptr(acc))
    for bgn, end in ((0, p.run), (p.run, p.fields["uop_end"])):
        execute(core, SHAPE, {**p.fields, "uop_bgn": bgn, "uop_end": end})
    out = np.zeros(p.acc_shape, np.int32)
    core.codax_core_read(ptr(out))
    np.testing.assert_array_equal(p.outputs(out), reference(conv, x, w))
    # reset: every accumulator vector the instruction visits becomes 0 (a Q mode's vector is a whole
    # word: lanes past the layer's channels and columns too), the others keep what they held
    before = rng.integers(-(1 << 30), 1 << 30, p.acc_shape).astype(np.int32)
    core.codax_core_load(ptr(p.uops), len(p.uops), ptr(p.wgt), ptr(p.inp), ptr(before))
    execute(core, SHAPE, {**p.fields, "reset": 1})
    core.codax_core_read(ptr(out))
    word = np.unravel_index(p.out_at.reshape(-1), p.acc_shape)[0]
    visited = np.zeros(p.acc_shape, bool)
    visited[word] = True  # K x Q: the outputs' words
    visited[SHAPE.acc_words - 1] = True  # and the sink, word 31
    np.testing.assert_array_equal(out[visited], 0)
    np.testing.assert_array_equal(out[~visited], before[~visited])
    assert (~visited).sum() > 0


def test_random_instructions_follow_the_loop_semantics(core):
    # K x C: random micro-ops, trip counts and all six factors (so both halves of the word), against
    # the instruction's definition in numpy: for i0 < iter_out, i1 < iter_in, u in [uop_bgn, uop_end):
    # acc vector dst += w word wgt @ input vector src (each the micro-op's field + i0 x factor_out +
    # i1 x factor_in); vector v is column v // 32 of word v % 32, input vector v row v % 16 of word v // 16
    rows, cols, words_ = SHAPE.rows, SHAPE.cols, SHAPE.acc_words
    rng = np.random.default_rng(11)
    for reset in (0, 1):
        wgt = rng.integers(-128, 128, (SHAPE.wgt_words, rows, cols), dtype=np.int8)
        inp = rng.integers(-128, 128, (SHAPE.inp_words, rows, cols), dtype=np.int8)
        acc = rng.integers(-(1 << 30), 1 << 30, (words_, rows, cols)).astype(np.int32)
        n_uops = 40
        dst, src, wg = (
            rng.integers(0, 100, n_uops),
            rng.integers(0, 500, n_uops),
            rng.integers(0, 40, n_uops),  # the largest addresses: 992, 4050, 248
        )
        uops = np.array([int(d) | int(s) << 16 | int(g) << 32 for d, s, g in zip(dst, src, wg)], np.uint64)
        fields = dict(
            reset=reset, mode=0, uop_bgn=5, uop_end=37, iter_out=3, iter_in=4,
            dst_factor_out=301, dst_factor_in=97, src_factor_out=1021, src_factor_in=503,
            wgt_factor_out=61, wgt_factor_in=29,
        )  # fmt: skip
        core.codax_core_load(ptr(uops), n_uops, ptr(wgt), ptr(inp), ptr(acc))
        execute(core, SHAPE, fields)
        got = np.zeros_like(acc)
        core.codax_core_read(ptr(got))
        want = acc.astype(np.int64)
        for i0 in range(3):
            for i1 in range(4):
                for u in range(5, 37):
                    d = int(dst[u]) + 301 * i0 + 97 * i1
                    s = int(src[u]) + 1021 * i0 + 503 * i1
                    g = int(wg[u]) + 61 * i0 + 29 * i1
                    x = inp[s // rows, s % rows].astype(np.int64)
                    col = want[d % words_, :, d // words_]
                    col[:] = 0 if reset else col + wgt[g].astype(np.int64) @ x
        want = ((want + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)  # int32 accumulators wrap
        np.testing.assert_array_equal(got, want)
        assert gemm_steps(fields) == 3 * 4 * 32


@pytest.mark.parametrize("mode", ["kxc", "kxq", "gxc", "gxq"])
def test_another_array_shape_matches_numpy_bit_exactly(mode):
    lib = library(ZCU102)
    # the G modes hold one word per input pixel (K: 32 a word) and 16 accumulator words: a smaller layer
    cg, kg, h, width = (5, 7, 5, 70) if mode.startswith("k") else (3, 4, 3, 20)
    conv = Conv(3, cg, kg, h, width, 3, 3, stride=(1, 2), pad=(1, 1), dilation=(1, 2))
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (conv.groups * conv.cg, conv.h, conv.w), dtype=np.int8)
    w = rng.integers(-128, 128, (conv.groups * conv.kg, conv.cg, conv.r, conv.s), dtype=np.int8)
    p = plan(ZCU102, ZCU102.mode(mode), conv, x, w)
    assert_updates_apart(ZCU102, p)
    acc = np.zeros(p.acc_shape, np.int32)
    lib.codax_core_load(ptr(p.uops), len(p.uops), ptr(p.wgt), ptr(p.inp), ptr(acc))
    execute(lib, ZCU102, p.fields)
    lib.codax_core_read(ptr(acc))
    np.testing.assert_array_equal(p.outputs(acc), reference(conv, x, w))


def test_the_trip_hook_counts_one_gemm_step_an_iteration(core):
    # the C-simulation hook counts the STEP loop's iterations: iter_out x iter_in x the micro-ops of
    # each instruction (VTA's loop nest, from the plan's fields), and reading the counts resets them
    p, _, _, _ = run(core, "kxc", CASES["kxc-3x3-pad"][1], 3)
    out = (ctypes.c_longlong * 3)()
    core.codax_core_load(
        ptr(p.uops), len(p.uops), ptr(p.wgt), ptr(p.inp), ptr(np.zeros(p.acc_shape, np.int32))
    )
    core.codax_core_trips(out)
    execute(core, SHAPE, p.fields)
    execute(core, SHAPE, {**p.fields, "iter_out": 1})
    core.codax_core_trips(out)
    f = p.fields
    steps = f["iter_in"] * (f["uop_end"] - f.get("uop_bgn", 0))
    assert list(out) == [0, f["iter_out"] * steps + steps, 0]
    core.codax_core_trips(out)
    assert list(out) == [0, 0, 0]
