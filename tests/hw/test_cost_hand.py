"""Cost-model counts checked against hand calculations (derivations in the comments)."""

import dataclasses
import math

import pytest

from codax.hw import evaluate
from codax.ir import Accelerator, Mapping, conv2d, dense
from codax.ir.descriptor import WORDS

from .accels import one_level, psum_register, split_buffers, two_level


def dense_k2c2(dram_bw: float, double_buffer: dict | None = None):
    """y[k] = sum_c W[k,c] x[c], K=4, C=6 on a 2x3 array (K rows, C cols), DRAM loops K2 C2."""
    layer = dense("fc", c_in=6, c_out=4)
    acc = one_level(2, 3, ["K"], ["C"], dram_bw=dram_bw)
    m = Mapping(
        "fc",
        spatial={"rows": ("K", 2), "cols": ("C", 3)},
        tiles={"DRAM": {"K": 2, "C": 2}},
        order={"DRAM": ["K", "C"]},
        double_buffer=double_buffer or {},
    )
    return layer, acc, m


def test_dense_layer_two_orders():
    layer, acc, m = dense_k2c2(dram_bw=4.0)
    c = evaluate(layer, acc, m)
    # K outer, C inner: W all 24 words once; I reloaded per K tile (2 x 6 = 12); O stays while C
    # iterates innermost (4 words, no partial-sum round trips).
    assert c.words_in["BUF"] == {"W": 24, "I": 12, "O": 0}
    assert c.words_out["BUF"]["O"] == 4
    assert c.dram_bytes == (24 + 12 + 4) * 8 / 8
    # compute: ceil(4/2) x ceil(6/3) = 4 steps. The DRAM port is 4 B (32 bits) wide and moves whole
    # beats; a run of n 8-bit elements touches 1 + (n - 1) x 8/32 beats on average over where it
    # starts. W: 4 tiles of 2x3 contiguous weights (tile order), 2.25 beats each = 9; I: 4 tiles of
    # 3 inputs, 1.5 each = 6; O: 2 tiles of 2 outputs, 1.25 each = 2.5. 17.5 beats, single-buffered.
    # Before all that the call fetches its descriptor: WORDS int32 words at 4 B per beat.
    # (these toy accelerators declare no DRAM latency: test_dram_latency_per_transfer adds it)
    assert c.compute_cycles == 4
    assert c.fetch_cycles == WORDS
    assert c.dram_beats == WORDS + 17.5
    assert c.cycles == WORDS + 4 + 17.5
    # MAC operand reads from the shared buffer: W per MAC (24), I multicast over the 2 K rows (12),
    # O reduced over the 3 C columns (8 reads + 8 writes, 32-bit)
    # energy (45 nm table): MAC 0.2 pJ x 8x8/64 + 0.00375 pJ/bit x 32; DRAM 1950/64 pJ/bit; a 1 MiB
    # buffer 100/64 pJ/bit. BUF bits: fills W 192 + I 96, O drained 128, MAC reads 192 + 96 + 256,
    # MAC writes 256 -> 1216 bits.
    mac = 24 * (0.2 + 0.00375 * 32)
    assert c.mac_energy_pj == pytest.approx(mac)
    assert c.level_energy_pj["DRAM"] == pytest.approx(320 * 1950 / 64)
    assert c.level_energy_pj["BUF"] == pytest.approx(1216 * 100 / 64)
    assert c.energy_pj == pytest.approx(mac + 320 * 1950 / 64 + 1216 * 100 / 64)

    m.order = {"DRAM": ["C", "K"]}
    c2 = evaluate(layer, acc, m)
    # C outer: I loaded once (6); O visited once per C tile: 2 x 4 = 8 writes, 4 of them partial
    # (32-bit) and 4 reloads (32-bit): 24*8 + 6*8 + (4*8 + 4*32) + 4*32 = 528 bits = 66 B
    assert c2.words_in["BUF"] == {"W": 24, "I": 6, "O": 4}
    assert c2.words_out["BUF"]["O"] == 8
    assert c2.dram_bytes == 66
    # beats: W 9 as above; I 2 tiles of 3, 1.5 each = 3; O: 2 final tiles of 2 at 8 bits (1.25 each)
    # and, at 32 bits (1 + 32/32 = 2 beats a tile), 2 partial-sum stores and 2 reloads: 2.5 + 8
    assert c2.cycles == WORDS + 4 + 9 + 3 + 2.5 + 8


def test_dram_latency_per_transfer():
    # The dense layer above with a 64-cycle DRAM latency, single-buffered: every DRAM transfer waits
    # it once. K outer: W and I per (K, C) tile (4 + 4), O per K tile (2) -> 10 transfers. C outer:
    # W 4, I per C tile 2, O 4 stores and 2 partial-sum reloads -> 12.
    layer, acc, m = dense_k2c2(dram_bw=4.0)
    acc = dataclasses.replace(acc, dram=dataclasses.replace(acc.dram, latency=64))
    # The descriptor's fetch waits it too.
    assert evaluate(layer, acc, m).cycles == 64 + WORDS + 4 + 17.5 + 10 * 64
    m.order = {"DRAM": ["C", "K"]}
    assert evaluate(layer, acc, m).cycles == 64 + WORDS + 4 + 22.5 + 12 * 64


