"""The GEMM core's buffer layouts (codax/codegen/core.py), as the load path must write them, and a
reference planner that runs one convolution (stride, padding, dilation, groups) on the core: the
packed buffers, the micro-ops and the one instruction whose steps compute every output.

Rows: over K, the rows of one step are ROWS output channels of one group (loop `outer` over groups,
`inner` over blocks of ROWS channels); over G, they are ROWS groups (`outer` over blocks of ROWS
groups, `inner` over the output channels of a group). Columns: over C, a step takes COLS input
channels of one input pixel (the input held with its zero padding, one word per pixel and block of
COLS channels); over Q, COLS consecutive output columns of one row: each padded input row is held in
its x-phase layout -- phase p of stride s holds x = p, p + s, p + 2s, ... -- so the inputs of the COLS
columns for one tap are COLS consecutive lanes of one phase row, from lane `q % COLS` of word `q //
COLS` (q = tap offset // s), which the core reads as two adjacent words and funnel-shifts.

The instruction walks every output before the next tap (the micro-ops, one per tap and block of input
channels, are the outermost loop): the core reads every operand afresh each step, so the order costs
no traffic, and two updates of one accumulator word are as far apart as the layer's outputs allow
(the core's read-modify-write is pipelined).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codax.codegen.core import (
    LANE_FIELD_BITS,
    LOOPS,
    MAX_DEPTH,
    UOP_DEPTH,
    UOP_FIELD_BITS,
    CoreMode,
    CoreShape,
)
from codax.errors import UnsupportedError


@dataclass(frozen=True)
class Conv:
    """An integer convolution: x [G * Cg, H, W], w [G * Kg, Cg, R, S]."""

    groups: int
    cg: int
    kg: int
    h: int
    w: int
    r: int
    s: int
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    @property
    def padded(self) -> tuple[int, int]:
        return self.h + 2 * self.pad[0], self.w + 2 * self.pad[1]

    @property
    def out(self) -> tuple[int, int]:
        hp, wp = self.padded
        oh = (hp - self.dilation[0] * (self.r - 1) - 1) // self.stride[0] + 1
        ow = (wp - self.dilation[1] * (self.s - 1) - 1) // self.stride[1] + 1
        return oh, ow


def reference(conv: Conv, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """numpy's integer convolution: [G * Kg, OH, OW] int64."""
    g, cg, kg = conv.groups, conv.cg, conv.kg
    (sy, sx), (dy, dx) = conv.stride, conv.dilation
    oh, ow = conv.out
    xp = np.pad(x.astype(np.int64), ((0, 0), (conv.pad[0],) * 2, (conv.pad[1],) * 2))
    out = np.zeros((g * kg, oh, ow), np.int64)
    for gi in range(g):
        xs = xp[gi * cg : (gi + 1) * cg]
        ws = w[gi * kg : (gi + 1) * kg].astype(np.int64)
        for r in range(conv.r):
            for s in range(conv.s):
                patch = xs[
                    :, r * dy : r * dy + sy * (oh - 1) + 1 : sy, s * dx : s * dx + sx * (ow - 1) + 1 : sx
                ]
                out[gi * kg : (gi + 1) * kg] += np.einsum("kc,cyx->kyx", ws[:, :, r, s], patch)
    return out


@dataclass
class CorePlan:
    """One convolution on one mode of the core: the buffers as the load path writes them (words of
    ROWS x COLS lanes), the micro-ops, the instruction's fields (codax_core_run's order) and where
    each output lands among the accumulators."""

    mode: CoreMode
    wgt: np.ndarray  # int8 [wgt_words, ROWS, COLS]
    inp: np.ndarray  # int8 [inp_words, ROWS, COLS]
    uops: np.ndarray  # uint64
    fields: np.ndarray  # int32
    out_at: np.ndarray  # int64 [G * Kg, OH, OW]: flat index into acc [acc_words, ROWS, COLS]
    acc_shape: tuple[int, ...]

    def acc_with(self, bias: np.ndarray) -> np.ndarray:
        """The accumulators the load path writes before the GEMM: each output's bias."""
        acc = np.zeros(self.acc_shape, np.int32)
        acc.reshape(-1)[self.out_at] = bias[:, None, None]
        return acc

    def outputs(self, acc: np.ndarray) -> np.ndarray:
        return acc.reshape(-1)[self.out_at]


def words(shape: CoreShape, vectors: np.ndarray) -> np.ndarray:
    """Vectors of fewer lanes than a word ([n, lanes]) as buffer words [n / per word, ROWS, COLS]:
    vector v is vector v % (per word) of word v / (per word) -- a COLS-lane vector a row of the word,
    a ROWS-lane vector a column of it."""
    rows, cols = shape.rows, shape.cols
    if vectors.shape[1:] == (rows, cols):
        return vectors
    if vectors.shape[1:] == (cols,):
        return vectors.reshape(-1, rows, cols)
    assert vectors.shape[1:] == (rows,)
    return vectors.reshape(-1, cols, rows).transpose(0, 2, 1)


