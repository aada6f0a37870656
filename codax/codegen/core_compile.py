"""The core engine's layer compiler: one integer convolution or dense layer -> the DRAM images its
instructions read (blocked activations, weights in the buffer's word order, micro-op kernels, per-channel
parameters) and the stream of 128-bit LOAD / GEMM / STORE instructions, with VTA's dependence flags
between the load, compute and store modules. The core runs the K x C mode (rows over output channels,
columns over input channels) here; docs/engine_core.md says what the layouts are.

Tiling: an output tile is `rows` output rows x the full output width x `blocks` row blocks (ROWS
channels each); its reduction is split into chunks of `chunk` input-channel blocks (COLS channels
each). Per tile: a GEMM that resets the tile's accumulators; per chunk: the chunk's weights and input
rows are loaded (zero padding written by the load, in the input's zero-point representation) and one
GEMM accumulates; then one STORE per output vector block. The tile's micro-ops enumerate (tap, output
pixel) with pixels innermost, padded to a multiple of 8 pixels so that two updates of one accumulator
word are at least 8 steps apart whatever the tile (docs/engine_core.md, "hazards").

Zero points: inputs are held in the load's signed representation s = x - 2^(w-1) for unsigned x (the
unpacker flips the sign bit), padding holds the zero point in that representation, so every window sums
w * (s - s_zero) = w * s - s_zero * sum(w): the constant per output channel folds into the bias the
store adds (as TFLite's kernels do). Weight zero points must be 0 (symmetric weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codax.codegen import core, core_load, core_store
from codax.codegen.core import CoreShape
from codax.codegen.core_isa import InsnFormat
from codax.codegen.core_layout import Conv
from codax.codegen.core_load import vector_beats
from codax.codegen.packing import pack
from codax.errors import UnsupportedError

PIPELINE_GAP = 8  # steps between two updates of one accumulator word (the core's pipeline depth)
FINISH = InsnFormat("finish", ())


def width_code(shape: CoreShape, bits: int, what: str) -> int:
    if bits not in shape.in_widths:
        raise UnsupportedError(
            f"{what} width {bits}: the core's load and store handle {list(shape.in_widths)} bits"
        )
    return shape.in_widths.index(bits)


@dataclass(frozen=True)
class CoreLayer:
    """An integer layer as the core runs it: the convolution, the widths, and the epilogue (bias,
    requantization multiplier per channel, residual, zero points, clamp)."""

    name: str
    conv: Conv
    x_bits: int
    x_signed: bool
    x_zero: int
    w_bits: int
    y_bits: int
    weight: np.ndarray  # [K, C, R, S] integers
    bias: np.ndarray  # [K] int32
    requant: bool
    m: np.ndarray  # [K] float32
    residual: bool = False
    r_bits: int = 8
    r_zero: int = 0
    mr: float = 0.0
    y_zero: int = 0
    lo: int = -128
    hi: int = 127
    y_signed: bool = True
    r_signed: bool = True

    @property
    def k(self) -> int:
        return self.conv.kg

    @classmethod
    def of(cls, layer, params) -> CoreLayer:
        """From the project's Layer and LayerParams (codax.ir, codax.codegen.params)."""
        if params.kind != "int":
            raise UnsupportedError(f"layer {layer.name}: the core runs integer layers only")
        if layer.N != 1 or layer.G != 1:
            raise UnsupportedError(
                f"layer {layer.name}: batch {layer.N}, groups {layer.G}; the core's K x C mode runs one "
                "image of an ungrouped layer (grouped layers need the G x C mode)"
            )
        if params.w_zero_point != 0:
            raise UnsupportedError(f"layer {layer.name}: weight zero point {params.w_zero_point}; must be 0")
        ep = layer.epilogue
        if layer.pads[0] != layer.pads[2] or layer.pads[1] != layer.pads[3]:
            raise UnsupportedError(f"layer {layer.name}: pads {layer.pads}; the core pads symmetrically")
        conv = Conv(
            1, layer.C, layer.K, *layer.in_hw, layer.R, layer.S, tuple(layer.stride),
            (layer.pads[0], layer.pads[1]), tuple(layer.dilation),
        )  # fmt: skip
        if conv.out != (layer.P, layer.Q):
            raise UnsupportedError(
                f"layer {layer.name}: output {layer.P}x{layer.Q}, the window gives {conv.out}"
            )
        k = layer.K
        lo, hi = params.clamp
        return cls(
            layer.name, conv, layer.precision.act, params.x_signed, params.x_zero_point,
            layer.precision.weight, params.y_bits, params.weight.reshape(k, layer.C, layer.R, layer.S),
            (params.bias if ep.bias and params.bias is not None else np.zeros(k)).astype(np.int32),
            bool(ep.requant), np.asarray(params.multiplier, np.float32).reshape(-1).repeat(
                k if np.size(params.multiplier) == 1 else 1),
            bool(ep.residual), layer.precision.act, params.r_zero_point,
            float(np.float32(params.r_multiplier)) if ep.residual and ep.requant else 0.0,
            params.y_zero_point, int(lo), int(hi), params.y_signed, params.r_signed,
        )  # fmt: skip