def test_conv3x3_stride2_pad1():
    # 5x5 input, pad 1, stride 2 -> 3x3 output; one channel in and out.
    layer = conv2d("c", c_in=1, c_out=1, hw=(5, 5), kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1))
    assert (layer.P, layer.Q) == (3, 3)
    acc = one_level(3, 3, ["P", "K"], ["Q", "C"])
    # kernel taps walked at the DRAM level: each (r, s) tap loads the 3x3 strided input sub-grid
    m = Mapping(
        "c",
        spatial={"rows": ("P", 3), "cols": ("Q", 3)},
        tiles={"DRAM": {"R": 3, "S": 3}},
        order={"DRAM": ["R", "S"]},
    )
    c = evaluate(layer, acc, m)
    assert c.words_in["BUF"]["I"] == 9 * 9
    assert c.words_in["BUF"]["W"] == 9
    # outputs are irrelevant to R, S: they stay on chip across all taps
    assert c.words_out["BUF"]["O"] == 9 and c.words_in["BUF"]["O"] == 0
    # taps on chip instead: the whole padded 7x7 input once
    m2 = Mapping("c", spatial={"rows": ("P", 3), "cols": ("Q", 3)}, tiles={"BUF": {"R": 3, "S": 3}})
    c2 = evaluate(layer, acc, m2)
    assert c2.words_in["BUF"]["I"] == 7 * 7
    assert c2.compulsory_dram_bytes == 9 + 49 + 9
    assert c.macs == c2.macs == 81
    assert c.compute_cycles == c2.compute_cycles == 9


def test_depthwise_conv():
    # depthwise 3x3, 4 channels, 4x4 input, pad 1 -> 4x4 output; groups unrolled 2 on the rows
    layer = conv2d("dw", c_in=4, c_out=4, hw=(4, 4), groups=4, pads=(1, 1, 1, 1))
    assert (layer.G, layer.K, layer.C, layer.P) == (4, 1, 1, 4)
    acc = one_level(2, 4, ["G"], ["Q"])
    m = Mapping(
        "dw", spatial={"rows": ("G", 2)}, tiles={"DRAM": {"G": 2}, "BUF": {"P": 4, "Q": 4, "R": 3, "S": 3}}
    )
    c = evaluate(layer, acc, m)
    assert c.words_in["BUF"] == {"W": 36, "I": 4 * 6 * 6, "O": 0}
    assert c.words_out["BUF"]["O"] == 64
    assert c.macs == 4 * 16 * 9
    assert c.compute_cycles == 2 * 16 * 9
    assert c.spatial_utilization == pytest.approx(576 / (288 * 8))


def test_multilevel_loop_order_changes_dram_traffic():
    # 1x1 conv K=8, C=8, 4x4; 2x2 array (K x C); GLB loops P2 Q4; DRAM loops K4 C4 P2.
    layer = conv2d("pw", c_in=8, c_out=8, hw=(4, 4), kernel=(1, 1))
    acc = two_level(dram_bw=4.0)
    base = dict(
        spatial={"rows": ("K", 2), "cols": ("C", 2)},
        tiles={"DRAM": {"K": 4, "C": 4, "P": 2}, "GLB": {"P": 2, "Q": 4}},
    )
    # order K, C, P: P (irrelevant to W) innermost -> W once (64); I reloaded per K tile (4 x 128);
    # C outside P -> outputs make 4 visits: 512 writes, 384 of them partial, 384 reloads.
    a = evaluate(layer, acc, Mapping("pw", **base, order={"DRAM": ["K", "C", "P"]}))
    assert a.words_in["GLB"] == {"W": 64, "I": 512, "O": 384}
    assert a.words_out["GLB"]["O"] == 512
    assert a.dram_bytes == (64 * 8 + 512 * 8 + 128 * 8 + 384 * 32 + 384 * 32) / 8  # 3776
    # order K, P, C: C innermost -> outputs complete on chip; W reloaded per P tile (2 x 64)
    b = evaluate(layer, acc, Mapping("pw", **base, order={"DRAM": ["K", "P", "C"]}))
    assert b.words_in["GLB"] == {"W": 128, "I": 512, "O": 0}
    assert b.words_out["GLB"]["O"] == 128
    assert b.dram_bytes == (128 + 512 + 128) * 8 / 8  # 768
    # GLB -> per-PE weight registers: weights stay while the inner P, Q loops run
    assert a.words_in["RF"]["W"] == 64
    assert a.cycles > b.cycles


