"""The GEMM core's input load path (codax/codegen/core_load.py): DRAM tensors bit-packed at 8, 6 and 4
bits (codax.codegen.packing) through core_load_inp's gearbox and unpackers in C-simulation, compared
with the words the reference layout expects; and read as hardware: the load loop at II 1 on one beat a
cycle, its m_axi port a DRAM beat wide, no multiplier."""

import ctypes

import numpy as np
import pytest

from codax.codegen import hls_reader as R
from codax.codegen.core import CORE_TOPS, core_shape, core_sources
from codax.codegen.core_load import load_supported
from codax.codegen.csim import compile_cached
from codax.codegen.hls_idioms import check
from codax.codegen.hls_ii import loop_iis
from codax.codegen.hls_resources import read_resources
from codax.codegen.packing import pack
from codax.hw.library import load_accelerator

SHAPE = core_shape(load_accelerator("zc706-int8"))
TOPS = [*CORE_TOPS, "core_load_inp"]


@pytest.fixture(scope="module")
def core():
    return ctypes.CDLL(str(compile_cached(core_sources(SHAPE))))


def ptr(a: np.ndarray):
    assert a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.c_void_p)


@pytest.mark.parametrize("width", [8, 6, 4])
@pytest.mark.parametrize("words, dst", [(1, 0), (3, 17)])
def test_load_unpacks_each_width_into_whole_words(core, width, words, dst):
    rng = np.random.default_rng(width * 100 + words)
    values = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (words, SHAPE.rows, SHAPE.cols))
    data = pack(values, width)
    beat = SHAPE.beat_bits // 8
    beats = -(-len(data) // beat)
    dram = np.frombuffer(data + bytes(beats * beat - len(data)), np.uint8).copy()
    lanes = (SHAPE.rows, SHAPE.cols)
    zero_wgt, before = (
        np.zeros((SHAPE.wgt_words, *lanes), np.int8),
        np.zeros((SHAPE.inp_words, *lanes), np.int8),
    )
    zero_acc = np.zeros((SHAPE.acc_words, *lanes), np.int32)
    core.codax_core_load(None, 0, ptr(zero_wgt), ptr(before), ptr(zero_acc))  # empty buffers
    code = SHAPE.in_widths.index(width)
    core.codax_core_load_inp(ptr(dram), beats, dst, words, code)
    got = np.zeros_like(before)
    core.codax_core_read_inp(ptr(got))
    np.testing.assert_array_equal(got[dst : dst + words], values)  # sign-extended to 8-bit lanes
    assert not got[:dst].any() and not got[dst + words :].any()  # whole words, nothing else written


def test_load_path_is_generated_where_one_vector_a_beat_suffices():
    assert load_supported(SHAPE)  # 32 lanes x 4 bits = one 128-bit beat
    wide = core_shape(load_accelerator("zcu102-int8"))  # 64 lanes x 4 bits < a 512-bit beat
    assert not load_supported(wide) and "core_load_inp" not in core_sources(wide)["core.cpp"]


def test_load_loop_runs_at_ii_1_with_a_beat_wide_port_and_no_multiplier():
    files = core_sources(SHAPE)
    src = R.parse(files, ("core.cpp",), (R.SYNTHESIS_VIEW,))
    loops = {x.top: x for x in loop_iis(src, src.unit("core.cpp", R.SYNTHESIS_VIEW), TOPS)}
    load = loops["core_load_inp"]
    assert (load.label, load.ii, load.limiting) == ("BEATS", 1, None)
    accesses = {m.memory: m.accesses for m in load.memories}
    assert accesses["pointer mem"] == 1 and accesses["inp_buf"] == 1  # one beat in, one word out
    assert check(files, TOPS, SHAPE.beat_bits, unit="core.cpp") == []
    res = read_resources(files, {"core": TOPS}, "dsp48e1", unit="core.cpp")
    assert res.dsp == SHAPE.rows * SHAPE.cols  # the PEs' multipliers only
