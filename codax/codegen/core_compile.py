"""The core engine's layer compiler: one integer convolution or dense layer -> the DRAM images its
instructions read (blocked activations, weights in the buffer's word order, micro-op kernels, per-channel
parameters) and the stream of 128-bit LOAD / GEMM / STORE instructions, with VTA's dependence flags
between the load, compute and store modules. The core runs the K x C mode (rows over output channels,
columns over input channels) here; docs/engine_core.md says what the layouts are.

Tiling: an output tile is `rows` output rows x `cols` output columns (the whole row unless `cols` is set:
x-tiles, for rows whose inputs, accumulators or micro-ops the buffers cannot hold, an ImageNet stem's) x
`blocks` row blocks (ROWS channels each); its reduction is split into chunks of `chunk` input-channel
blocks (COLS channels each). A tile's input window is its rows' and columns' span of the padded input
(`in_rows`, `in_cols`): a LOAD reads its real columns as a row of x_size vectors at the input's row
stride and writes the padding columns around them (x_pad_0 / x_pad_1); a STORE writes its y_size x x_size
pixels at the output's row stride. Per tile: a GEMM that resets the tile's accumulators; per chunk: the
chunk's weights and input windows are loaded (zero padding written by the load, in the input's zero-point
representation) and one GEMM accumulates; then one STORE per output vector block. The tile's micro-ops
enumerate (tap, output pixel) with pixels innermost, padded to a multiple of 8 pixels so that two updates
of one accumulator word are at least 8 steps apart whatever the tile (docs/engine_core.md, "hazards").
Where ROWS > COLS a row block's accumulator vector is ROWS / COLS output vectors, one STORE each
(`tile_stores`).

Parameters: param_buf holds the layer's record and PARAM_DEPTH - 1 channels, loaded with the first
step. A layer with more channels runs in windows of whole tiles (`param_windows`), each window's
parameters loaded with its first step once the stores of the window before are done (a barrier GEMM of
no steps between them: `_with_tokens`).

Groups: a grouped convolution runs as the dense one whose weights are zero outside each output
channel's group; a tile reduces over the input channel blocks its output channels' groups reach only
(`channel_window`), so a depthwise layer costs one channel block per tile, at one useful lane a row.

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
        """Output channels (all groups)."""
        return self.conv.groups * self.conv.kg

    @property
    def c(self) -> int:
        """Input channels (all groups)."""
        return self.conv.groups * self.conv.cg

    @classmethod
    def of(cls, layer, params) -> CoreLayer:
        """From the project's Layer and LayerParams (codax.ir, codax.codegen.params)."""
        if params.kind != "int":
            raise UnsupportedError(f"layer {layer.name}: the core runs integer layers only")
        if layer.N != 1:
            raise UnsupportedError(f"layer {layer.name}: batch {layer.N}; the core runs one image a call")
        if params.w_zero_point != 0:
            raise UnsupportedError(f"layer {layer.name}: weight zero point {params.w_zero_point}; must be 0")
        ep = layer.epilogue
        if layer.pads[0] != layer.pads[2] or layer.pads[1] != layer.pads[3]:
            raise UnsupportedError(f"layer {layer.name}: pads {layer.pads}; the core pads symmetrically")
        conv = Conv(
            layer.G, layer.C, layer.K, *layer.in_hw, layer.R, layer.S, tuple(layer.stride),
            (layer.pads[0], layer.pads[1]), tuple(layer.dilation),
        )  # fmt: skip
        if conv.out != (layer.P, layer.Q):
            raise UnsupportedError(
                f"layer {layer.name}: output {layer.P}x{layer.Q}, the window gives {conv.out}"
            )
        k = layer.G * layer.K
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
    double: bool = True  # inputs, weights and micro-ops in two halves: a chunk loads while one computes
    cols: int | None = None  # output columns per tile (x-tiles); None: the whole output row


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
    """The inverse of `blocked`: [C, H, W] integers."""
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
def in_rows(conv: Conv, rows: int) -> int:
    """Input rows (with padding) a tile of `rows` output rows reads."""
    return (rows - 1) * conv.stride[0] + (conv.r - 1) * conv.dilation[0] + 1


