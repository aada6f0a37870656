"""The GEMM core's load IP (codax/codegen/core_load.py) in C-simulation: random LOAD instructions of each
memory type (micro-ops, weights, inputs, parameters) at 8, 6 and 4 bits -- random sizes, strides, pads
and buffer bases -- run through core_load on random DRAM, the buffers read back and compared with a
numpy reference written from the DRAM layouts (vectors beat-aligned, lanes bit-packed by
codax.codegen.packing) and VTA's load_2d; the instruction's fields through encode / decode; and the
IP read as hardware: its loop at II 1, no multiplier, no idiom violation."""

import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codax.codegen import hls_reader as R
from codax.codegen.core import CORE_TOPS, UOP_BITS, UOP_DEPTH, core_shape, core_sources
from codax.codegen.core_isa import INSN_BITS
from codax.codegen.core_load import MEMORIES, PARAM_DEPTH, load_format, load_supported
from codax.codegen.csim import compile_cached
from codax.codegen.hls_idioms import check
from codax.codegen.hls_ii import loop_iis
from codax.codegen.hls_resources import read_resources
from codax.codegen.packing import pack
from codax.errors import UnsupportedError
from codax.hw.library import load_accelerator

SHAPE = core_shape(load_accelerator("zc706-int8"))
ROWS = SHAPE.rows
TOPS = [*CORE_TOPS, "core_load"]
FILL = 0xA5  # what the buffers hold before a load: every byte this pattern


def compiled(shape):
    lib = ctypes.CDLL(str(compile_cached(core_sources(shape))))
    lib.codax_core_load_fill.argtypes = [ctypes.c_int]
    lib.codax_core_load_read_words.argtypes = [ctypes.c_int, ctypes.c_void_p]
    lib.shape = shape
    return lib


@pytest.fixture(scope="module")
def core():
    return compiled(SHAPE)


def ptr(a: np.ndarray):
    assert a.flags.c_contiguous  # the C side reads and writes the array's own memory
    return a.ctypes.data_as(ctypes.c_void_p)


