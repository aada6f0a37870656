"""The GEMM core (codax/codegen/core.py) read as hardware by the project's own HLS readers: the step
loop's II from its memory ports (hls_ii), its DSPs and block RAM (hls_resources), and the idiom checker
(hls_idioms), on zc706-int8 (16 x 32, DSP48E1) and zcu102-int8 (32 x 64, DSP48E2); and its instruction,
VTA's 128-bit GEMM word."""

from dataclasses import replace

import pytest

from codax.codegen import core_hw
from codax.codegen import core_system as S
from codax.codegen import hls_reader as R
from codax.codegen.core import CORE_TOPS, core_shape, core_sources, core_tops, gemm_format
from codax.codegen.hls_idioms import check
from codax.codegen.hls_ii import loop_iis
from codax.codegen.hls_resources import bram18_per_bank, dsp_per_multiply, read_resources
from codax.errors import UnsupportedError
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


def test_buffers_are_the_level_sizes_in_block_ram_once_for_the_whole_engine():
    # every IP (fetch, load, GEMM, store) and the block design: each buffer counted once, as
    # core_system.cpp declares and binds it; the IPs' bram ports hold no block RAM of their own
    shape, files = sources("zc706-int8")
    res = core_hw.resources(shape, "dsp48e1")
    brams = [a for a in res.arrays if a.storage == "bram"]
    assert all(a.instances == 1 for a in brams)
    # the store's row buffers (a row's residual and output vectors between its bursts and its pixels):
    # 1,024 pixels (an x_size) of two 128-bit beats, 15 BRAM18 each
    local = {a.name.rsplit("::", 1)[-1]: a for a in brams if a.kind == "local"}
    assert set(local) == {"res_buf", "out_buf"}
    for a in local.values():
        got = (a.element_bits, a.bank_depth, a.banks, a.ram_mode, a.bram18, a.tops)
        assert got == (2 * shape.beat_bits, 1024, 1, "simple dual-port", 15, ["core_store"])
        assert a.bram18 == bram18_per_bank(2 * shape.beat_bits, 1024, simple_dual_port=True)
    brams = [a for a in brams if a.kind != "local"]
    assert all(a.kind == "system memory" for a in brams)
    arrays = {a.name.rsplit("::", 1)[-1]: a for a in brams}
    word = shape.rows * shape.cols
    # elements a row of COLS lanes (weights, inputs), an accumulator, a micro-op, an entry; reshaped
    # words: weights / inputs 4096 bits x 256, accumulators 16384 bits x 32 (the BUF level's
    # 128 KiB, 128 KiB and 64 KiB), 2,048 micro-ops of 56 bits, 1,024 parameter entries of 128 bits;
    # all simple dual-port (36-bit ports) but the inputs, true dual-port (18-bit ports) for the funnel's
    # second read beside the load's write
    expected = {
        "wgt_buf": (8 * shape.cols, 8 * word, 256, "simple dual-port", 114, ["core_gemm", "core_load"]),
        "inp_buf": (8 * shape.cols, 8 * word, 256, "true dual-port", 228, ["core_gemm", "core_load"]),
        "acc_buf": (32, 32 * word, 32, "simple dual-port", 456, ["core_gemm", "core_store"]),
        "uop_buf": (56, 56, 2048, "simple dual-port", 7, ["core_gemm", "core_load"]),
        "param_buf": (128, 128, 1024, "simple dual-port", 8, ["core_load", "core_store"]),
    }
    assert set(arrays) == set(expected)
    for name, (elem, bits, depth, mode, bram18, tops) in expected.items():
        a = arrays[name]
        got = (a.element_bits, a.bank_bits, a.bank_depth, a.banks, a.ram_mode, a.bram18, a.tops, a.note)
        assert got == (elem, bits, depth, 1, mode, bram18, tops, "")
        assert a.bram18 == bram18_per_bank(bits, depth, simple_dual_port=mode == "simple dual-port")
    assert res.bram18 == 813 + 2 * 15 == 843 <= 1090  # the XC7Z045's BRAM18
    # the PEs' multipliers and the store's requantizers (two 24 x 24 significand products a lane)
    pes = shape.rows * shape.cols
    sites = {(m.function, tuple(m.operand_bits)): (m.copies, m.dsp) for m in res.multipliers}
    assert sites == {
        ("core_gemm", (8, 8)): (pes, pes),
        ("fp_mul", (24, 24)): (2 * shape.rows, 4 * shape.rows),
    }
    assert res.dsp == pes + 4 * shape.rows == 576 <= 900  # the XC7Z045's DSP48E1s


