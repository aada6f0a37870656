"""A whole network's program for the core engine: every layer compiled by codax.codegen.core_compile and
placed in ONE DRAM address space -- each layer's constants (weights, parameters, micro-op kernels) in
regions of their own, each activation tensor in one region that its producer's STORE writes and its
consumers' LOADs read -- with the instructions' DRAM fields moved to the network image's beats. The
instructions of all layers form one stream (each layer ends with its FINISH, after which the host runs
the host ops up to the next layer), indexed by layer: first instruction and count.

`compile_layer` lays out a layer's own image (input, weights, parameters, residual, output, micro-ops);
placing reuses its regions and its instruction fields unchanged but for the DRAM bases: an address of
the layer's image is its region's network base plus its offset within the region, so the layer's
program runs on the network image exactly as on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codax.codegen import core, core_isa, core_load, core_store
from codax.codegen.core import CoreShape
from codax.codegen.core_compile import FINISH, CoreLayer, CoreProgram, Tiling, blocked, unblocked
from codax.codegen.core_isa import InsnFormat
from codax.errors import UnsupportedError

ACTIVATIONS = ("input", "residual", "output")  # the layer regions that hold network tensors
INDEX_ENTRY = np.dtype([("first", "<u4"), ("count", "<u4")])  # program.idx: one entry per layer


@dataclass
class PlacedLayer:
    """A layer of the network program: its instructions [first, first + count) and its regions."""

    layer: CoreLayer | None  # None when read back from the project's files
    tiling: Tiling
    first: int
    count: int
    regions: dict[str, str]  # the layer's region name (core_compile's) -> the network image's region
    tensors: dict[str, str]  # "input" / "residual" / "output" -> the network tensor it holds
    queue: list[tuple[InsnFormat, dict]]  # the instructions' fields, DRAM bases in the network image


@dataclass
class NetworkProgram:
    """Every layer's instructions in one stream and the DRAM image they all address."""

    shape: CoreShape
    layers: dict[str, PlacedLayer] = field(default_factory=dict)  # in program order
    insns: list[int] = field(default_factory=list)
    dram: bytearray = field(default_factory=bytearray)
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (first beat, beats)
    act_bits: dict[str, int] = field(default_factory=dict)  # activation region -> its lanes' width

    @property
    def beat_bytes(self) -> int:
        return self.shape.beat_bits // 8

    def region(self, name: str, data: bytes) -> int:
        """Place `data` (padded to whole beats) at the end of the image; its first beat."""
        bb = self.beat_bytes
        beat = len(self.dram) // bb
        self.dram += data + bytes(-len(data) % bb)
        self.regions[name] = (beat, len(self.dram) // bb - beat)
        return beat

    def program_bytes(self) -> bytes:
        """program.bin: the instruction words, 16 bytes each, little-endian, all layers in order."""
        return core_isa.program_bytes(self.insns)

    def index_bytes(self) -> bytes:
        """program.idx: per layer in program order, its first instruction and count (two uint32)."""
        idx = np.array([(p.first, p.count) for p in self.layers.values()], INDEX_ENTRY)
        return idx.tobytes()

    @classmethod
    def from_files(cls, shape: CoreShape, program: bytes, index: bytes, dram: bytes, schedule: dict):
        """The network program as a project's files hold it (program.bin, program.idx, dram.bin and
        schedule.yaml's parsed dict): the instructions decoded from their words, so that what runs is
        what was written."""
        net = cls(shape, dram=bytearray(dram))
        step = core_isa.INSN_BITS // 8
        net.insns = [int.from_bytes(program[i : i + step], "little") for i in range(0, len(program), step)]
        queue = decode(shape, net.insns)
        spans = np.frombuffer(index, INDEX_ENTRY)
        cores = [n for n in schedule["nodes"] if n["kind"] == "core"]
        if len(cores) != len(spans):
            raise ValueError(f"program.idx has {len(spans)} layers, schedule.yaml {len(cores)}")
        for node, (first, count) in zip(cores, spans.tolist()):
            if (first, count) != (node["instructions"]["first"], node["instructions"]["count"]):
                raise ValueError(f"layer {node['name']}: program.idx and schedule.yaml disagree")
            regions, tensors = {}, {}
            for r, e in node["regions"].items():
                net.regions[e["region"]] = (e["first_beat"], e["beats"])
                regions[r] = e["region"]
                if "tensor" in e:
                    tensors[r] = e["tensor"]
                    net.act_bits[e["region"]] = e["bits"]
            t = node["tiling"]
            net.layers[node["name"]] = PlacedLayer(
                None, Tiling(**t), first, count, regions, tensors,
                queue[first : first + count],
            )  # fmt: skip
        return net

    def layer_program(self, name: str, dram: bytes | None = None) -> CoreProgram:
        """Layer `name` as core_sim runs a program: its instructions on the whole network image (`dram`,
        default the image as compiled)."""
        p = self.layers[name]
        prog = CoreProgram(self.shape, p.layer, p.tiling)
        prog.dram = bytearray(self.dram if dram is None else dram)
        prog.regions = {r: self.regions[n] for r, n in p.regions.items()}
        prog.queue = p.queue
        prog.insns = self.insns[p.first : p.first + p.count]
        return prog

    def blocked(self, name: str, tensor: np.ndarray) -> bytes:
        """A [C, H, W] tensor as activation region `name` holds it (blocked at the region's width)."""
        data = blocked(self.shape, np.asarray(tensor, np.int64), self.act_bits[name])
        if len(data) != self.regions[name][1] * self.beat_bytes:
            raise ValueError(
                f"{name}: a tensor of {len(data)} bytes for a region of {self.regions[name][1]} beats"
            )
        return data

    def span(self, name: str) -> slice:
        """Region `name`'s bytes in the image."""
        first, beats = self.regions[name]
        return slice(first * self.beat_bytes, (first + beats) * self.beat_bytes)

    def unblocked(self, dram: bytes, name: str, c: int, h: int, w: int, signed: bool) -> np.ndarray:
        """Activation region `name` of image `dram` as a [C, H, W] tensor."""
        return unblocked(self.shape, bytes(dram[self.span(name)]), c, h, w, self.act_bits[name], signed)


def formats(shape: CoreShape) -> dict[int, InsnFormat]:
    """Each opcode's instruction format on `shape`."""
    fmts = (core_load.load_format(shape), core.gemm_format(shape), core_store.store_format(shape), FINISH)
    return {core_isa.OPCODES[f.kind]: f for f in fmts}


def decode(shape: CoreShape, words: list[int]) -> list[tuple[InsnFormat, dict]]:
    """Instruction words -> (format, fields), the opcode read from the head."""
    by_op = formats(shape)
    out = []
    for w in words:
        fmt = by_op[w & ((1 << core_isa.OPCODE_BITS) - 1)]
        f = fmt.decode(w)
        del f["opcode"]
        out.append((fmt, f))
    return out


def _bits(layer: CoreLayer, region: str) -> int:
    return {"input": layer.x_bits, "residual": layer.r_bits, "output": layer.y_bits}[region]


def place_layer(net: NetworkProgram, prog: CoreProgram, tensors: dict[str, str]) -> PlacedLayer:
    """Append compiled layer `prog` to `net`: its constant regions copied into the network image, its
    activation regions (`tensors`: region -> network tensor) shared with every layer that names the same
    tensor at the same width and size (a tensor the host rewrites at another width gets a region of its
    own), and its instructions with their DRAM bases moved to the network image."""
    bb = net.beat_bytes
    name = prog.layer.name
    if name in net.layers:
        raise ValueError(f"layer {name} is placed twice")
    mapping: dict[str, str] = {}
    for rname, (first, beats) in prog.regions.items():
        if rname in ACTIVATIONS:
            bits = _bits(prog.layer, rname)
            key = f"act/{tensors[rname]}"
            if key in net.regions and (net.act_bits[key], net.regions[key][1]) != (bits, beats):
                key = f"{key}@{bits}b:{beats}"  # the tensor at another width or size: the host rewrites it
            if key not in net.regions:
                net.region(key, bytes(beats * bb))
                net.act_bits[key] = bits
        else:  # the layer's constants, as compile_layer laid them out
            key = f"{name}/{rname}"
            net.region(key, bytes(prog.dram[first * bb : (first + beats) * bb]))
        mapping[rname] = key

    def moved(addr: int, what: str) -> int:
        for rname, (first, beats) in prog.regions.items():
            if first <= addr < first + beats:
                return net.regions[mapping[rname]][0] + addr - first
        raise ValueError(f"layer {name}: {what} {addr} is in none of its regions")

    queue = []
    for fmt, f in prog.queue:
        f = dict(f)
        if "dram_base" in f:  # an input load of padding rows only reads no DRAM and names none
            f["dram_base"] = moved(f["dram_base"], f"{fmt.kind} dram_base")
        if fmt.kind == "store":
            f["res_base"] = moved(f["res_base"], "store res_base") if f.get("res") else 0
        queue.append((fmt, f))
    try:
        words = [fmt.encode(**f) for fmt, f in queue]
    except UnsupportedError as e:
        raise UnsupportedError(
            f"layer {name}: the network image does not fit the instructions: {e}"
        ) from None
    placed = PlacedLayer(prog.layer, prog.tiling, len(net.insns), len(words), mapping,
                         {r: tensors[r] for r in mapping if r in ACTIVATIONS}, queue)  # fmt: skip
    net.insns += words
    net.layers[name] = placed
    return placed


class NetworkRunner:
    """`runner(layer, params, x, residual, weight) -> y` (run_graph's layer_runner) that runs the network
    program itself: one DRAM image for the whole network, each layer's placed instructions on it under
    core_sim's token scheduler. The host's writes are the layer inputs and residuals it is given; an
    input a core layer already left in its region (the producer's STORE) is compared with what the host
    would write first (`in_place`: layer -> whether it was there, for inputs some layer stored)."""

    def __init__(self, net: NetworkProgram, engine=None):
        from codax.codegen.core_sim import Engine

        self.net = net
        self.engine = engine or Engine(net.shape)
        self.dram = bytearray(net.dram)
        self.stored: set[str] = set()  # activation regions a STORE has written
        self.in_place: dict[str, bool] = {}
        self.cycles: dict[str, int] = {}

    def _write(self, region: str, tensor: np.ndarray, layer: str) -> None:
        """The host writes a [C, H, W] tensor into its region. Where a STORE already wrote the region, its
        channels must be there already; the lanes past the last channel are not compared (the STORE
        writes the whole last row block: the requantized zero of channels that do not exist, which the
        consumers' zero weights ignore, where the host writes zeros)."""
        t = np.asarray(tensor)
        if region in self.stored:
            there = self.net.unblocked(self.dram, region, *t.shape, signed=t.dtype.kind != "u")
            self.in_place[layer] = self.in_place.get(layer, True) and np.array_equal(there, t)
        self.dram[self.net.span(region)] = self.net.blocked(region, t)

    def __call__(self, layer, params, x, residual=None, weight=None) -> np.ndarray:
        from codax.codegen.golden import as_nchw, as_nchw_out, from_nchw

        if weight is not None or layer.runtime_weight:
            raise UnsupportedError(f"layer {layer.name}: a run-time weight tensor; the core loads constants")
        placed = self.net.layers[layer.name]
        self._write(placed.regions["input"], as_nchw(layer, x)[0], layer.name)
        if residual is not None:
            self._write(placed.regions["residual"], as_nchw_out(layer, residual)[0], layer.name)
        prog = self.net.layer_program(layer.name, self.dram)
        run = self.engine.run(prog)
        self.dram = bytearray(run.dram)
        out = placed.regions["output"]
        self.stored.add(out)
        self.cycles[layer.name] = run.cycles
        k = layer.G * layer.K
        y = self.net.unblocked(run.dram, out, k, layer.P, layer.Q, params.y_signed).astype(params.y_dtype)
        return from_nchw(layer, y.reshape(1, layer.G * layer.K, layer.P, layer.Q))
