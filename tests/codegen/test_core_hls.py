"""The GEMM core (codax/codegen/core.py) read as hardware by the project's own HLS readers: the step
loop's II from its memory ports (hls_ii), its DSPs and block RAM (hls_resources), and the idiom checker
(hls_idioms), on zc706-int8 (16 x 32, DSP48E1) and zcu102-int8 (32 x 64, DSP48E2)."""

import pytest

from codax.codegen import hls_reader as R
from codax.codegen.core import CORE_TOPS, core_shape, core_sources
from codax.codegen.hls_idioms import check
from codax.codegen.hls_ii import loop_iis
from codax.codegen.hls_resources import bram18_per_bank, dsp_per_multiply, read_resources
from codax.hw.library import load_accelerator

UNIT = "core.cpp"


def sources(name: str):
    shape = core_shape(load_accelerator(name))
    return shape, core_sources(shape)


def test_step_loop_runs_at_ii_1_on_one_word_per_buffer():
    _, files = sources("zc706-int8")
    src = R.parse(files, (UNIT,), (R.SYNTHESIS_VIEW,))
    (loop,) = loop_iis(src, src.unit(UNIT, R.SYNTHESIS_VIEW), list(CORE_TOPS))
    assert (loop.label, loop.target, loop.ii, loop.limiting) == ("STEP", 1, 1, None)
    accesses = {m.memory: (m.ports, m.accesses) for m in loop.memories}
    # one micro-op, one weight word, two adjacent input words (the funnel), one accumulator word read
    # and written: each within the two ports of its block RAM
    assert accesses["uop_buf"] == (2, 1)
    assert accesses["wgt_buf"] == (2, 1)
    assert accesses["inp_buf"] == (2, 2)
    assert accesses["acc_buf"] == (2, 2)
    # everything else the step touches is registers (the counters, the per-PE operands and products)
    assert all(ports is None for name, (ports, _) in accesses.items() if not name.endswith("_buf"))


@pytest.mark.parametrize(
    "name, dsp_kind, pes, device_dsps",
    [("zc706-int8", "dsp48e1", 16 * 32, 900), ("zcu102-int8", "dsp48e2", 32 * 64, 2520)],
)
def test_dsps_are_one_multiplier_per_pe_and_nothing_for_addresses(name, dsp_kind, pes, device_dsps):
    shape, files = sources(name)
    res = read_resources(files, {"core": list(CORE_TOPS)}, dsp_kind, unit=UNIT)
    (site,) = res.multipliers  # the PE's multiply; the lane offsets (x OP_BITS) are shifts
    assert (site.operand_bits, site.signed, site.copies) == ([8, 8], [True, True], pes)
    per_pe = dsp_per_multiply(shape.op_bits, shape.op_bits, dsp_kind, True, True, 2 * shape.op_bits)
    assert per_pe == 1
    assert res.dsp == pes * per_pe <= device_dsps


def test_buffers_are_the_level_sizes_in_block_ram():
    shape, files = sources("zc706-int8")
    res = read_resources(files, {"core": list(CORE_TOPS)}, "dsp48e1", unit=UNIT)
    arrays = {a.name.rsplit("::", 1)[-1]: a for a in res.arrays}
    word = shape.rows * shape.cols
    # reshaped words: weights / inputs 4096 bits x 256, accumulators 16384 bits x 32 (the BUF level's
    # 128 KiB, 128 KiB and 64 KiB); weights and accumulators simple dual-port (36-bit ports), inputs
    # true dual-port (18-bit ports) for the funnel's two reads
    expected = {
        "wgt_buf": (8 * word, 256, "simple dual-port", 114),
        "inp_buf": (8 * word, 256, "true dual-port", 228),
        "acc_buf": (32 * word, 32, "simple dual-port", 456),
        "uop_buf": (56, 4096, "simple dual-port", 14),
    }
    for name, (bits, depth, mode, bram18) in expected.items():
        a = arrays[name]
        assert (a.bank_bits, a.bank_depth, a.ram_mode, a.bram18) == (bits, depth, mode, bram18)
        assert a.bram18 == bram18_per_bank(bits, depth, simple_dual_port=mode == "simple dual-port")
    assert res.bram18 == 812 <= 1090  # the XC7Z045's BRAM18


def test_no_idiom_violation():
    _, files = sources("zc706-int8")
    assert check(files, list(CORE_TOPS), 8 * 16, unit=UNIT) == []