@dataclass(frozen=True)
class Tiling:
    blocks: int  # row blocks (ROWS output channels) per tile
    rows: int  # output rows per tile
    chunk: int  # input channel blocks (COLS channels) per reduction chunk


@dataclass
class CoreProgram:
    """A compiled layer: the instruction words (program order) and the DRAM image they address."""

    shape: CoreShape
    layer: CoreLayer
    tiling: Tiling
    insns: list[int] = field(default_factory=list)
    dram: bytearray = field(default_factory=bytearray)
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (first beat, beats)
    queue: list[tuple[InsnFormat, dict]] = field(default_factory=list)  # the instructions' fields

    def region(self, name: str, data: bytes) -> int:
        """Place `data` (padded to whole beats) at the end of the image; its first beat."""
        bb = self.shape.beat_bits // 8
        beat = len(self.dram) // bb
        self.dram += data + bytes(-len(data) % bb)
        self.regions[name] = (beat, len(self.dram) // bb - beat)
        return beat

    def reserve(self, name: str, beats: int) -> int:
        return self.region(name, bytes(beats * self.shape.beat_bits // 8))


# ---- DRAM layouts ---------------------------------------------------------------------------------------
def blocked(shape: CoreShape, t: np.ndarray, bits: int) -> bytes:
    """[C, H, W] integers -> channel-blocked vectors [ceil(C / COLS)][H][W], each COLS lanes at `bits`
    padded to whole beats (docs/engine_core.md)."""
    c, h, w = t.shape
    cb = -(-c // shape.cols)
    v = np.zeros((cb * shape.cols, h, w), np.int64)
    v[:c] = t
    vecs = v.reshape(cb, shape.cols, h, w).transpose(0, 2, 3, 1).reshape(-1, shape.cols)
    vb = vector_beats(shape, bits) * shape.beat_bits // 8
    return b"".join(pack(vec, bits).ljust(vb, b"\0") for vec in vecs)


def unblocked(shape: CoreShape, data: bytes, c: int, h: int, w: int, bits: int, signed: bool) -> np.ndarray:
    from codax.codegen.packing import unpack

    cb = -(-c // shape.cols)
    vb = vector_beats(shape, bits) * shape.beat_bits // 8
    vecs = [unpack(data[i * vb : (i + 1) * vb], shape.cols, bits, signed) for i in range(cb * h * w)]
    t = np.array(vecs).reshape(cb, h, w, shape.cols).transpose(0, 3, 1, 2).reshape(cb * shape.cols, h, w)
    return t[:c]


def signed_rep(value, bits: int, signed: bool):
    """A `bits`-bit value in the load's signed lanes: unsigned values have their sign bit flipped."""
    return value if signed else value - (1 << (bits - 1))


# ---- tiling ---------------------------------------------------------------------------------------------
def _in_rows(conv: Conv, rows: int) -> int:
    return (rows - 1) * conv.stride[0] + (conv.r - 1) * conv.dilation[0] + 1


def _pixels(rows: int, ow: int) -> int:
    return -(-rows * ow // PIPELINE_GAP) * PIPELINE_GAP


def choose_tiling(shape: CoreShape, conv: Conv) -> Tiling:
    """The largest tile that fits every buffer: all output channels and the whole reduction if they fit,
    then as many output rows as the accumulators, micro-ops and input buffer take."""
    oh, ow = conv.out
    taps = conv.r * conv.s
    per_vec = shape.cols // shape.rows  # row blocks per stored output vector
    n_blocks = -(-conv.kg // shape.rows)
    n_chunks = -(-conv.cg // shape.cols)
    acc_vecs = shape.acc_words * shape.cols
    inp_vecs = shape.inp_words * shape.rows
    wp = conv.padded[1]
    blocks = n_blocks
    chunk = n_chunks
    while True:
        fits_w = blocks * chunk * taps <= shape.wgt_words
        rows = 0
        for th in range(oh, 0, -1):
            p = _pixels(th, ow)
            foot = -(-_in_rows(conv, th) * wp // shape.rows) * shape.rows
            if blocks * p <= acc_vecs and p * (1 + taps) <= core.UOP_DEPTH and chunk * foot <= inp_vecs:
                rows = th
                break
        if fits_w and rows:
            return Tiling(blocks, rows, chunk)
        if chunk > 1:
            chunk = -(-chunk // 2)
        elif blocks > per_vec:
            blocks = max(per_vec, (blocks // 2) // per_vec * per_vec)
        else:
            raise UnsupportedError(
                f"layer {conv}: one output row of one vector of channels does not fit the core's buffers "
                f"(accumulators {acc_vecs}, inputs {inp_vecs} vectors, {core.UOP_DEPTH} micro-ops)"
            )


# ---- the program ----------------------------------------------------------------------------------------
class _Queues:
    """VTA's dependence tokens: each module's instructions in program order, the flags set so that a
    module waits for what it reads (RAW) and for its buffer's readers to finish (WAR)."""

    def __init__(self):
        self.words: list[tuple[str, dict]] = []

    def add(self, fmt: InsnFormat, **fields) -> dict:
        entry = dict(fields)
        self.words.append((fmt, entry))
        return entry


def compile_layer(
    shape: CoreShape, layer: CoreLayer, tiling: Tiling | None = None, x: np.ndarray | None = None,
    residual: np.ndarray | None = None,
) -> CoreProgram:  # fmt: skip
    """Lay out the layer's DRAM image (the input `x` [C, H, W] and `residual` [K, OH, OW] when given) and
    its instruction stream."""
    conv = layer.conv
    tiling = tiling or choose_tiling(shape, conv)
    prog = CoreProgram(shape, layer, tiling)
    lf, gf, sf = core_load.load_format(shape), core.gemm_format(shape), core_store.store_format(shape)
    rows_, cols_ = shape.rows, shape.cols
    oh, ow = conv.out
    (sy, sx), (dy, dx) = conv.stride, conv.dilation
    (py, px) = conv.pad
    taps = conv.r * conv.s
    n_blocks, n_cb = -(-conv.kg // rows_), -(-conv.cg // cols_)
    per_vec = cols_ // rows_
    xcode = width_code(shape, layer.x_bits, f"layer {layer.name}: input")
    wcode = width_code(shape, layer.w_bits, f"layer {layer.name}: weight")
    ycode = width_code(shape, layer.y_bits, f"layer {layer.name}: output")
    vb_x, vb_w, vb_y = (vector_beats(shape, b) for b in (layer.x_bits, layer.w_bits, layer.y_bits))
    s_zero = signed_rep(layer.x_zero, layer.x_bits, layer.x_signed)

    # DRAM: input, weights [block][channel block][tap] words, parameters, residual, output
    x_data = np.zeros((conv.cg, conv.h, conv.w), np.int64) if x is None else x
    x_beat = prog.region(
        "input", blocked(shape, x_data.astype(np.int64), layer.x_bits)
    )  # raw: the load flips
    wt = np.zeros((n_blocks * rows_, n_cb * cols_, conv.r, conv.s), np.int64)
    wt[: conv.kg, : conv.cg] = layer.weight
    words = wt.reshape(n_blocks, rows_, n_cb, cols_, taps).transpose(0, 2, 4, 1, 3).reshape(-1, cols_)
    vbytes = vb_w * shape.beat_bits // 8
    w_beat = prog.region("weights", b"".join(pack(v, layer.w_bits).ljust(vbytes, b"\0") for v in words))
    # the zero point's constant folded into the bias (module docstring); int32 wrap as the accumulator
    # the lanes hold s = x - 2^(w-1) for unsigned x and padding holds s_zero, so the core's sum is
    # sum(w * s) and the layer's is sum(w * (x - zero)) = sum(w * s) - s_zero * sum(w) (module docstring)
    bias = layer.bias.astype(np.int64) - s_zero * layer.weight.reshape(conv.kg, -1).astype(np.int64).sum(1)
    bias = (bias + (1 << 31)) % (1 << 32) - (1 << 31)  # the int32 accumulator's wrap
    p_beat = prog.region("params", _param_image(shape, layer, bias))
    r_beat = 0
    if layer.residual:
        if residual is None:
            residual = np.zeros((conv.kg, oh, ow), np.int64)
        r_beat = prog.region("residual", blocked(shape, residual.astype(np.int64), layer.r_bits))
    y_beat = prog.reserve("output", -(-conv.kg // cols_) * oh * ow * vb_y)

    q = []  # (format, fields) in program order
    if 1 + conv.kg > core_load.PARAM_DEPTH:
        raise UnsupportedError(
            f"layer {layer.name}: {conv.kg} output channels; param_buf holds the record and "
            f"{core_load.PARAM_DEPTH - 1} channels (split the layer's output channels)"
        )
    q.append((lf, dict(memory=3, sram_base=0, dram_base=p_beat, y_size=1, x_size=1 + conv.kg, x_stride=0)))
    uop_kernels: dict[int, int] = {}  # tile rows -> first micro-op of its kernel
    uop_next = 0
    wp = conv.padded[1]
    tiles = [(b0, y0) for b0 in range(0, n_blocks, tiling.blocks) for y0 in range(0, oh, tiling.rows)]
    chunks = list(range(0, n_cb, tiling.chunk))
    for t_i, (b0, y0) in enumerate(tiles):
        th = min(tiling.rows, oh - y0)
        nb = min(tiling.blocks, n_blocks - b0)
        p = _pixels(th, ow)
        rows_in = _in_rows(conv, th)
        foot = -(-rows_in * wp // rows_) * rows_
        if th not in uop_kernels:
            kernel = _uop_kernel(conv, th, ow, p, wp)
            if uop_next + len(kernel) > core.UOP_DEPTH:
                uop_next = 0  # the buffer refills (the load waits for compute, below)
            u_beat = prog.region(f"uops_{th}_{len(prog.regions)}", _uop_image(shape, kernel))
            q.append((lf, dict(memory=0, sram_base=uop_next, dram_base=u_beat, y_size=1,
                               x_size=len(kernel), x_stride=0)))  # fmt: skip
            uop_kernels = {th: uop_next}
            uop_next += len(kernel)
        ub = uop_kernels[th]
        # reset the tile's accumulators: the kernel's first p micro-ops are the pixels of tap 0
        q.append((gf, dict(reset=1, mode=0, uop_bgn=ub, uop_end=ub + p, iter_out=nb, iter_in=1,
                           dst_factor_out=p)))  # fmt: skip
        for c0 in chunks:
            nc = min(tiling.chunk, n_cb - c0)
            # weights of the tile's blocks x the chunk's channel blocks: a 2-D load
            q.append((lf, dict(memory=1, width=wcode, sram_base=0, dram_base=w_beat + (b0 * n_cb + c0) * taps * rows_ * vb_w,
                               y_size=nb, x_size=nc * taps, x_stride=n_cb * taps)))  # fmt: skip
            iy0 = y0 * sy - py  # the tile's first input row (padded rows are negative / past H)
            for c in range(nc):
                top = max(0, -iy0)
                bot = max(0, iy0 + rows_in - conv.h)
                real = rows_in - top - bot
                fields = dict(memory=2, width=xcode, sram_base=c * foot, y_pad_0=top, y_pad_1=bot,
                              x_pad_0=px, x_pad_1=px, pad_value=s_zero & ((1 << shape.op_bits) - 1),
                              flip=int(not layer.x_signed))  # fmt: skip
                if real > 0:
                    fields.update(dram_base=x_beat + (((c0 + c) * conv.h + iy0 + top) * conv.w) * vb_x,
                                  y_size=real, x_size=conv.w, x_stride=conv.w)  # fmt: skip
                else:  # every row is padding
                    fields.update(y_pad_0=rows_in, y_pad_1=0, y_size=0, x_size=conv.w, x_stride=conv.w)
                q.append((lf, fields))
            q.append((gf, dict(reset=0, mode=0, uop_bgn=ub + p, uop_end=ub + p * (1 + taps), iter_out=nb,
                               iter_in=nc, dst_factor_out=p, src_factor_in=foot, wgt_factor_out=nc * taps,
                               wgt_factor_in=taps)))  # fmt: skip
        for ob in range(0, nb, per_vec):
            kv = (b0 + ob) // per_vec  # the output vector block
            q.append(
                (
                    sf,
                    dict(
                        sram_base=ob * p,
                        dram_base=y_beat + ((kv * oh + y0) * ow) * vb_y,
                        y_size=th,
                        x_size=ow,
                        x_stride=ow,
                        blocks=min(per_vec, nb - ob),
                        block_stride=p,
                        param_base=1 + kv * cols_,
                        width=ycode,
                        res=int(layer.residual),
                        res_base=r_beat + ((kv * oh + y0) * ow) * vector_beats(shape, layer.r_bits),
                    ),
                )
            )
    _set_tokens(q)
    prog.queue = q + [(FINISH, {})]
    prog.insns = [fmt.encode(**f) for fmt, f in prog.queue]
    return prog


def _uop_kernel(conv: Conv, th: int, ow: int, p: int, wp: int) -> list[tuple[int, int, int]]:
    """(dst, src, wgt) micro-ops: tap 0's pixels (the reset run reads them too), then every tap's pixels,
    pixels innermost; pixels past the tile's th x ow (padding to p) repeat the last pixel's source into
    accumulators the store never reads."""
    (sy, sx), (dy, dx) = conv.stride, conv.dilation
    out = []
    for t in range(-1, conv.r * conv.s):
        r, s = divmod(max(t, 0), conv.s)
        for i in range(p):
            y, x = divmod(min(i, th * ow - 1), ow)
            out.append((i, (y * sy + r * dy) * wp + x * sx + s * dx, max(t, 0)))
    return out


def _uop_image(shape: CoreShape, kernel) -> bytes:
    f = core.UOP_FIELD_BITS
    bb = shape.beat_bits // 8
    return b"".join((d | s << f | w << 2 * f).to_bytes(bb, "little") for d, s, w in kernel)


def _param_image(shape: CoreShape, layer: CoreLayer, bias: np.ndarray) -> bytes:
    """param_buf's entries as the store reads them: the layer's record, then each channel's bias,
    multiplier and residual multiplier."""
    bb = shape.beat_bits // 8
    rcode = shape.in_widths.index(layer.r_bits) if layer.residual else 0
    lo, hi = (max(-(1 << 31), min((1 << 31) - 1, v)) for v in (layer.lo, layer.hi))
    rec = core_store.layer_record(layer.y_zero, layer.r_zero, lo, hi, rcode, layer.requant, layer.r_signed)
    mr = int(np.float32(layer.mr).view(np.uint32))
    out = [rec.to_bytes(bb, "little")]
    for k in range(layer.conv.kg):
        m = int(np.float32(layer.m[k]).view(np.uint32))
        out.append(core_store.param_entry(int(bias[k]), m, mr).to_bytes(bb, "little"))
    return b"".join(out)


def _set_tokens(q: list[tuple[InsnFormat, dict]]) -> None:
    """VTA's dependence flags (load -> compute -> store, and back): a GEMM waits for the loads issued
    since the GEMM before it (RAW: the last of them pushes a token) and for the stores issued since
    (WAR on the accumulators); the first load after a GEMM waits for that GEMM to finish reading the
    buffers (WAR); the first store after a GEMM waits for it (RAW). Every push has its pop."""
    last_gemm = None
    loads: list[int] = []  # loads since the last GEMM
    stores: list[int] = []  # stores since the last GEMM
    for i, (fmt, f) in enumerate(q):
        if fmt.kind == "load":
            if not loads and last_gemm is not None:
                q[last_gemm][1]["push_prev"] = 1
                f["pop_next"] = 1
            loads.append(i)
        elif fmt.kind == "store":
            if not stores:
                if last_gemm is None:
                    raise ValueError("a STORE before any GEMM")
                q[last_gemm][1]["push_next"] = 1
                f["pop_prev"] = 1
            stores.append(i)
        elif fmt.kind == "gemm":
            if loads:
                q[loads[-1]][1]["push_next"] = 1
                f["pop_prev"] = 1
            if stores:
                q[stores[-1]][1]["push_prev"] = 1
                f["pop_next"] = 1
            loads, stores, last_gemm = [], [], i