@pytest.mark.parametrize("name", ["zc706-int8", "zcu102-int8"])
def test_every_ip_loop_runs_at_ii_1(name):
    shape, _ = sources(name)
    loops = {m: {(lp.label, lp.ii, lp.limiting) for lp in ls} for m, ls in core_hw.ip_loops(shape).items()}
    assert loops == {
        "fetch": {("BEATS_IN", 1, None), ("INSNS", 1, None)},
        "load": {("DATA", 1, None), ("PAD", 1, None)},
        "gemm": {("STEP", 1, None)},
        "store": {("PARAMS", 1, None), ("RES_IN", 1, None), ("PIXELS", 1, None), ("BEATS_OUT", 1, None)},
    }


@pytest.mark.parametrize("name", ["zc706-int8", "zcu102-int8"])
def test_no_idiom_violation_in_any_ip(name):
    shape, files = sources(name)
    assert core_tops(shape) == ("core_fetch", "core_load", "core_gemm", "core_store")
    # the fetch reads the program's beats in one burst and splits each into its instructions (zcu102-int8's
    # 512-bit beat holds four) in a second process; the load and store burst per row
    assert core_hw.violations(shape) == []


def test_each_buffer_port_has_one_driver_or_a_stated_arbitration():
    # what each IP does to each buffer, read from its code, against the block design's port table
    shape, files = sources("zc706-int8")
    used = S.ip_accesses(files, list(core_tops(shape)))
    assert used == {
        "uop_buf": {("core_load", "w"), ("core_gemm", "r")},
        "wgt_buf": {("core_load", "w"), ("core_gemm", "r")},
        "inp_buf": {("core_load", "w"), ("core_gemm", "r")},
        "acc_buf": {("core_gemm", "w"), ("core_gemm", "r"), ("core_store", "r")},
        "param_buf": {("core_load", "w"), ("core_store", "r")},
    }
    ports = S.stated_ports(files)
    for buf, uses in used.items():
        stated = [p for p in ports if p.buffer == buf]
        # the table names every access the code makes, and no other
        assert set().union(*(p.drivers for p in stated)) == uses, buf
        for p in stated:
            writers = [d for d in p.drivers if d[1] == "w"]
            readers = [d for d in p.drivers if d[1] == "r"]
            if len(p.drivers) > 1:
                # a shared port: its arbitration names the tokens that hand it over
                assert "mux" in p.arbitration and "token" in p.arbitration, (buf, p.port)
            else:
                assert len(writers) + len(readers) == 1 and p.arbitration == "", (buf, p.port)
    shared = {(p.buffer, p.port) for p in ports if len(p.drivers) > 1}
    assert shared == {("inp_buf", "A"), ("acc_buf", "read")}


def test_no_idiom_violation():
    _, files = sources("zc706-int8")
    assert check(files, list(CORE_TOPS), 8 * 16, unit=UNIT) == []


@pytest.mark.parametrize("name", ["zc706-int8", "zcu102-int8"])
def test_gemm_instruction_is_one_128_bit_word(name):
    # VTA's GEMM word: the 7-bit head, reset, mode, the micro-op range of a 2,048-deep buffer
    # (uop_end up to 2,048: 12 bits), two trip counts up to 4,095 (K x Q's reduction: 4,096 input
    # vectors less the funnel's next), factors over 1,024 accumulator, 4,096 input and 8,192 weight
    # vectors (K x Q's ROWS-lane weights)
    fmt = gemm_format(core_shape(load_accelerator(name)))
    widths = {f.name: f.bits for f in fmt.fields}
    assert widths == {
        "reset": 1, "mode": 2, "uop_bgn": 11, "uop_end": 12, "iter_out": 12, "iter_in": 12,
        "dst_factor_out": 10, "dst_factor_in": 10, "src_factor_out": 12, "src_factor_in": 12,
        "wgt_factor_out": 13, "wgt_factor_in": 13,
    }  # fmt: skip
    assert fmt.bits == 7 + sum(widths.values()) == 127 <= 128
    fields = dict(reset=1, mode=3, uop_bgn=2047, uop_end=2048, iter_out=4095, iter_in=1, dst_factor_in=1023,
                  src_factor_out=4095, wgt_factor_in=8191)  # fmt: skip
    word = fmt.encode(**fields)
    assert word < 1 << 128 and word >> 114 == 8191  # the last field ends at bit 126
    assert {k: v for k, v in fmt.decode(word).items() if k in fields} == fields


def test_a_deeper_buffer_than_the_word_holds_is_refused():
    # 16x the weight words: K x Q addresses 131,072 ROWS-lane vectors (17-bit factors) and K x C 4,096
    # words, as many as its inputs: a reduction of 4,096 steps (13-bit trips): 137 bits
    shape = core_shape(load_accelerator("zc706-int8"))
    deeper = tuple(replace(m, wgt_depth=16 * m.wgt_depth) for m in shape.modes)
    with pytest.raises(UnsupportedError, match="gemm instruction needs 137 bits"):
        gemm_format(replace(shape, wgt_words=16 * shape.wgt_words, modes=deeper))