def vb(shape, width: int) -> int:
    """Beats of one COLS-lane vector at `width` bits: ceil(COLS x width / beat bits) (the contract)."""
    return -(-shape.cols * width // shape.beat_bits)


def vector_bytes(shape, lanes: np.ndarray, width: int) -> bytes:
    """One vector as DRAM holds it: the lanes packed at `width`, zero to its VB(width) whole beats."""
    data = pack(lanes, width)
    return data + bytes(vb(shape, width) * shape.beat_bits // 8 - len(data))


def run_load(core, memory: str, width: int, p: dict, rng) -> dict:
    """Random DRAM holding a y_size x x_size tile of `memory` units at dram_base with row stride
    x_stride (every other beat random too, so a stray read shows), one LOAD, and the units' values
    (y, x) -> the unit as the buffer must hold it."""
    shape = core.shape
    rows, cols, beat = shape.rows, shape.cols, shape.beat_bits // 8
    unit = {"uop": 1, "param": 1, "inp": vb(shape, width), "wgt": rows * vb(shape, width)}[memory]
    beats = p["dram_base"] + max(0, (p["y_size"] - 1) * p["x_stride"] + p["x_size"]) * unit + 3
    dram = bytearray(rng.integers(0, 256, beats * beat, dtype=np.uint8).tobytes())
    lo, hi = -(1 << (width - 1)), 1 << (width - 1)
    units = {}
    for y in range(p["y_size"]):
        for x in range(p["x_size"]):
            at = (p["dram_base"] + (y * p["x_stride"] + x) * unit) * beat
            if memory in ("uop", "param"):  # a whole random beat; the buffer keeps its low bits
                raw = bytes(dram[at : at + beat])
                units[y, x] = raw
                continue
            lanes = rng.integers(lo, hi, (rows if memory == "wgt" else 1, cols))
            data = b"".join(vector_bytes(shape, v, width) for v in lanes)
            dram[at : at + len(data)] = data
            units[y, x] = lanes
    fields = {**p, "memory": MEMORIES[memory], "width": shape.in_widths.index(width)}
    word = load_format(shape).encode(**fields)
    insn = np.array([word & (2**64 - 1), word >> 64], np.uint64)
    core.codax_core_load_fill(FILL)
    core.codax_core_load_run(ptr(insn), bytes(dram), beats)
    return units


def padded_grid(p: dict, units: dict) -> list:
    """The units as the load writes them (VTA's load_2d): rows of x_pad_0 + x_size + x_pad_1 units,
    y_pad_0 + y_size + y_pad_1 rows, row-major, a pad None (pads left out of `p` are 0)."""
    pad = {f: p.get(f, 0) for f in ("y_pad_0", "y_pad_1", "x_pad_0", "x_pad_1")}
    out = []
    for y in range(pad["y_pad_0"] + p["y_size"] + pad["y_pad_1"]):
        for x in range(pad["x_pad_0"] + p["x_size"] + pad["x_pad_1"]):
            out.append(units.get((y - pad["y_pad_0"], x - pad["x_pad_0"])))
    return out


def expected_and_got(core, memory: str, p: dict, units: dict):
    """(the buffer as the contract says the LOAD leaves it, the buffer read back): the padded grid
    from sram_base, everything else still FILL."""
    grid = padded_grid(p, units)
    base = p["sram_base"]
    shape = core.shape
    rows, cols = shape.rows, shape.cols
    if memory == "uop":
        got = np.zeros(UOP_DEPTH, np.uint64)
        core.codax_core_load_read_uop(ptr(got))
        mask = (1 << UOP_BITS) - 1
        want = np.full(UOP_DEPTH, int.from_bytes(bytes([FILL]) * 8, "little") & mask, np.uint64)
        for i, u in enumerate(grid):
            want[base + i] = 0 if u is None else int.from_bytes(u, "little") & mask
        return want, got
    if memory == "param":
        got = np.zeros((PARAM_DEPTH, 16), np.uint8)
        core.codax_core_load_read_param(ptr(got))
        want = np.full((PARAM_DEPTH, 16), FILL, np.uint8)
        for i, u in enumerate(grid):
            want[base + i] = 0 if u is None else np.frombuffer(u[:16], np.uint8)
        return want, got
    words = shape.wgt_words if memory == "wgt" else shape.inp_words
    got = np.zeros((words, rows, cols), np.int32)
    core.codax_core_load_read_words(MEMORIES[memory], ptr(got))
    want = np.full((words, rows, cols), np.int8(np.uint8(FILL)), np.int64)  # FILL as a signed lane
    if memory == "wgt":  # a unit is a word
        for i, u in enumerate(grid):
            want[base + i] = 0 if u is None else u
    else:  # a unit is a vector: word v // ROWS, row v % ROWS; whole words, the last one zero past the data
        n = len(grid)
        want[base // rows : (base + n + rows - 1) // rows] = 0
        for i, u in enumerate(grid):
            v = base + i
            want[v // rows, v % rows] = 0 if u is None else u[0]
    return want, got


def instruction(memory: str):
    """Random LOAD fields whose padded tile fits the buffer from sram_base."""
    depth = {"uop": UOP_DEPTH, "param": PARAM_DEPTH, "wgt": SHAPE.wgt_words, "inp": SHAPE.inp_words * ROWS}

    @st.composite
    def draw(draw):
        small = memory == "wgt"  # a weight unit is 16 to 32 beats
        y_size = draw(st.integers(1, 3 if small else 5))
        x_size = draw(st.integers(1, 3 if small else 6))
        p = {
            "y_size": y_size,
            "x_size": x_size,
            "x_stride": x_size + draw(st.integers(0, 3)),
            "dram_base": draw(st.integers(0, 5)),
            **{f: draw(st.integers(0, 2)) for f in ("y_pad_0", "y_pad_1", "x_pad_0", "x_pad_1")},
        }
        units = (p["y_pad_0"] + y_size + p["y_pad_1"]) * (p["x_pad_0"] + x_size + p["x_pad_1"])
        step = ROWS if memory == "inp" else 1  # an input load starts on a word
        p["sram_base"] = step * draw(st.integers(0, (depth[memory] - units) // step))
        return p

    return draw()


@pytest.mark.parametrize("width", SHAPE.in_widths)
@pytest.mark.parametrize("memory", ["inp", "wgt"])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_vector_loads_unpack_pad_and_write_whole_words(core, memory, width, data):
    p = data.draw(instruction(memory))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    units = run_load(core, memory, width, p, rng)
    want, got = expected_and_got(core, memory, p, units)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("memory", ["uop", "param"])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_beat_loads_keep_each_beats_low_bits(core, memory, data):
    p = data.draw(instruction(memory))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    units = run_load(core, memory, SHAPE.in_widths[0], p, rng)
    want, got = expected_and_got(core, memory, p, units)
    np.testing.assert_array_equal(got, want)


def test_input_load_of_a_full_padded_tile(core):
    """A 3 x 3-padded 6 x 7 tile at 6 bits from a wider DRAM row: 8 x 9 vectors, 4.5 words."""
    p = dict(y_size=6, x_size=7, x_stride=11, dram_base=9, sram_base=3 * ROWS)
    p.update(y_pad_0=1, y_pad_1=1, x_pad_0=1, x_pad_1=1)
    units = run_load(core, "inp", 6, p, np.random.default_rng(7))
    want, got = expected_and_got(core, "inp", p, units)
    np.testing.assert_array_equal(got, want)
    assert not got[3 + 72 // ROWS, 72 % ROWS :].any()  # the last word's rows past the tile are zero


@pytest.mark.parametrize("memory", ["inp", "wgt", "uop"])
def test_a_load_without_data_writes_its_pads_and_an_empty_one_nothing(core, memory):
    rng = np.random.default_rng(5)
    pads = dict(y_pad_0=2, y_pad_1=1, x_pad_0=15, x_pad_1=3)  # 3 rows of 18 zero units
    for p in (
        dict(y_size=2, x_size=0, x_stride=0, dram_base=0, sram_base=2 * ROWS, **pads),
        dict(y_size=0, x_size=0, x_stride=0, dram_base=0, sram_base=ROWS),  # nothing
    ):
        units = run_load(core, memory, 4, p, rng)
        want, got = expected_and_got(core, memory, p, units)
        np.testing.assert_array_equal(got, want)


def test_zcu102_loads_vectors_of_one_beat_and_the_low_bits_of_wide_beats():
    """zcu102-int8's 512-bit beat: a 64-lane vector is one beat at 8, 6 and 4 bits (VB = 1), a weight
    word 32 beats; a micro-op and a parameter entry the low bits of a beat."""
    lib = compiled(core_shape(load_accelerator("zcu102-int8")))
    p = dict(y_size=2, x_size=3, x_stride=4, dram_base=1, sram_base=2 * lib.shape.rows)
    p.update(y_pad_0=1, y_pad_1=0, x_pad_0=2, x_pad_1=1)
    for memory, width in [("inp", 6), ("inp", 4), ("wgt", 8), ("uop", 8), ("param", 8)]:
        units = run_load(lib, memory, width, p, np.random.default_rng(11))
        want, got = expected_and_got(lib, memory, p, units)
        np.testing.assert_array_equal(got, want, err_msg=f"{memory} at {width} bits")


@pytest.mark.parametrize("name", ["zc706-int8", "zcu102-int8"])
def test_load_format_fits_and_round_trips(name):
    shape = core_shape(load_accelerator(name))
    fmt = load_format(shape)
    assert fmt.bits <= INSN_BITS and load_supported(shape)
    rng = np.random.default_rng(3)
    for _ in range(20):
        values = {f.name: int(rng.integers(0, 1 << f.bits)) for f in fmt.fields}
        got = fmt.decode(fmt.encode(**values))
        assert got == {**values, "opcode": 0, "pop_prev": 0, "pop_next": 0, "push_prev": 0, "push_next": 0}
    with pytest.raises(UnsupportedError, match="x_pad_0"):
        fmt.encode(x_pad_0=16)  # the pads are 4 bits


@pytest.mark.parametrize("name, dsp_kind", [("zc706-int8", "dsp48e1"), ("zcu102-int8", "dsp48e2")])
def test_load_loop_runs_at_ii_1_with_a_beat_wide_port_and_no_multiplier(name, dsp_kind):
    shape = core_shape(load_accelerator(name))
    files = core_sources(shape)
    src = R.parse(files, ("core.cpp",), (R.SYNTHESIS_VIEW,))
    loops = {x.label: x for x in loop_iis(src, src.unit("core.cpp", R.SYNTHESIS_VIEW), ["core_load"])}
    # a data row's burst (DATA) and the pad runs between the bursts (PAD), each at II 1
    assert {(lp.label, lp.ii, lp.limiting) for lp in loops.values()} == {("DATA", 1, None), ("PAD", 1, None)}
    data = {m.memory: m.accesses for m in loops["DATA"].memories}
    pad = {m.memory: m.accesses for m in loops["PAD"].memories}
    # DATA: one beat in; one write of whichever buffer the instruction names (a whole word for wgt / inp)
    assert data["pointer dram"] == 1
    assert all(data[b] == 1 for b in ("uop_buf", "wgt_buf", "inp_buf", "param_buf"))
    # PAD: the same writes, no DRAM access
    assert "pointer dram" not in pad
    assert all(pad[b] == 1 for b in ("uop_buf", "wgt_buf", "inp_buf", "param_buf"))
    assert check(files, TOPS, shape.beat_bits, unit="core.cpp") == []
    res = read_resources(files, {"core": TOPS}, dsp_kind, unit="core.cpp")
    assert res.dsp == shape.rows * shape.cols  # the PEs' multipliers only: the load adds none


def trips(lib) -> list[int]:
    out = (ctypes.c_longlong * 3)()
    lib.codax_core_trips(out)
    return list(out)


@pytest.mark.parametrize("memory, width", [("inp", 8), ("inp", 4), ("wgt", 6), ("uop", 8), ("param", 8)])
def test_the_trip_hook_counts_a_beat_or_a_pad_unit_an_iteration(core, memory, width):
    # the C-simulation hook counts the DATA and PAD loops' iterations: every DRAM beat of the data units,
    # one iteration per pad unit (VTA's load_2d: the pads are written, not read); nothing for the others
    p = dict(y_size=2, x_size=3, x_stride=5, dram_base=1, sram_base=2 * ROWS)
    p.update(y_pad_0=1, y_pad_1=0, x_pad_0=2, x_pad_1=1)
    trips(core)  # reset
    run_load(core, memory, width, p, np.random.default_rng(3))
    beats = {"uop": 1, "param": 1, "inp": vb(SHAPE, width), "wgt": ROWS * vb(SHAPE, width)}[memory]
    grid = (1 + 2 + 0) * (2 + 3 + 1)
    assert trips(core) == [2 * 3 * beats + (grid - 2 * 3), 0, 0]
