"""The three search spaces: network (FBNet-style supernet), bitwidths, accelerator.

The network is a list of *units*: fixed layers (stem, optional 1x1 head, classifier) and searchable
blocks. Each unit has candidate *ops*; each op is a short list of loop-nest layers (`codax.ir.Layer`)
so the cost model sees exactly what the derived network will run. Names follow the derived
module's paths (`stem`, `b3.expand`, `b3.dw`, `b3.project`, `head`, `fc`), which the ONNX export
keeps as node names (see derive.py).

The accelerator is a product of categorical choices (PE rows, cols, per-operand buffer sizes,
dataflow, double buffering) per engine; an accelerator point is a tuple of option indices.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from codax.errors import ConfigError
from codax.hw.library import load_accelerator, load_device, load_technology
from codax.ir import Accelerator, Dram, Engine, Layer, MemoryLevel, PEArray, Precision, conv2d, dense
from codax.search.config import SearchConfig, network_layout

SUBS = ("expand", "dw", "project")  # sub-layer slots of an inverted-residual op


@dataclass(frozen=True)
class OpSpec:
    """One candidate op of a unit: 'ir' (kernel, expansion), 'skip', or a fixed 'conv'/'fc'."""

    kind: str  # ir | skip | conv | fc
    kernel: int = 3
    expansion: int = 1

    @property
    def label(self) -> str:
        if self.kind == "ir":
            return f"ir_k{self.kernel}_e{self.expansion}"
        return self.kind


@dataclass
class Unit:
    """A position in the network: a fixed layer or a searchable block."""

    name: str
    c_in: int
    c_out: int
    hw_in: int
    stride: int
    ops: list[OpSpec]
    searchable: bool
    kernel: int = 3  # fixed conv units
    stage: int = 0

    @property
    def hw_out(self) -> int:
        return math.ceil(self.hw_in / self.stride)

    def op_layers(self, op: OpSpec, w_bits: int = 8, a_bits: int = 8) -> list[tuple[int, Layer]]:
        """(sub-slot index, Layer) for each MAC layer of `op` at the given widths."""
        prec = Precision(weight=w_bits, act=a_bits, acc=32, out=a_bits)
        h = self.hw_in
        if op.kind == "skip":
            return []
        if op.kind == "fc":
            return [(0, dense(self.name, c_in=self.c_in, c_out=self.c_out, precision=prec))]
        if op.kind == "conv":
            k, p = self.kernel, self.kernel // 2
            return [
                (
                    0,
                    conv2d(
                        self.name,
                        c_in=self.c_in,
                        c_out=self.c_out,
                        hw=(h, h),
                        kernel=(k, k),
                        stride=(self.stride,) * 2,
                        pads=(p,) * 4,
                        precision=prec,
                    ),
                )
            ]
        mid = self.c_in * op.expansion
        out: list[tuple[int, Layer]] = []
        if op.expansion > 1:
            out.append(
                (
                    0,
                    conv2d(
                        f"{self.name}.expand",
                        c_in=self.c_in,
                        c_out=mid,
                        hw=(h, h),
                        kernel=(1, 1),
                        precision=prec,
                    ),
                )
            )
        k, p = op.kernel, op.kernel // 2
        out.append(
            (
                1,
                conv2d(
                    f"{self.name}.dw",
                    c_in=mid,
                    c_out=mid,
                    hw=(h, h),
                    kernel=(k, k),
                    stride=(self.stride,) * 2,
                    pads=(p,) * 4,
                    groups=mid,
                    precision=prec,
                ),
            )
        )
        ho = self.hw_out
        out.append(
            (
                2,
                conv2d(
                    f"{self.name}.project",
                    c_in=mid,
                    c_out=self.c_out,
                    hw=(ho, ho),
                    kernel=(1, 1),
                    precision=prec,
                ),
            )
        )
        return out


@dataclass
class NetworkSpace:
    units: list[Unit]
    in_ch: int
    in_hw: int
    num_classes: int

    @property
    def max_ops(self) -> int:
        return max(len(u.ops) for u in self.units)

    @property
    def searchable(self) -> list[int]:
        return [i for i, u in enumerate(self.units) if u.searchable]


def build_network_space(cfg: SearchConfig, in_shape: tuple[int, int, int], num_classes: int) -> NetworkSpace:
    """Units of the supernet for the config's layout and the data's input shape."""
    lay = network_layout(cfg)
    net = cfg.network
    c, h, w = in_shape
    if h != w:
        raise ConfigError(f"data: inputs must be square for the supernet, got {h}x{w}; set data.image_size")
    units: list[Unit] = []
    units.append(Unit("stem", c, lay.stem.width, h, lay.stem.stride, [OpSpec("conv")], False, kernel=3))
    cin, hw = lay.stem.width, units[-1].hw_out
    bi = 0
    last = len(lay.stages) - 1
    for si, st in enumerate(lay.stages):
        for d in range(st.depth):
            stride = st.stride if d == 0 else 1
            ops = [OpSpec("ir", k, e) for k in net.kernels for e in net.expansions]
            if net.skip and stride == 1 and cin == st.width:
                ops.append(OpSpec("skip"))
            units.append(Unit(f"b{bi}", cin, st.width, hw, stride, ops, True, stage=si))
            cin, hw, bi = st.width, units[-1].hw_out, bi + 1
    if lay.head:
        units.append(Unit("head", cin, lay.head, hw, 1, [OpSpec("conv")], False, kernel=1, stage=last))
        cin = lay.head
    units.append(Unit("fc", cin, num_classes, 1, 1, [OpSpec("fc")], False, stage=last))
    return NetworkSpace(units, c, h, num_classes)


# --- accelerator space ---------------------------------------------------------------------------
DATAFLOWS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "weight-stationary": (("K", "G"), ("C", "Q")),  # output x input channels, NVDLA/TPU style
    "output-stationary": (("P", "G", "K"), ("Q", "C")),  # output rows x cols, ShiDianNao style
}


@dataclass
class AccelSpace:
    """Categorical choices of one engine, and how a choice tuple becomes an ir.Engine."""

    names: list[str]
    options: list[list]
    base: Accelerator
    banks: int
    buffer_bandwidth: float
    device_dsp_kind: str | None = None
    fixed: tuple[int, ...] | None = None
    _cache: dict = field(default_factory=dict)

    @property
    def sizes(self) -> list[int]:
        return [len(o) for o in self.options]

    def value(self, cfg: tuple[int, ...], name: str):
        return self.options[self.names.index(name)][cfg[self.names.index(name)]]

    def describe(self, cfg: tuple[int, ...]) -> dict:
        d = {n: self.options[i][cfg[i]] for i, n in enumerate(self.names)}
        d["buffer_kb"] = {op: d.pop(f"buf_{op}") for op in "WIO"}
        return d

    def all_configs(self) -> list[tuple[int, ...]]:
        if self.fixed is not None:
            return [self.fixed]
        return list(itertools.product(*[range(k) for k in self.sizes]))

    def engine(self, cfg: tuple[int, ...], name: str = "main") -> Engine:
        rows, cols = self.value(cfg, "rows"), self.value(cfg, "cols")
        df = self.value(cfg, "dataflow")
        rd, cd = DATAFLOWS[df]
        sizes = {op: int(self.value(cfg, f"buf_{op}") * 1024) for op in "WIO"}
        buf = MemoryLevel(
            "BUF", ("W", "I", "O"), sizes=sizes, banks=self.banks, bandwidth=self.buffer_bandwidth
        )
        return Engine(name, PEArray(rows, cols, rd, cd, dataflow=df, pipeline_depth=8), (buf,))

    def double_buffer(self, cfg: tuple[int, ...]) -> bool:
        return bool(self.value(cfg, "double_buffer"))


def build_accel_space(cfg: SearchConfig) -> AccelSpace:
    a = cfg.accelerator
    base = load_accelerator(a.base)
    names = ["rows", "cols", "buf_W", "buf_I", "buf_O", "dataflow", "double_buffer"]
    options = [
        list(a.rows),
        list(a.cols),
        list(a.buffer_kb.W),
        list(a.buffer_kb.I),
        list(a.buffer_kb.O),
        list(a.dataflow),
        [bool(x) for x in a.double_buffer],
    ]
    fixed = None
    if a.fixed is not None:  # its value is added to the options when they do not hold it
        f = a.fixed
        values = [f.rows, f.cols, f.buffer_kb.W, f.buffer_kb.I, f.buffer_kb.O, f.dataflow, f.double_buffer]
        fixed_idx = []
        for v, opts in zip(values, options):
            if v not in opts:
                opts.append(v)
            fixed_idx.append(opts.index(v))
        fixed = tuple(fixed_idx)
    dsp_kind = load_device(base.device).dsp_kind if base.target == "fpga" else None
    return AccelSpace(names, options, base, int(a.banks), float(a.buffer_bandwidth), dsp_kind, fixed)


def build_accelerator(space: AccelSpace, cfgs: list[tuple[int, ...]], name: str = "cosearch") -> Accelerator:
    """An ir.Accelerator of one engine per chunk; target, device, clock and DRAM from the base design."""
    b = space.base
    engines = tuple(space.engine(c, "main" if len(cfgs) == 1 else f"e{i}") for i, c in enumerate(cfgs))
    desc = "; ".join(
        f"{e.name}: {e.pe_array.rows}x{e.pe_array.cols} {e.pe_array.dataflow}, buffers "
        + "/".join(f"{k}{v // 1024}K" for k, v in e.levels[0].sizes.items())
        for e in engines
    )
    return Accelerator(
        name=name,
        target=b.target,
        engines=engines,
        dram=Dram(bandwidth=b.dram.bandwidth, latency=b.dram.latency),
        clock_mhz=b.clock_mhz,
        weight_bits=tuple(sorted({8, 6, 4} | set(b.weight_bits), reverse=True)),
        act_bits=tuple(sorted({8, 6, 4} | set(b.act_bits), reverse=True)),
        acc_bits=b.acc_bits,
        device=b.device,
        technology=b.technology,
        host_ops=b.host_ops,
        description=f"co-searched by codax: {desc}",
    )


def technology_of(space: AccelSpace):
    return load_technology(space.base.technology)
