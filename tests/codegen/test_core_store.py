"""The GEMM core's store path (codax/codegen/core_store.py) in C-simulation: accumulators and param_buf
filled at random, one STORE through core_store, and the DRAM beats compared with a numpy reference --
golden.py's float32 definition of requantization (or its integer rule without requantization) and
codax.codegen.packing's bit layout, one COLS-lane vector per pixel on whole beats; beats the store does
not own keep their sentinel. Then the instruction's format, and the IP read as hardware."""

import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codax.codegen import hls_reader as R
from codax.codegen.core import core_shape, core_sources
from codax.codegen.core_isa import INSN_BITS
from codax.codegen.core_load import PARAM_BITS
from codax.codegen.core_store import (
    PARAM_DEPTH,
    RECORD_ENTRY,
    STORE_TOPS,
    layer_record,
    max_blocks,
    param_entry,
    store_format,
    vector_beats,
)
from codax.codegen.csim import compile_cached
from codax.codegen.hls_idioms import check
from codax.codegen.hls_ii import loop_iis
from codax.codegen.hls_resources import read_resources
from codax.codegen.packing import pack
from codax.errors import UnsupportedError
from codax.hw.library import load_accelerator

SHAPE = core_shape(load_accelerator("zc706-int8"))
WIDE = core_shape(load_accelerator("zcu102-int8"))
UNIT = "core.cpp"
SENTINEL = 0xA5
F32_MAX_BITS = 0x7F7FFFFF


def store_files(shape) -> dict[str, str]:
    """The core's sources: core.cpp holds the store IP (with the load IP, whose LOAD fills param_buf),
    core_csim.cpp the C-simulation entries that fill the block design's buffers and run one STORE."""
    return core_sources(shape)


def load(shape):
    lib = ctypes.CDLL(str(compile_cached(store_files(shape))))
    lib.codax_store_set.restype = lib.codax_store_run.restype = None
    return lib


@pytest.fixture(scope="module")
def core():
    return load(SHAPE)


def ptr(a: np.ndarray):
    assert a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.c_void_p)


# ---- random operands -----------------------------------------------------------------------------------
def multipliers(rng, n: int) -> np.ndarray:
    """float32 bit patterns: typical requantization scales, normals over the whole exponent range,
    subnormals, zero, negatives, the largest finite (products overflow), infinities and NaN."""
    kind = rng.integers(0, 8, n)
    typical = np.float32(rng.uniform(1e-4, 0.1, n)).view(np.uint32)
    normal = (rng.integers(1, 255, n).astype(np.uint32) << 23) | rng.integers(0, 1 << 23, n).astype(np.uint32)
    subnormal = rng.integers(1, 1 << 23, n).astype(np.uint32)
    special = rng.choice(np.array([0, F32_MAX_BITS, 0x7F800000, 0x7FC00000, 1], np.uint32), n)
    bits = np.select(
        [kind < 3, kind < 5, kind == 5, kind == 6], [typical, normal, subnormal, special], typical
    ).astype(np.uint32)
    return bits | (rng.integers(0, 2, n).astype(np.uint32) << 31) * (rng.random(n) < 0.3)


def accumulators(rng, shape) -> np.ndarray:
    """int32 accumulator words [ACC_WORDS][ROWS][COLS]: mostly moderate sums, some over the full range."""
    size = (shape.acc_words, shape.rows, shape.cols)
    small = rng.integers(-(1 << 20), 1 << 20, size)
    full = rng.integers(-(1 << 31), 1 << 31, size)
    return np.where(rng.random(size) < 0.15, full, small).astype(np.int32)


def draw_store(rng, shape, width, res_width, blocks, requant, tile=None):
    """A random STORE (instruction fields, the layer's scalars, the channels' parameters)."""
    depth = shape.mode("kxc").acc_depth
    y_size, x_size = tile or (int(rng.integers(1, 5)), int(rng.integers(1, 9)))
    w_lo, w_hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    clamp = rng.integers(0, 4)
    lo, hi = [(w_lo, w_hi), (0, w_hi), (w_lo + 3, w_hi - 5), (-(1 << 31), (1 << 31) - 1)][clamp]
    return {
        "insn": {
            "sram_base": int(rng.integers(0, depth)),
            "dram_base": int(rng.integers(0, 40)),
            "y_size": y_size,
            "x_size": x_size,
            "x_stride": x_size + int(rng.integers(0, 4)),
            "blocks": blocks,
            "block_stride": int(rng.integers(0, depth)),
            "param_base": int(rng.integers(1, PARAM_DEPTH - shape.cols)),
            "width": shape.in_widths.index(width),
            "res": int(res_width is not None),
            "res_base": int(rng.integers(0, 40)),
        },
        "zy": int(rng.choice([0, rng.integers(-20, 20), rng.integers(-(1 << 15), 1 << 15)])),
        "zr": int(rng.choice([0, rng.integers(-20, 20), rng.integers(-(1 << 15), 1 << 15)])),
        "lo": int(lo),
        "hi": int(hi),
        "requant": requant,
        "res_width": res_width,
        "bias": rng.integers(-(1 << 31), 1 << 31, shape.cols).astype(np.int32)
        if rng.random() < 0.2
        else rng.integers(-5000, 5000, shape.cols).astype(np.int32),
        "m": multipliers(rng, shape.cols),
        "mr": multipliers(rng, shape.cols),
    }


