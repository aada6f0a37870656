"""The GEMM core's buffer layouts (codax/codegen/core.py), as the load path must write them, and a
reference planner that runs one convolution (stride, padding, dilation, groups) on the core: the
packed buffers, the micro-ops and the one GEMM instruction whose steps compute every output.

Rows: over K, the rows of one step are ROWS output channels of one group (index `inner` the block of
ROWS channels, `outer` the group); over G, they are ROWS groups (`outer` the block of ROWS groups,
`inner` the output channel of a group). Columns: over C, a step takes COLS input channels of one input
pixel (the input held with its zero padding, one vector per pixel and block of COLS channels); over Q,
COLS consecutive output columns of one row: each padded input row is held in its x-phase layout --
phase p of stride s holds x = p, p + s, p + 2s, ... -- so the inputs of the COLS columns for one tap
are COLS consecutive lanes of one phase row, from lane `q % COLS` of vector `q // COLS` (q = tap offset
// s), which the core reads as two adjacent vectors and funnel-shifts.

The instruction (VTA's GEMM: micro-ops inside two loops): the micro-ops enumerate (kernel column,
output) with every output of the instruction innermost, the outer loop walks the input channels (blocks
of COLS in C modes), the inner loop the kernel rows. So the loops walk the reduction only: every pass
over the micro-ops updates the same outputs in the same order, two updates of one accumulator word are
as far apart as that one order puts them, and a pad micro-op has one fixed target, the sink vector the
plan reserves (the last one). The order keeps them `PIPELINE_DEPTH` (8) steps apart: a run of fewer
outputs is padded with micro-ops into the sink; in C modes, where ACC_WORDS vectors share a word, a run
that wraps the words with a remainder of 1 .. 7 vectors visits those last vectors in the middle of its
first round instead of at its end (`_run_order`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codax.codegen.core import (
    LANE_FIELD_BITS,
    MAX_DEPTH,
    PIPELINE_DEPTH,
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
    ROWS x COLS lanes), the micro-ops, the GEMM instruction's fields (core.gemm_format's names; the
    dependence flags left 0) and where each output lands among the accumulators."""

    mode: CoreMode
    wgt: np.ndarray  # int8 [wgt_words, ROWS, COLS]
    inp: np.ndarray  # int8 [inp_words, ROWS, COLS]
    uops: np.ndarray  # uint64
    fields: dict[str, int]
    out_at: np.ndarray  # int64 [G * Kg, OH, OW]: flat index into acc [acc_words, ROWS, COLS]
    acc_shape: tuple[int, ...]
    run: int  # micro-ops per kernel column: the outputs in their order, then the pads
    sink: int  # the accumulator vector the pad micro-ops update (the mode's units)

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
    """Pack x and w for `mode` and build the GEMM instruction that convolves them (module docstring)."""
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
    acc_lanes = int(np.prod(acc_shape[1:]))
    # the reduction's outer unit (the outer loop): a block of COLS input channels (C) or one channel (Q)
    n_red = cg if mode.x_lanes else -(-cg // cols)
    # the outputs: vector i * n + (o * OH + y) * NX + xx, xx a column (C) or a block of COLS columns (Q)
    nx = -(-ow // cols) if mode.x_lanes else ow
    n = n_outer * oh * nx
    sink = mode.acc_depth - 1
    if n_inner * n > sink:
        raise UnsupportedError(
            f"the layer's outputs need {n_inner * n} accumulator vectors; the buffer holds {mode.acc_depth} "
            f"(one the sink)"
        )
    out_at = np.full((g * kg, oh, ow), -1, np.int64)

    if not mode.x_lanes:
        for o in range(n_outer):
            for c_blk in range(n_red):
                for iy in range(hp):
                    for ix in range(wp):
                        vec = ((o * n_red + c_blk) * hp + iy) * wp + ix
                        for lane_r in range(in_rows):
                            grp = in_group(o, lane_r)
                            if grp < g:
                                ch = xp[grp, c_blk * cols : (c_blk + 1) * cols, iy, ix]
                                _put(inp, vec, lane_r if mode.per_group_inputs else None, ch)
        red_step, row_step, mw = hp * wp, dy * wp, 0  # an input channel block, a kernel row
    else:
        qmax = (conv.s - 1) * dx // sx
        mw = -(-(nx * cols + qmax) // cols) + 1  # one vector more: the funnel reads the next one too
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
                            vec = (((o * cg + c) * hp + iy) * sx + p) * mw + m
                            for lane_r in range(in_rows):
                                part = phase[lane_r, m * cols : (m + 1) * cols]
                                _put(inp, vec, lane_r if mode.per_group_inputs else None, part)
        red_step, row_step = hp * sx * mw, dy * sx * mw
    for o in range(n_outer):
        for i, lane, grp, k in _array_rows(o, n_inner, rows, row_of):
            for c in range(n_red):
                for t in range(rs):
                    vec = ((o * n_inner + i) * n_red + c) * rs + t
                    _check(vec, mode.wgt_depth, "weights")
                    if mode.x_lanes:
                        wgt[vec, lane] = wg[grp, k, c, t // conv.s, t % conv.s]
                    else:
                        ch = wg[grp, k, c * cols : (c + 1) * cols, t // conv.s, t % conv.s]
                        wgt[vec, lane, : len(ch)] = ch
            for y in range(oh):
                for xo in range(ow):
                    xx = xo // cols if mode.x_lanes else xo
                    vec = i * n + (o * oh + y) * nx + xx
                    at = lane * cols + xo % cols if mode.x_lanes else lane
                    out_at[grp * kg + k, y, xo] = vec * acc_lanes + at

    # the micro-ops: per kernel column s, the run of outputs in their order, then the pads into the sink
    order = _run_order(shape, mode, n_inner * n)
    uops = []
    for s in range(conv.s):
        p, q = s * dx % sx, s * dx // sx  # Q: the phase and the lane offset of the tap
        for v in order:
            if v == sink:
                uops.append((sink, 0, 0, 0))
                continue
            i, (o, rest) = v // n, divmod(v % n, oh * nx)
            y, xx = divmod(rest, nx)
            if mode.x_lanes:
                src = ((o * cg * hp + y * sy) * sx + p) * mw + xx + q // cols
                lane = q % cols
            else:
                src = (o * n_red * hp + y * sy) * wp + xx * sx + s * dx
                lane = 0
            uops.append((v, src, (o * n_inner + i) * n_red * rs + s, lane))
    if len(uops) > UOP_DEPTH:
        raise UnsupportedError(
            f"the layer needs {len(uops)} micro-ops ({conv.s} kernel columns x {len(order)} outputs and "
            f"pads); the buffer holds {UOP_DEPTH}"
        )
    fields = dict(
        reset=0, mode=mode.code, uop_bgn=0, uop_end=len(uops), iter_out=n_red, iter_in=conv.r,
        src_factor_out=red_step, src_factor_in=row_step, wgt_factor_out=rs, wgt_factor_in=conv.s,
    )  # fmt: skip
    assert (out_at >= 0).all()
    # out_at names lanes of the mode's accumulator vectors; as words, each lane moves to position
    # pos[lane] of the word array (words() only rearranges, so it moves the lane numbers the same way)
    total = int(np.prod(acc_shape))
    pos = np.empty(total, np.int64)
    pos[acc_words(shape, np.arange(total).reshape(acc_shape)).reshape(-1)] = np.arange(total)
    return CorePlan(
        mode, np.ascontiguousarray(words(shape, wgt)), np.ascontiguousarray(words(shape, inp)),
        _uop_words(uops), fields, pos[out_at], (shape.acc_words, rows, cols), len(order), sink,
    )  # fmt: skip


def _run_order(shape: CoreShape, mode: CoreMode, n: int) -> list[int]:
    """The order one pass visits output vectors 0 .. n - 1 (the sink for a pad), such that, the pass
    repeated, two updates of one accumulator word are PIPELINE_DEPTH steps apart or more, the sink's
    among themselves excepted (they change only the sink: a pad's write returns the other vectors of
    the sink's word as it read them, and no output shares that word within the window).

    Q modes: a vector is a word, all distinct; a run shorter than the depth is padded. C modes: vector
    v is in word v % A (A = ACC_WORDS), so the visits of one word are A apart within the pass and
    (n - 1) % A + 1 apart across its end: fine for n <= A (padded up to the depth; the outputs then
    avoid the sink's word A - 1) or for a remainder n % A of 0 or at least the depth. A remainder r of
    1 .. depth - 1 goes in the middle of the first round of A: the words of the remainder are then
    visited at A / 2 steps' distance, the others as in order."""
    depth, words_ = PIPELINE_DEPTH, shape.acc_words
    if n < depth:
        if not mode.x_lanes and words_ < depth:
            raise UnsupportedError(f"{shape.name}: {words_} accumulator words; the pipeline needs {depth}")
        return [*range(n), *[mode.acc_depth - 1] * (depth - n)]
    r = n % words_
    if mode.x_lanes or n <= words_ or r == 0 or r >= depth:
        return list(range(n))
    half = words_ // 2
    if half < depth:
        raise UnsupportedError(
            f"{shape.name}: {n} outputs over {words_} accumulator words leave {r} in a word within "
            f"{depth} steps; split the instruction"
        )
    return [*range(half), *range(n - r, n), *range(half, n - r)]


def _array_rows(o: int, n_inner: int, rows: int, row_of):
    """(inner index, array row, group, output channel within the group) of each row of the array that
    `row_of` fills in outer block `o` (rows past the layer's groups or channels are left out)."""
    for i in range(n_inner):
        for lane in range(rows):
            at = row_of(o, i, lane)
            if at is not None:
                yield (i, lane, *at)


def _put(buf: np.ndarray, vec: int, row: int | None, data: np.ndarray) -> None:
    _check(vec, buf.shape[0], "inputs")
    if row is None:
        buf[vec, : len(data)] = data
    else:
        buf[vec, row, : len(data)] = data


def _check(vec: int, depth: int, what: str) -> None:
    if vec >= depth:
        raise UnsupportedError(f"the layer's {what} need vector {vec}; the buffer holds {depth}")


def _uop_words(uops: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Each micro-op as core.h's uop_t: dst | src | wgt offsets, then the lane offset."""
    f = UOP_FIELD_BITS
    out = []
    for dst, src, wgt, lane in uops:
        assert max(dst, src, wgt) < MAX_DEPTH and lane < 1 << LANE_FIELD_BITS
        out.append(dst | src << f | wgt << 2 * f | lane << 3 * f)
    return np.array(out, np.uint64)