def in_cols(conv: Conv, x0: int, cols: int) -> tuple[int, int, int, int]:
    """The input columns a tile of output columns x0 .. x0 + cols - 1 reads: (its first column, negative
    in the left padding; its columns; how many of them are padding on the left, on the right). A tile of
    the whole output row reads the whole padded row."""
    px, (sx, dx) = conv.pad[1], (conv.stride[1], conv.dilation[1])
    if x0 == 0 and cols >= conv.out[1]:
        return -px, conv.padded[1], px, px
    ix0, n = x0 * sx - px, (cols - 1) * sx + (conv.s - 1) * dx + 1
    return ix0, n, max(0, -ix0), max(0, ix0 + n - conv.w)


def tile_cols(conv: Conv, tiling: Tiling) -> int:
    """Output columns of a tile (the last x-tile of a row may have fewer)."""
    return conv.out[1] if tiling.cols is None else min(tiling.cols, conv.out[1])


def x_tiles(conv: Conv, cols: int) -> list[tuple[int, int]]:
    """(first output column, columns) of each x-tile of a row, `cols` columns a tile."""
    ow = conv.out[1]
    return [(x0, min(cols, ow - x0)) for x0 in range(0, ow, cols)]


def tile_pixels(rows: int, cols: int) -> int:
    """A tile's micro-op run: its pixels padded to the pipeline gap."""
    return -(-rows * cols // PIPELINE_GAP) * PIPELINE_GAP


def _footprint(shape: CoreShape, conv: Conv, rows: int, cols: int, x0: int = 0) -> int:
    """Input vectors one channel block of a tile of `rows` output rows x `cols` output columns from
    column x0 occupies: its input window's rows x columns, whole words (a load starts on a word)."""
    return -(-in_rows(conv, rows) * in_cols(conv, x0, cols)[1] // shape.rows) * shape.rows


def padding_rows(conv: Conv, y0: int, rows_in: int) -> tuple[int, int, int]:
    """The first input row of a tile starting at output row y0 (negative or past H: padding), and how
    many of its `rows_in` rows are padding above and below the input."""
    iy0 = y0 * conv.stride[0] - conv.pad[0]
    return iy0, max(0, -iy0), max(0, iy0 + rows_in - conv.h)


def channel_window(shape: CoreShape, conv: Conv, b0: int, nb: int) -> tuple[int, int]:
    """The input channel blocks [lo, hi) the output channels of row blocks b0 .. b0 + nb - 1 read: all of
    them for an ungrouped layer, their groups' for a grouped one."""
    k_lo = b0 * shape.rows
    k_hi = min((b0 + nb) * shape.rows, conv.groups * conv.kg)
    c_lo, c_hi = (k_lo // conv.kg) * conv.cg, ((k_hi - 1) // conv.kg + 1) * conv.cg
    return c_lo // shape.cols, -(-c_hi // shape.cols)


def blocks_per_vector(shape: CoreShape) -> int:
    """Row blocks (ROWS channels) one stored COLS-lane output vector takes: COLS / ROWS, or 1 when an
    accumulator vector spans several output vectors (ROWS > COLS)."""
    return core_store.max_blocks(shape)


def tile_stores(shape: CoreShape, k_all: int, b0: int, nb: int) -> list[tuple[int, int, int, int]]:
    """The STOREs closing a tile of row blocks b0 .. b0 + nb - 1 of a layer of `k_all` output channels:
    (first row block within the tile, output vector block, accumulator vectors a pixel, part) each. Where
    COLS >= ROWS one STORE assembles each output vector from COLS / ROWS row blocks; where ROWS > COLS a
    row block's accumulator vector spans ROWS / COLS output vectors, one STORE (part) each, those past
    the layer's channels left out."""
    parts = core_store.vector_parts(shape)
    if parts == 1:
        per_vec = core_store.max_blocks(shape)
        return [(ob, (b0 + ob) // per_vec, min(per_vec, nb - ob), 0) for ob in range(0, nb, per_vec)]
    n_vec = -(-k_all // shape.cols)
    return [
        (ob, (b0 + ob) * parts + j, 1, j)
        for ob in range(nb)
        for j in range(parts)
        if (b0 + ob) * parts + j < n_vec
    ]


def store_slot(shape: CoreShape, blocks: int, part: int) -> dict[str, int]:
    """A STORE's `blocks` or `part` field, whichever the shape's format has (core_store.store_format)."""
    return {"blocks": blocks} if core_store.vector_parts(shape) == 1 else {"part": part}


PARAM_CHANNELS = core_load.PARAM_DEPTH - 1  # param_buf: the layer's record and this many channels


def param_windows(shape: CoreShape, k_all: int, tile_blocks: int) -> list[tuple[int, int]]:
    """The layer's output channels as param_buf holds them, in row blocks [lo, hi): all of them when they
    fit, else consecutive runs of whole tiles of `tile_blocks` row blocks, as many as fit; the compiler
    reloads the parameters (record and channels) at each run's first step."""
    n_blocks = -(-k_all // shape.rows)
    if k_all <= PARAM_CHANNELS:
        return [(0, n_blocks)]
    per = PARAM_CHANNELS // tile_entries(shape, tile_blocks) * tile_blocks
    if per < 1:
        raise UnsupportedError(
            f"a tile of {tile_blocks} row blocks of {shape.rows} channels exceeds param_buf's "
            f"{PARAM_CHANNELS} channels"
        )
    return [(b, min(b + per, n_blocks)) for b in range(0, n_blocks, per)]


def tile_entries(shape: CoreShape, blocks: int) -> int:
    """param_buf entries the stores of a tile of `blocks` row blocks read: its channels, in whole output
    vectors (COLS)."""
    return -(-blocks * shape.rows // shape.cols) * shape.cols


def choose_tiling(shape: CoreShape, conv: Conv) -> Tiling:
    """The largest tile that fits: double-buffered if one output pixel of one vector of channels fits
    half of each buffer, else single-buffered; all output channels and the whole reduction if they fit,
    then as many whole output rows as the accumulators, micro-ops and inputs take, else one row's widest
    x-tile and as many rows of it as fit."""
    for double in (True, False):
        t = _largest_tile(shape, conv, 2 if double else 1)
        if t is not None:
            return t
    raise UnsupportedError(
        f"convolution {conv}: one output pixel of one vector of channels does not fit the core's buffers "
        f"({shape.acc_words * shape.cols} accumulator and {shape.inp_words * shape.rows} input vectors, "
        f"{shape.wgt_words} weight words, {core.UOP_DEPTH} micro-ops): reduce the kernel's taps or grow "
        f"the buffers"
    )


def tiling_fits(shape: CoreShape, conv: Conv, tiling: Tiling) -> bool:
    """Whether a tile of `tiling` fits the buffers (half of the inputs, weights and micro-ops when
    double-buffered), and its row blocks make whole stored output vectors."""
    halves = 2 if tiling.double else 1
    k_all = conv.groups * conv.kg
    n_blocks = -(-k_all // shape.rows)
    per_vec = blocks_per_vector(shape)
    if tiling.blocks < 1 or tiling.rows < 1 or tiling.chunk < 1 or tiling.rows > conv.out[0]:
        return False
    if tiling.cols is not None and not 1 <= tiling.cols < conv.out[1]:
        return False  # x-tiles narrower than the row (the whole row: cols None)
    if tiling.blocks % per_vec and tiling.blocks < n_blocks:
        return False
    if k_all > PARAM_CHANNELS and tile_entries(shape, tiling.blocks) > PARAM_CHANNELS:
        return False  # a tile's channels must fit param_buf (param_windows)
    cols = tile_cols(conv, tiling)
    p, taps = tile_pixels(tiling.rows, cols), conv.r * conv.s
    return (
        tiling.blocks * tiling.chunk * taps <= shape.wgt_words // halves
        and tiling.blocks * p <= shape.acc_words * shape.cols
        and p * (1 + taps) <= core.UOP_DEPTH // halves
        and tiling.chunk * _footprint(shape, conv, tiling.rows, cols)
        <= shape.inp_words * shape.rows // halves
        and (tiling.cols is None or _x_tiles_read_input(conv, cols))
    )


def _x_tiles_read_input(conv: Conv, cols: int) -> bool:
    """Whether every x-tile's input window holds a real column (a LOAD reads at least one): a window
    wholly in the padding (a padded 1x1 convolution's edge column) is left to whole-row tiles."""
    return all(
        n - left - right > 0 for _, n, left, right in (in_cols(conv, x0, c) for x0, c in x_tiles(conv, cols))
    )


def _largest_tile(shape: CoreShape, conv: Conv, halves: int) -> Tiling | None:
    per_vec = blocks_per_vector(shape)  # row blocks per stored output vector
    n_blocks = -(-conv.groups * conv.kg // shape.rows)
    blocks, chunk = n_blocks, -(-conv.groups * conv.cg // shape.cols)
    while True:
        windows = [
            channel_window(shape, conv, b0, min(blocks, n_blocks - b0)) for b0 in range(0, n_blocks, blocks)
        ]
        chunk = min(chunk, max(hi - lo for lo, hi in windows))
        for th in range(conv.out[0], 0, -1):
            if tiling_fits(shape, conv, Tiling(blocks, th, chunk, halves == 2)):
                return Tiling(blocks, th, chunk, halves == 2)
        # x-tiles: the widest of one row, then as many rows of it as fit
        for tw in range(conv.out[1] - 1, 0, -1):
            if tiling_fits(shape, conv, Tiling(blocks, 1, chunk, halves == 2, tw)):
                th = 1
                while th < conv.out[0] and tiling_fits(
                    shape, conv, Tiling(blocks, th + 1, chunk, halves == 2, tw)
                ):
                    th += 1
                return Tiling(blocks, th, chunk, halves == 2, tw)
        if chunk > 1:
            chunk = -(-chunk // 2)
        elif blocks > per_vec:
            blocks = max(per_vec, (blocks // 2) // per_vec * per_vec)
        else:
            return None


# ---- the program ----------------------------------------------------------------------------------------
@dataclass
class _Step:
    """One accumulating GEMM of a tile's reduction chunk: the loads it reads (its group), the reset
    before it when it opens a tile, the stores after it when it closes one."""

    loads: list[dict]
    gemm: dict
    reset: dict | None = None
    stores: list[dict] = field(default_factory=list)
    drain: bool = False  # it opens a parameter window after the first: its loads wait for every store


def compile_layer(
    shape: CoreShape, layer: CoreLayer, tiling: Tiling | None = None, x: np.ndarray | None = None,
    residual: np.ndarray | None = None,
) -> CoreProgram:  # fmt: skip
    """Lay out the layer's DRAM image (the input `x` [C, H, W] and `residual` [K, OH, OW] when given) and
    its instruction stream. An UnsupportedError names the layer."""
    try:
        return _compile(shape, layer, tiling, x, residual)
    except UnsupportedError as e:
        msg = str(e)
        named = f"layer {layer.name}" in msg  # the name alone may be a word of the message
        raise UnsupportedError(msg if named else f"layer {layer.name}: {msg}") from None


def _compile(shape: CoreShape, layer: CoreLayer, tiling: Tiling | None, x, residual) -> CoreProgram:
    if tiling is None:  # the fastest fitting tiling by the cycle model (codax.codegen.core_tiling)
        from codax.codegen.core_tiling import best_tiling

        tiling = best_tiling(shape, layer.conv, layer.x_bits, layer.w_bits, layer.y_bits, layer.residual,
                             layer.r_bits)  # fmt: skip
    elif not tiling_fits(shape, layer.conv, tiling):  # its loads would write past a buffer's end
        raise UnsupportedError(f"layer {layer.name}: {tiling} does not fit the core's buffers (tiling_fits)")
    prog = CoreProgram(shape, layer, tiling)
    bases = _dram_image(prog, x, residual)
    steps = _steps(prog, bases)
    formats = {"load": core_load.load_format(shape), "gemm": core.gemm_format(shape),
               "store": core_store.store_format(shape)}  # fmt: skip
    prog.queue = [(formats[k], f) for k, f in _with_tokens(steps, 2 if tiling.double else 1)] + [(FINISH, {})]
    prog.insns = [fmt.encode(**f) for fmt, f in prog.queue]
    return prog


def _dram_image(prog: CoreProgram, x, residual) -> dict[str, int]:
    """The layer's tensors in DRAM (input, weights as the buffer's words [block][channel block][tap],
    parameters, residual, output); the first beat of each."""
    shape, layer, conv = prog.shape, prog.layer, prog.layer.conv
    rows_, cols_ = shape.rows, shape.cols
    k_all, c_all, taps = layer.k, layer.c, conv.r * conv.s
    n_blocks = -(-k_all // rows_)
    oh, ow = conv.out
    try:
        windows = param_windows(shape, k_all, prog.tiling.blocks)
    except UnsupportedError as e:
        raise UnsupportedError(
            f"layer {layer.name}: {k_all} output channels; {e}: tile fewer row blocks"
        ) from None
    bases = {}
    x_data = np.zeros((c_all, conv.h, conv.w), np.int64) if x is None else np.asarray(x, np.int64)
    bases["input"] = prog.region("input", blocked(shape, x_data, layer.x_bits))  # raw: the load flips
    # the dense weights: zero outside each output channel's group
    dense = np.zeros((n_blocks * rows_, -(-c_all // cols_) * cols_, conv.r, conv.s), np.int64)
    for g in range(conv.groups):
        dense[g * conv.kg : (g + 1) * conv.kg, g * conv.cg : (g + 1) * conv.cg] = layer.weight[
            g * conv.kg : (g + 1) * conv.kg
        ]
    vbytes = vector_beats(shape, layer.w_bits) * shape.beat_bits // 8
    for b0 in range(0, n_blocks, prog.tiling.blocks):  # per tile of row blocks: [block][window block][tap]
        nb = min(prog.tiling.blocks, n_blocks - b0)
        lo, hi = channel_window(shape, conv, b0, nb)
        wt = dense[b0 * rows_ : (b0 + nb) * rows_, lo * cols_ : hi * cols_]
        words = wt.reshape(nb, rows_, hi - lo, cols_, taps).transpose(0, 2, 4, 1, 3).reshape(-1, cols_)
        blob = b"".join(pack(v, layer.w_bits).ljust(vbytes, b"\0") for v in words)
        bases[f"weights_{b0}"] = prog.region(f"weights_{b0}", blob)
    # the lanes hold s = x - 2^(w-1) for unsigned x and padding holds s_zero, so the core sums w * s and
    # the layer's sum is sum(w * (x - zero)) = sum(w * s) - s_zero * sum(w) (module docstring)
    s_zero = signed_rep(layer.x_zero, layer.x_bits, layer.x_signed)
    bias = layer.bias.astype(np.int64) - s_zero * layer.weight.reshape(k_all, -1).astype(np.int64).sum(1)
    bias = (bias + (1 << 31)) % (1 << 32) - (1 << 31)  # the int32 accumulator's wrap
    # per parameter window (param_windows): the record, then its channels' entries
    images = [_param_image(shape, layer, bias, lo * rows_, min(hi * rows_, k_all)) for lo, hi in windows]
    bases["params"] = prog.region("params", b"".join(images))
    beat = bases["params"]
    for w, image in enumerate(images):
        bases[f"params_{w}"] = beat
        beat += len(image) // (shape.beat_bits // 8)
    if layer.residual:
        r = np.zeros((k_all, oh, ow), np.int64) if residual is None else np.asarray(residual, np.int64)
        bases["residual"] = prog.region("residual", blocked(shape, r, layer.r_bits))
    bases["output"] = prog.reserve("output", -(-k_all // cols_) * oh * ow * vector_beats(shape, layer.y_bits))
    return bases


def _steps(prog: CoreProgram, bases: dict[str, int]) -> list[_Step]:
    """The layer as accumulating GEMMs in compute order: tiles over (row blocks, output rows, x-tiles),
    each a reset, one GEMM per reduction chunk, and its stores. Step k uses buffer half k % 2 (double
    buffering) for its inputs, weights and micro-op kernel."""
    shape, layer, tiling, conv = prog.shape, prog.layer, prog.tiling, prog.layer.conv
    rows_, cols_ = shape.rows, shape.cols
    oh, ow = conv.out
    taps = conv.r * conv.s
    windows = param_windows(shape, layer.k, tiling.blocks)
    halves = 2 if tiling.double else 1
    inp_half, wgt_half = shape.inp_words * rows_ // halves, shape.wgt_words // halves
    uop_half = core.UOP_DEPTH // halves
    xcode = width_code(shape, layer.x_bits, f"layer {layer.name}: input")
    wcode = width_code(shape, layer.w_bits, f"layer {layer.name}: weight")
    ycode = width_code(shape, layer.y_bits, f"layer {layer.name}: output")
    vb_x, vb_w, vb_y = (vector_beats(shape, b) for b in (layer.x_bits, layer.w_bits, layer.y_bits))
    vb_r = vector_beats(shape, layer.r_bits)
    s_zero = signed_rep(layer.x_zero, layer.x_bits, layer.x_signed)
    pad_lane = s_zero & ((1 << shape.op_bits) - 1)

    steps: list[_Step] = []
    resident: dict[int, tuple] = {}  # micro-op slot (buffer half) -> the kernel it holds
    for b0, nb, w_index, w_lo in row_block_tiles(windows, tiling.blocks):
        cb_lo, cb_hi = channel_window(shape, conv, b0, nb)
        opens_window = b0 == windows[w_index][0]
        for y0, x0, th, tw in output_tiles(conv, tiling):
            p, rows_in = tile_pixels(th, tw), in_rows(conv, th)
            ix0, n_cols, left, right = in_cols(conv, x0, tw)
            foot = _footprint(shape, conv, th, tw, x0)
            iy0, top, bot = padding_rows(conv, y0, rows_in)
            real = rows_in - top - bot
            for ci, c0 in enumerate(range(cb_lo, cb_hi, tiling.chunk)):
                nc = min(tiling.chunk, cb_hi - c0)
                half = len(steps) % halves
                loads = []
                # the window's parameters, with its first step
                drain = opens_window and y0 == 0 and x0 == 0 and ci == 0
                if drain:
                    entries = 1 + min(windows[w_index][1] * rows_, layer.k) - w_lo * rows_
                    base = bases[f"params_{w_index}"]
                    loads.append(dict(memory=3, dram_base=base, y_size=1, x_size=entries))
                key = (th, tw, half)
                ub = half * uop_half
                if resident.get(half) != key:
                    name = f"uops_{th}_{half}" if tw == ow else f"uops_{th}x{tw}_{half}"
                    if name not in prog.regions:
                        kernel = _uop_kernel(conv, th, tw, p, n_cols, half * inp_half, half * wgt_half)
                        prog.region(name, _uop_image(shape, kernel))
                    beat, n_uops = prog.regions[name]
                    loads.append(dict(memory=0, sram_base=ub, dram_base=beat, y_size=1, x_size=n_uops))
                    resident[half] = key
                w_base = bases[f"weights_{b0}"] + (c0 - cb_lo) * taps * rows_ * vb_w
                loads.append(dict(memory=1, width=wcode, sram_base=half * wgt_half, dram_base=w_base,
                                  y_size=nb, x_size=nc * taps, x_stride=(cb_hi - cb_lo) * taps))  # fmt: skip
                for c in range(nc):
                    # the window's real columns a row of x_size vectors at the input's row stride, its
                    # padding columns around them
                    f = dict(memory=2, width=xcode, sram_base=half * inp_half + c * foot, x_pad_0=left,
                             x_pad_1=right, pad_value=pad_lane, flip=int(not layer.x_signed),
                             x_size=n_cols - left - right, x_stride=conv.w)  # fmt: skip
                    if real > 0:
                        row0 = (c0 + c) * conv.h + iy0 + top  # the first real row, in vectors of W
                        at = row0 * conv.w + ix0 + left  # its first real column
                        f.update(dram_base=bases["input"] + at * vb_x, y_pad_0=top, y_pad_1=bot, y_size=real)
                    else:  # every row is padding
                        f.update(y_pad_0=rows_in)
                    loads.append(f)
                gemm = dict(mode=0, uop_bgn=ub + p, uop_end=ub + p * (1 + taps), iter_out=nb, iter_in=nc,
                            dst_factor_out=p, src_factor_in=foot, wgt_factor_out=nc * taps,
                            wgt_factor_in=taps)  # fmt: skip
                step = _Step(loads, gemm, drain=drain and bool(steps))
                if ci == 0:  # open the tile: zero its accumulators (the kernel's first p micro-ops: tap 0)
                    step.reset = dict(
                        reset=1, mode=0, uop_bgn=ub, uop_end=ub + p, iter_out=nb, iter_in=1, dst_factor_out=p
                    )
                steps.append(step)
            for ob, kv, blocks, part in tile_stores(shape, layer.k, b0, nb):  # kv: the output vector block
                at = (kv * oh + y0) * ow + x0
                steps[-1].stores.append(
                    dict(sram_base=ob * p, dram_base=bases["output"] + at * vb_y, y_size=th, x_size=tw,
                         x_stride=ow, **store_slot(shape, blocks, part), block_stride=p,
                         param_base=1 + kv * cols_ - w_lo * rows_, width=ycode, res=int(layer.residual),
                         res_base=bases.get("residual", 0) + at * vb_r)
                )  # fmt: skip
    return steps


def output_tiles(conv: Conv, tiling: Tiling):
    """(first output row, first output column, rows, columns) of each tile of a row block's outputs, in
    order: x-tiles within rows of tiles."""
    oh = conv.out[0]
    for y0 in range(0, oh, tiling.rows):
        for x0, tw in x_tiles(conv, tile_cols(conv, tiling)):
            yield y0, x0, min(tiling.rows, oh - y0), tw


def row_block_tiles(windows: list[tuple[int, int]], blocks: int):
    """(first row block, row blocks, window index, the window's first row block) of each tile of row
    blocks, in order: tiles of `blocks` within each parameter window."""
    for w, (lo, hi) in enumerate(windows):
        for b0 in range(lo, hi, blocks):
            yield b0, min(blocks, hi - b0), w, lo


def _with_tokens(steps: list[_Step], depth: int) -> list[tuple[str, dict]]:
    """The program in order with VTA's dependence flags, loads issued one step ahead:
      l2g (RAW): each step's load group pushes one token at its last load; the step's GEMM pops it (a
        tile's reset pops it instead, the GEMM after it then needs nothing more);
      g2l (WAR): the group of step k waits for step k - depth's GEMM (the last reader of the half it
        overwrites: depth 2 double-buffered, 1 single);
      g2s (RAW): a tile's last GEMM pushes, its first store pops;
      s2g (WAR): a tile's last store pushes, the next tile's reset pops (the accumulators are single).
    A step that opens a parameter window after the first (`drain`) overwrites param_buf, which the
    stores before it read: a GEMM of no steps (the barrier) pops their s2g and pushes the g2l its group
    waits for, that group issued after it, and the GEMMs before the barrier push no g2l for the groups
    after it (the barrier follows their reads). Every push has its pop, in order on each queue."""
    n = len(steps)
    out: list[tuple[str, dict]] = []

    def pushes(j: int) -> bool:  # GEMM j pushes g2l for the group of step j + depth
        return j + depth < n and not any(steps[i].drain for i in range(j + 1, j + depth + 1))

    def group(k: int) -> None:
        loads = [dict(d) for d in steps[k].loads]
        if steps[k].drain or (k >= depth and pushes(k - depth)):
            loads[0]["pop_next"] = 1
        loads[-1]["push_next"] = 1
        out.extend(("load", d) for d in loads)

    group(0)
    tiles_closed = 0
    for k, st in enumerate(steps):
        if k + 1 < n and not steps[k + 1].drain:
            group(k + 1)
        gemm = dict(st.gemm)
        if st.reset is not None:
            reset = dict(st.reset, pop_prev=1)
            if tiles_closed and not st.drain:
                reset["pop_next"] = 1
            out.append(("gemm", reset))
        else:
            gemm["pop_prev"] = 1
        if pushes(k):
            gemm["push_prev"] = 1
        stores = [dict(d) for d in st.stores]
        if stores:
            gemm["push_next"] = 1
            stores[0]["pop_prev"] = 1
            if k + 1 < n:
                stores[-1]["push_prev"] = 1
            tiles_closed += 1
        out.append(("gemm", gemm))
        out.extend(("store", d) for d in stores)
        if k + 1 < n and steps[k + 1].drain:
            out.append(("gemm", dict(mode=0, pop_next=1, push_prev=1)))  # the barrier: no steps
            group(k + 1)
    return out


def _uop_kernel(
    conv: Conv, th: int, tw: int, p: int, n_cols: int, src0: int, wgt0: int
) -> list[tuple[int, int, int]]:
    """(dst, src, wgt) micro-ops of a tile of th x tw pixels whose input window rows are n_cols vectors:
    tap 0's pixels (the reset run reads them too), then every tap's pixels, pixels innermost; src and wgt
    from the buffer half at src0 / wgt0. Pixels past the tile's th x tw (padding to p) repeat the last
    pixel's source into accumulators the store never reads."""
    (sy, sx), (dy, dx) = conv.stride, conv.dilation
    out = []
    for t in range(-1, conv.r * conv.s):
        r, s = divmod(max(t, 0), conv.s)
        for i in range(p):
            y, x = divmod(min(i, th * tw - 1), tw)
            out.append((i, src0 + (y * sy + r * dy) * n_cols + x * sx + s * dx, wgt0 + max(t, 0)))
    return out


def _uop_image(shape: CoreShape, kernel) -> bytes:
    f = core.UOP_FIELD_BITS
    bb = shape.beat_bits // 8
    return b"".join((d | s << f | w << 2 * f).to_bytes(bb, "little") for d, s, w in kernel)


def _param_image(shape: CoreShape, layer: CoreLayer, bias: np.ndarray, k_lo: int, k_hi: int) -> bytes:
    """param_buf's entries as the store reads them: the layer's record, then the bias, multiplier and
    residual multiplier of each channel k_lo .. k_hi - 1."""
    bb = shape.beat_bits // 8
    rcode = shape.in_widths.index(layer.r_bits) if layer.residual else 0
    lo, hi = (max(-(1 << 31), min((1 << 31) - 1, v)) for v in (layer.lo, layer.hi))
    rec = core_store.layer_record(layer.y_zero, layer.r_zero, lo, hi, rcode, layer.requant, layer.r_signed)
    mr = int(np.float32(layer.mr).view(np.uint32))
    out = [rec.to_bytes(bb, "little")]
    for k in range(k_lo, k_hi):
        m = int(np.float32(layer.m[k]).view(np.uint32))
        out.append(core_store.param_entry(int(bias[k]), m, mr).to_bytes(bb, "little"))
    return b"".join(out)