# ---- the reference -------------------------------------------------------------------------------------
def golden_lanes(s, acc_lanes, residual, channels) -> np.ndarray:
    """golden.py's integer epilogue on lanes: acc = int32(acc + bias); requantized,
    v = float32(acc) * M (+ (float32(res) - float32(zr)) * MR), y = clamp(clip(rint(v), +-2^30) + zy);
    else y = clamp(acc + res - zr)."""
    a = (acc_lanes.astype(np.int64) + s["bias"][channels].astype(np.int64)).astype(np.int32)
    if s["requant"]:
        # the extreme multipliers overflow to infinity and inf - inf is NaN, which converts to INT64_MIN
        # as in golden.py
        with np.errstate(invalid="ignore", over="ignore"):
            v = a.astype(np.float32) * s["m"][channels].view(np.float32)
            if residual is not None:
                mr = s["mr"][channels].view(np.float32)
                v = v + (residual.astype(np.float32) - np.float32(s["zr"])) * mr
            r = np.clip(np.rint(v), -(2.0**30), 2.0**30).astype(np.int64) + s["zy"]
    else:
        r = a.astype(np.int64)
        if residual is not None:
            r = r + residual.astype(np.int64) - s["zr"]
    return np.clip(r, s["lo"], s["hi"])


def reference(shape, acc, s, out, res_vectors):
    """The DRAM `out` (bytes) after the store: each pixel's COLS-lane vector packed at the output width on
    VB whole beats at dram_base + (y * x_stride + x) * VB; nothing else changes."""
    i, beat = s["insn"], shape.beat_bits // 8
    width = shape.in_widths[i["width"]]
    vb = vector_beats(shape, width)
    depth, words = shape.mode("kxc").acc_depth, shape.acc_words
    expected = out.copy()
    for y in range(i["y_size"]):
        for x in range(i["x_size"]):
            lanes = np.zeros(shape.cols, np.int64)  # lanes past blocks x ROWS are 0
            for b in range(i["blocks"]):
                v = (i["sram_base"] + b * i["block_stride"] + y * i["x_size"] + x) % depth
                ch = b * shape.rows + np.arange(shape.rows)
                res = None if res_vectors is None else res_vectors[y, x, ch]
                lanes[ch] = golden_lanes(s, acc[v % words, :, v // words], res, ch)
            data = pack(lanes, width)
            at = (i["dram_base"] + (y * i["x_stride"] + x) * vb) * beat
            expected[at : at + vb * beat] = np.frombuffer(data + bytes(vb * beat - len(data)), np.uint8)
    return expected


def run_store(lib, shape, s, rng):
    """Fill the core, run the store in C-simulation; (DRAM after, the reference)."""
    i, beat = s["insn"], shape.beat_bits // 8
    acc = accumulators(rng, shape)
    entries = [0] * PARAM_DEPTH
    for c in range(shape.cols):
        entries[i["param_base"] + c] = param_entry(int(s["bias"][c]), int(s["m"][c]), int(s["mr"][c]))
    rw = s["res_width"]
    res_code = shape.in_widths.index(rw) if rw else 0
    entries[RECORD_ENTRY] = layer_record(s["zy"], s["zr"], s["lo"], s["hi"], res_code, s["requant"])
    params = np.frombuffer(b"".join(e.to_bytes(PARAM_BITS // 8, "little") for e in entries), np.uint8).copy()
    lib.codax_store_set(ptr(acc), ptr(params))

    vb = vector_beats(shape, shape.in_widths[i["width"]])
    span = (i["y_size"] - 1) * i["x_stride"] + i["x_size"]
    out = np.full((i["dram_base"] + span * vb + 3) * beat, SENTINEL, np.uint8)
    res_vectors, res_dram = None, np.zeros(beat, np.uint8)
    if rw:
        vbr = vector_beats(shape, rw)
        res_vectors = rng.integers(-(1 << (rw - 1)), 1 << (rw - 1), (i["y_size"], i["x_size"], shape.cols))
        res_dram = rng.integers(0, 256, (i["res_base"] + span * vbr + 2) * beat).astype(np.uint8)  # junk
        for y in range(i["y_size"]):
            for x in range(i["x_size"]):
                data = pack(res_vectors[y, x], rw)
                at = (i["res_base"] + (y * i["x_stride"] + x) * vbr) * beat
                res_dram[at : at + vbr * beat] = np.frombuffer(data + bytes(vbr * beat - len(data)), np.uint8)
    expected = reference(shape, acc, s, out, res_vectors)
    word = np.frombuffer(store_format(shape).encode(**i).to_bytes(INSN_BITS // 8, "little"), np.uint8).copy()
    lib.codax_store_run(ptr(word), ptr(out), len(out) // beat, ptr(res_dram), len(res_dram) // beat)
    return out, expected


# ---- C-simulation against the reference ----------------------------------------------------------------
@pytest.mark.parametrize("requant", [True, False])
@pytest.mark.parametrize("blocks", [1, 2])
@pytest.mark.parametrize("width, res_width", [(8, None), (8, 8), (6, 6), (4, 4), (8, 4), (4, 8), (6, None)])
def test_store_writes_the_golden_requantization_packed(core, width, res_width, blocks, requant):
    rng = np.random.default_rng(width * 1000 + (res_width or 0) * 100 + blocks * 10 + requant)
    s = draw_store(rng, SHAPE, width, res_width, blocks, requant)
    out, expected = run_store(core, SHAPE, s, rng)
    np.testing.assert_array_equal(out, expected)


def test_store_writes_only_its_vectors(core):
    """Rows wider apart than the tile (x_stride > x_size) and a base past 0: every other beat keeps its
    sentinel, and a 4-bit vector of two blocks fills its one beat (no padding beat)."""
    rng = np.random.default_rng(7)
    s = draw_store(rng, SHAPE, 4, None, 2, True, tile=(3, 5))
    s["insn"].update(x_stride=9, dram_base=11)
    out, expected = run_store(core, SHAPE, s, rng)
    np.testing.assert_array_equal(out, expected)
    beat = SHAPE.beat_bits // 8
    written = {11 + y * 9 + x for y in range(3) for x in range(5)}
    untouched = [b for b in range(len(out) // beat) if b not in written]
    assert np.all(out.reshape(-1, beat)[untouched] == SENTINEL) and len(untouched) > 20


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    width=st.sampled_from([8, 6, 4]),
    res_width=st.sampled_from([None, 8, 6, 4]),
    blocks=st.sampled_from([1, 2]),
    requant=st.booleans(),
    tile=st.tuples(st.integers(1, 4), st.integers(1, 12)),
)
def test_store_random_tiles(core, seed, width, res_width, blocks, requant, tile):
    rng = np.random.default_rng(seed)
    s = draw_store(rng, SHAPE, width, res_width, blocks, requant, tile=tile)
    out, expected = run_store(core, SHAPE, s, rng)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("width, res_width, blocks", [(8, 6, 2), (4, None, 1)])
def test_store_on_a_512_bit_port(width, res_width, blocks):
    """zcu102-int8: 32 x 64, one 512-bit beat holds a vector at every width."""
    rng = np.random.default_rng(width + blocks)
    s = draw_store(rng, WIDE, width, res_width, blocks, True)
    out, expected = run_store(load(WIDE), WIDE, s, rng)
    np.testing.assert_array_equal(out, expected)


# ---- the instruction -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [SHAPE, WIDE], ids=lambda s: s.name)
def test_store_format_round_trips_and_fits_128_bits(shape):
    fmt = store_format(shape)
    assert fmt.kind == "store" and fmt.bits <= INSN_BITS
    widths = {f.name: f.bits for f in fmt.fields}
    # 1,024 K x C accumulator vectors: addresses and tile sides 10 bits; DRAM bases 28; 2 blocks max
    assert widths == {
        "sram_base": 10, "dram_base": 28, "y_size": 10, "x_size": 10, "x_stride": 10, "blocks": 2,
        "block_stride": 10, "param_base": 10, "width": 2, "res": 1, "res_base": 28,
    }  # fmt: skip
    rng = np.random.default_rng(3)
    for _ in range(20):
        values = {name: int(rng.integers(0, 1 << bits)) for name, bits in widths.items()}
        values["push_next"] = 1
        decoded = fmt.decode(fmt.encode(**values))
        assert decoded == {**values, "opcode": 2, "pop_prev": 0, "pop_next": 0, "push_prev": 0}
    with pytest.raises(UnsupportedError, match="x_stride"):
        fmt.encode(x_stride=1 << widths["x_stride"])


def test_param_entries_follow_the_documented_bits():
    e = param_entry(-2, 0x3F800000, 0x40000000)
    assert (e & 0xFFFFFFFF, (e >> 32) & 0xFFFFFFFF, (e >> 64) & 0xFFFFFFFF, e >> 96) == (
        0xFFFFFFFE, 0x3F800000, 0x40000000, 0,
    )  # fmt: skip
    r = layer_record(-3, 7, -128, 127, 2, True)
    assert r & 0xFFFF == 0xFFFD and (r >> 16) & 0xFFFF == 7
    assert (r >> 32) & 0xFFFFFFFF == 0xFFFFFF80 and (r >> 64) & 0xFFFFFFFF == 127
    assert (r >> 96) & 3 == 2 and (r >> 98) & 1 == 1 and (r >> 99) == 1  # requantized; signed residual
    assert layer_record(-3, 7, -128, 127, 2, True, res_signed=False) >> 99 == 0
    with pytest.raises(UnsupportedError, match="zy"):
        layer_record(1 << 15, 0, 0, 0, 0, True)


def test_blocks_and_vector_beats_on_the_two_accelerators():
    assert max_blocks(SHAPE) == 2 and max_blocks(WIDE) == 2
    assert [vector_beats(SHAPE, w) for w in (8, 6, 4)] == [2, 2, 1]  # 256, 192, 128 bits
    assert [vector_beats(WIDE, w) for w in (8, 6, 4)] == [1, 1, 1]  # 512, 384, 256 bits


# ---- read as hardware ----------------------------------------------------------------------------------
def test_store_pipelines_a_block_a_cycle_and_bursts_each_row_in_and_out():
    files = store_files(SHAPE)
    src = R.parse(files, (UNIT,), (R.SYNTHESIS_VIEW,))
    loops = {x.label: x for x in loop_iis(src, src.unit(UNIT, R.SYNTHESIS_VIEW), list(STORE_TOPS))}
    assert {(lp.label, lp.ii, lp.limiting) for lp in loops.values()} == {
        ("PARAMS", 1, None), ("RES_IN", 1, None), ("PIXELS", 1, None), ("BEATS_OUT", 1, None),
    }  # fmt: skip
    acc = {label: {m.memory: m.accesses for m in lp.memories} for label, lp in loops.items()}
    # PIXELS: one accumulator vector (one word of the simple dual-port buffer), the pixel's residual
    # vector and its output vector in the row buffers; no DRAM, the channels' parameters in registers
    assert acc["PIXELS"]["acc_buf"] == 1 and acc["PIXELS"]["res_buf"] == 1 and acc["PIXELS"]["out_buf"] == 1
    assert not any(m.startswith("pointer") or m == "param_buf" for m in acc["PIXELS"])
    # the bursts: one beat of their port an iteration, one row buffer access
    assert (acc["RES_IN"]["pointer res"], acc["RES_IN"]["res_buf"]) == (1, 1)
    assert (acc["BEATS_OUT"]["pointer out"], acc["BEATS_OUT"]["out_buf"]) == (1, 1)
    assert "pointer out" not in acc["RES_IN"] and "pointer res" not in acc["BEATS_OUT"]
    assert acc["PARAMS"]["param_buf"] == 1


def test_store_has_no_idiom_violation_and_only_the_requantizers_multipliers():
    files = store_files(SHAPE)
    assert check(files, list(STORE_TOPS), SHAPE.beat_bits, unit=UNIT) == []
    res = read_resources(files, {"store": list(STORE_TOPS)}, "dsp48e1", unit=UNIT)
    # the requantizer's two 24 x 24-bit significand products, once per lane of the ROWS-lane vector
    sites = {tuple(m.operand_bits): m.copies for m in res.multipliers}
    assert sites == {(24, 24): 2 * SHAPE.rows}, sites


@pytest.mark.parametrize("width, res_width, blocks", [(8, None, 2), (4, 8, 1), (4, None, 1)])
def test_the_trip_hook_counts_a_slot_an_iteration(core, width, res_width, blocks):
    # the C-simulation hook counts every pipelined loop: PARAMS, one entry of COLS an iteration, then per
    # row RES_IN (the row's residual beats), PIXELS (its pixels' blocks) and BEATS_OUT (its output beats)
    rng = np.random.default_rng(width + blocks)
    s = draw_store(rng, SHAPE, width, res_width, blocks, True, tile=(3, 5))
    out = (ctypes.c_longlong * 3)()
    core.codax_core_trips(out)  # reset
    run_store(core, SHAPE, s, rng)
    core.codax_core_trips(out)
    beats_in = vector_beats(SHAPE, res_width) if res_width else 0
    assert list(out) == [0, 0, SHAPE.cols + 3 * 5 * (beats_in + blocks + vector_beats(SHAPE, width))]