def acc_words(shape: CoreShape, vectors: np.ndarray) -> np.ndarray:
    """Accumulators as words [acc_words, ROWS, COLS]: a C mode's ROWS-lane vectors interleaved over the
    words (vector v is column v / acc_words of word v % acc_words: consecutive outputs, different
    words), a Q mode's words as they are."""
    rows, cols = shape.rows, shape.cols
    if vectors.shape[1:] == (rows, cols):
        return vectors
    return vectors.reshape(cols, shape.acc_words, rows).transpose(1, 2, 0)


def plan(shape: CoreShape, mode: CoreMode, conv: Conv, x: np.ndarray, w: np.ndarray) -> CorePlan:
    """Pack x and w for `mode` and build the instruction that convolves them (module docstring)."""
    rows, cols = shape.rows, shape.cols
    g, cg, kg = conv.groups, conv.cg, conv.kg
    (sy, sx), (dy, dx) = conv.stride, conv.dilation
    hp, wp = conv.padded
    oh, ow = conv.out
    rs = conv.r * conv.s
    xp = np.pad(x, ((0, 0), (conv.pad[0],) * 2, (conv.pad[1],) * 2)).reshape(g, cg, hp, wp)
    wg = w.reshape(g, kg, cg, conv.r, conv.s)
    if mode.row == "K":  # outer: a group; inner: a block of ROWS output channels; row lane: one channel
        n_outer, n_inner = g, -(-kg // rows)

        def row_of(o, i, lane):  # (group, channel within the group) of row `lane`, or None
            k = i * rows + lane
            return (o, k) if k < kg else None
    else:  # outer: a block of ROWS groups; inner: an output channel of the group; row lane: one group
        n_outer, n_inner = -(-g // rows), kg

        def row_of(o, i, lane):
            grp = o * rows + lane
            return (grp, i) if grp < g else None

    in_rows = rows if mode.per_group_inputs else 1

    def in_group(o, lane):  # the group whose inputs row `lane` reads
        return o * rows + lane if mode.per_group_inputs else o

    wgt = np.zeros((mode.wgt_depth, *mode.wgt_lanes(rows, cols)), np.int8)
    inp = np.zeros((mode.inp_depth, *mode.inp_lanes(rows, cols)), np.int8)
    acc_shape = (mode.acc_depth, *mode.acc_lanes(rows, cols))
    out_at = np.full((g * kg, oh, ow), -1, np.int64)
    uops, loops = [], []
    acc_lanes = int(np.prod(acc_shape[1:]))

    if not mode.x_lanes:
        cb = -(-cg // cols)
        for o in range(n_outer):
            for c_blk in range(cb):
                for iy in range(hp):
                    for ix in range(wp):
                        word = ((o * cb + c_blk) * hp + iy) * wp + ix
                        for lane_r in range(in_rows):
                            grp = in_group(o, lane_r)
                            if grp >= g:
                                continue
                            ch = xp[grp, c_blk * cols : (c_blk + 1) * cols, iy, ix]
                            _put(inp, word, lane_r if mode.per_group_inputs else None, ch)
            for i, lane, grp, k in _array_rows(o, n_inner, rows, row_of):
                for c_blk in range(cb):
                    for r in range(conv.r):
                        for s in range(conv.s):
                            word = ((o * n_inner + i) * cb + c_blk) * rs + r * conv.s + s
                            _check(word, mode.wgt_depth, "weights")
                            ch = wg[grp, k, c_blk * cols : (c_blk + 1) * cols, r, s]
                            wgt[word, lane, : len(ch)] = ch
                for y in range(oh):
                    for xo in range(ow):
                        word = ((o * n_inner + i) * oh + y) * ow + xo
                        _check(word, mode.acc_depth, "accumulators")
                        out_at[grp * kg + k, y, xo] = word * acc_lanes + lane
        for c_blk in range(cb):
            for r in range(conv.r):
                for s in range(conv.s):
                    src = c_blk * hp * wp + r * dy * wp + s * dx
                    uops.append((0, src, c_blk * rs + r * conv.s + s, 0))
        loops = [  # (trip, dst, src, wgt, micro-op factor): every output, then the next tap
            (ow, 1, sx, 0, 0),
            (oh, ow, sy * wp, 0, 0),
            (n_inner, oh * ow, 0, cb * rs, 0),
            (n_outer, n_inner * oh * ow, cb * hp * wp, n_inner * cb * rs, 0),
            (len(uops), 0, 0, 0, 1),
        ]
    else:
        xb = -(-ow // cols)
        qmax = (conv.s - 1) * dx // sx
        mw = -(-(xb * cols + qmax) // cols) + 1  # one word more: the funnel reads the next word too
        for o in range(n_outer):
            for c in range(cg):
                for iy in range(hp):
                    for p in range(sx):
                        phase = np.zeros((in_rows, mw * cols), np.int8)
                        for lane_r in range(in_rows):
                            grp = in_group(o, lane_r)
                            if grp < g:
                                row = xp[grp, c, iy, p::sx]
                                phase[lane_r, : len(row)] = row
                        for m in range(mw):
                            word = (((o * cg + c) * hp + iy) * sx + p) * mw + m
                            _check(word, mode.inp_depth, "inputs")
                            for lane_r in range(in_rows):
                                vec = phase[lane_r, m * cols : (m + 1) * cols]
                                _put(inp, word, lane_r if mode.per_group_inputs else None, vec)
            for i, lane, grp, k in _array_rows(o, n_inner, rows, row_of):
                for c in range(cg):
                    for r in range(conv.r):
                        for s in range(conv.s):
                            word = ((o * n_inner + i) * cg + c) * rs + r * conv.s + s
                            _check(word, mode.wgt_depth, "weights")
                            wgt[word, lane] = wg[grp, k, c, r, s]
                for y in range(oh):
                    for xo in range(ow):
                        word = ((o * n_inner + i) * oh + y) * xb + xo // cols
                        _check(word, mode.acc_depth, "accumulators")
                        out_at[grp * kg + k, y, xo] = word * acc_lanes + lane * cols + xo % cols
        for c in range(cg):
            for r in range(conv.r):
                for s in range(conv.s):
                    p, q = s * dx % sx, s * dx // sx
                    src = ((c * hp + r * dy) * sx + p) * mw + q // cols
                    uops.append((0, src, c * rs + r * conv.s + s, q % cols))
        loops = [
            (xb, 1, 1, 0, 0),
            (oh, xb, sy * sx * mw, 0, 0),
            (n_inner, oh * xb, 0, cg * rs, 0),
            (n_outer, n_inner * oh * xb, cg * hp * sx * mw, n_inner * cg * rs, 0),
            (len(uops), 0, 0, 0, 1),
        ]
    assert (out_at >= 0).all()
    # out_at names lanes of the mode's accumulator vectors; as words, each lane moves to position
    # pos[lane] of the word array (words() only rearranges, so it moves the lane numbers the same way)
    n = int(np.prod(acc_shape))
    pos = np.empty(n, np.int64)
    pos[acc_words(shape, np.arange(n).reshape(acc_shape)).reshape(-1)] = np.arange(n)
    out_words, word_shape = pos[out_at], (shape.acc_words, rows, cols)
    return CorePlan(
        mode, np.ascontiguousarray(words(shape, wgt)), np.ascontiguousarray(words(shape, inp)),
        _uop_words(uops), _fields(mode, loops), out_words,
        word_shape,
    )  # fmt: skip


def _array_rows(o: int, n_inner: int, rows: int, row_of):
    """(inner index, array row, group, output channel within the group) of each row of the array that
    `row_of` fills in outer block `o` (rows past the layer's groups or channels are left out)."""
    for i in range(n_inner):
        for lane in range(rows):
            at = row_of(o, i, lane)
            if at is not None:
                yield (i, lane, *at)


def _put(buf: np.ndarray, word: int, row: int | None, vec: np.ndarray) -> None:
    _check(word, buf.shape[0], "inputs")
    if row is None:
        buf[word, : len(vec)] = vec
    else:
        buf[word, row, : len(vec)] = vec


def _check(word: int, depth: int, what: str) -> None:
    if word >= depth:
        raise UnsupportedError(f"the layer's {what} need word {word}; the buffer holds {depth}")


def _uop_words(uops: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Each micro-op as core.h's uop_t: dst | src | wgt offsets, then the lane offset."""
    if len(uops) > UOP_DEPTH:
        raise UnsupportedError(f"{len(uops)} micro-ops; the buffer holds {UOP_DEPTH}")
    f = UOP_FIELD_BITS
    out = []
    for dst, src, wgt, lane in uops:
        assert max(dst, src, wgt) < MAX_DEPTH and lane < 1 << LANE_FIELD_BITS
        out.append(dst | src << f | wgt << 2 * f | lane << 3 * f)
    return np.array(out, np.uint64)


def _fields(mode: CoreMode, loops: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """GemmInsn's fields: mode, uop_begin, steps, reset, then trip / dst / src / wgt / micro-op factor
    per loop, innermost first."""
    assert len(loops) == LOOPS
    steps = 1
    for trip, *factors in loops:
        assert 1 <= trip < MAX_DEPTH and all(0 <= f < MAX_DEPTH for f in factors)
        steps *= trip
    per_field = [v for j in range(5) for v in (lp[j] for lp in loops)]
    return np.array([mode.code, 0, steps, 0, *per_field], np.int32)