def test_outputs_bypassing_a_level_are_written_to_dram_once():
    # dense K=4, C=8 on a 2x2 array (K x C); CBUF holds W and I, outputs bypass it into ACCU.
    # DRAM loops K2 C4, C innermost: every output is complete in ACCU before it leaves.
    layer = dense("fc", c_in=8, c_out=4)
    acc = split_buffers(dram_bw=4.0)
    m = Mapping(
        "fc",
        spatial={"rows": ("K", 2), "cols": ("C", 2)},
        tiles={"DRAM": {"K": 2, "C": 4}},
        order={"DRAM": ["K", "C"]},
    )
    c = evaluate(layer, acc, m)
    # W 32 words once; I reloaded per K tile (2 x 8); 4 final outputs leave ACCU once, at 8 bits
    assert c.words_in["CBUF"] == {"W": 32, "I": 16, "O": 0}
    assert c.words_out["ACCU"]["O"] == 4 and c.words_in["ACCU"]["O"] == 0
    assert c.dram_bytes == 32 + 16 + 4
    # compute ceil(4/2) x ceil(8/2) = 8 steps; single-buffered DRAM beats at 4 B (see above): W 8
    # tiles of 2x2, 1.75 beats each = 14; I 8 tiles of 2, 1.25 each = 10; O 2 tiles of 2, 1.25 each
    assert c.compute_cycles == 8
    assert c.cycles == WORDS + 8 + 14 + 10 + 2.5


def test_partial_sum_reloads_stall_at_a_single_buffered_register_port():
    # dense K=4, C=4 on 2 PEs (K unrolled), each with a one-word 32-bit output register; the GLB
    # loops C4 then K2: K, relevant to O, runs inside the reduction loop C, so every output is
    # visited 4 times: 8 psum words leave each register, 6 come back (16 and 12 over both PEs).
    layer = dense("fc", c_in=4, c_out=4)
    m = Mapping("fc", spatial={"rows": ("K", 2)}, tiles={"GLB": {"C": 4, "K": 2}}, order={"GLB": ["C", "K"]})
    slow, fast = evaluate(layer, psum_register(reg_bw=4.0), m), evaluate(layer, psum_register(reg_bw=1e6), m)
    assert slow.words_in["ACC"]["O"] == 12 and slow.words_out["ACC"]["O"] == 16
    # the GLB port moves 16 psums up and 12 back at 32 bits: 896 bits at 64 B/cycle = 1.75 cycles.
    # The register's own port takes one 32-bit reload per cycle at 4 B/cycle: 6 cycles per PE, the
    # PEs in parallel, not overlapped (single-buffered): 6 - 1.75 = 4.25 cycles more.
    assert slow.cycles - fast.cycles == pytest.approx(4.25)
    assert slow.energy_pj == fast.energy_pj  # the port rate changes time, not traffic


def test_streamed_weights_overlap_their_fill_with_compute():
    # The dense layer above, double-buffered, with a 16 B (128-bit) DRAM port. A W tile of 6 weights
    # takes 1 + 5 x 8/128 = 1.3125 beats, an I tile of 3 inputs 1.125, an O tile of 2 outputs 1.0625:
    # 4 x 1.3125 + 4 x 1.125 + 2 x 1.0625 = 11.875 beats. Before compute the port loads the first W
    # and I tiles (2.4375); after it, the last O tile (1.0625). The ping-pong pipeline (three loads of
    # 2.4375 beats, each overlapping a 1-step compute, then the last compute) takes 8.3125 cycles,
    # but the port still has 8.375 beats to move between fill and drain: these tiles are too small
    # to hide their beats, and the layer takes the port's 11.875 cycles.
    layer, acc, m = dense_k2c2(dram_bw=16.0, double_buffer={"BUF": True})
    c = evaluate(layer, acc, m)
    assert c.fetch_cycles == math.ceil(WORDS * 4 / 16)
    assert c.cycles == c.fetch_cycles + 11.875
    # Streamed weights: only the I tile is loaded before compute; the W tile's beats join the
    # overlapped traffic: 1.125 + (11.875 - 1.125 - 1.0625) + 1.0625, the port's beats again
    d = acc.to_dict()
    d["dram"]["stream_weights"] = True
    streamed = Accelerator.from_dict(d)
    c2 = evaluate(layer, streamed, m)
    assert c2.cycles == c2.fetch_cycles + 11.875
    # traffic and energy are those of the same loop nest
    assert c2.words_in == c.words_in and c2.dram_bytes == c.dram_bytes
    assert c2.energy_pj == c.energy_pj
    # at 4 B/cycle: the 17.5 beats of the single-buffered case, whichever way the weights arrive
    d["dram"]["bandwidth"] = 4.0
    slow = evaluate(layer, Accelerator.from_dict(d), m)
    assert slow.cycles == slow.fetch_cycles + 17.5
    # a single-buffered level has no fill phase: nothing changes
    m.double_buffer = {}
    assert evaluate(layer, streamed, m).cycles == evaluate(layer, acc, m).cycles
