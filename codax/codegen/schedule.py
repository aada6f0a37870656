"""The runtime schedule: ordered accelerator calls and host ops, the weights blob, DRAM allocation.

DRAM holds two regions:
- the weights blob (`weights.bin`): per layer its weights (bit-packed at the layer's weight width), bias
  (accumulator width) and requantization multipliers (float32), each 64-byte aligned, in execution
  order;
- the activation region: every tensor the network passes between nodes, allocated first-fit with
  reuse once its last reader has run (liveness), followed by one partial-sum scratch area shared by
  all layers (they run one after another) sized for the largest layer that spills partial sums.
Tensors a layer reads or writes are bit-packed at the layer's widths (codax.codegen.packing).
Each accelerator call is one descriptor of the program (`program.bin`, codax.codegen.program); the
readable entry beside it carries the same DRAM offsets, how many tiles each level loads, and the
cost model's predicted cycles/energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from codax.codegen.nest import NestPlan, plan
from codax.codegen.packing import packed_bytes
from codax.codegen.params import LayerParams
from codax.codegen.program import WORDS, DramOffsets, Widths, call_descriptor, weight_parts, weight_tile
from codax.errors import ConfigError
from codax.hw import LayerCost
from codax.ir import Accelerator, Graph, HostOp, Layer, Mapping

ALIGN = 64


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Region:
    offset: int
    bytes: int

    def to_dict(self) -> dict:
        return {"offset": self.offset, "bytes": self.bytes}


@dataclass
class WeightsBlob:
    data: bytearray = field(default_factory=bytearray)
    entries: dict[str, dict[str, Region]] = field(default_factory=dict)  # layer -> part -> region

    def add(self, layer: str, part: str, arr: np.ndarray | bytes) -> Region:
        off = _align(len(self.data))
        self.data.extend(b"\0" * (off - len(self.data)))
        raw = arr if isinstance(arr, bytes) else np.ascontiguousarray(arr).tobytes()
        self.data.extend(raw)
        r = Region(off, len(raw))
        self.entries.setdefault(layer, {})[part] = r
        return r


def tile_counts(p: NestPlan) -> dict[str, dict[str, int]]:
    """How many times each level loads each operand's tile (visits, tiles past a bound skipped)."""
    out: dict[str, dict[str, int]] = {}
    for t in p.transfers:
        inner: dict[str, int] = {}
        for lp in p.loops[: t.pos + 1]:
            inner[lp.dim] = lp.blk  # the innermost enclosing loop of each dim sets its tile grid
        n = math.prod(math.ceil(getattr(p.layer, d) / b) for d, b in inner.items())
        out.setdefault(p.level_names[t.h], {})[t.operand] = n
    return out


def tensor_bytes(graph: Graph, widths: dict[str, Widths], shapes: dict[str, int] | None = None):
    """Bytes of every tensor passed between nodes: packed at the widths of the layers that produce or
    read it, else from `shapes` (bytes given by the caller), else inferred through shape-preserving
    host ops."""
    size: dict[str, int] = dict(shapes or {})
    for layer in graph.layers:
        w = widths[layer.name]
        for name in layer.outputs[:1]:
            size[name] = packed_bytes(layer.operand_size("O"), w.y)
        for name in layer.inputs[:1]:
            size[name] = packed_bytes(layer.N * layer.G * layer.C * math.prod(layer.in_hw), w.x)
        if layer.epilogue.residual:
            size[layer.epilogue.residual] = packed_bytes(layer.operand_size("O"), w.r)
        if layer.runtime_weight:
            size[layer.inputs[1]] = packed_bytes(layer.operand_size("W"), w.w)
    for _ in range(len(graph.nodes)):
        for op in graph.host_ops:
            known = [size[i] for i in op.inputs if i in size]
            for o in op.outputs:
                if o in size:
                    continue
                if op.op_type == "Concat" and len(known) == len(op.inputs):
                    size[o] = sum(known)
                elif op.op_type in ("Add", "Relu", "Identity", "Flatten", "Reshape") and known:
                    size[o] = known[0]
            for i in op.inputs:
                if i not in size and op.op_type in ("Add", "Relu", "Identity") and op.outputs[0] in size:
                    size[i] = size[op.outputs[0]]
    return size


def allocate(order: list, graph: Graph, size: dict[str, int]) -> tuple[dict[str, Region], int]:
    """First-fit allocation with reuse after a tensor's last reader; returns (regions, peak bytes)."""
    last_use: dict[str, int] = {}
    for step, node in enumerate(order):
        for t in _reads(node):
            last_use[t] = step
    for t in graph.outputs:
        last_use[t] = len(order)
    live: dict[str, Region] = {}
    placed: dict[str, Region] = {}
    peak = 0

    def place(t: str) -> None:
        nonlocal peak
        if t in placed:
            return
        if t not in size:
            raise ConfigError(
                f"tensor {t!r}: its size is unknown (it is only read/written by host ops); pass "
                "shapes={tensor: bytes} to the schedule writer"
            )
        need = _align(max(1, size[t]))
        off = 0
        for r in sorted(live.values(), key=lambda r: r.offset):
            if off + need <= r.offset:
                break
            off = max(off, _align(r.offset + r.bytes))
        placed[t] = live[t] = Region(off, size[t])
        peak = max(peak, off + need)

    for t in graph.inputs:
        place(t)
    for step, node in enumerate(order):
        for t in _reads(node):
            place(t)
        for t in node.outputs:
            place(t)
        for t in list(live):
            if last_use.get(t, -1) <= step and t not in node.outputs:
                del live[t]
        for t in node.outputs:
            if t not in last_use and t in live:
                del live[t]  # nobody reads it: its region is free again after this step
    return placed, peak


def _reads(node) -> list[str]:
    r = list(node.inputs[: 1 + bool(node.runtime_weight)] if isinstance(node, Layer) else node.inputs)
    if isinstance(node, Layer) and node.epilogue.residual:
        r.append(node.epilogue.residual)
    return r


@dataclass
class RuntimeSchedule:
    entries: list[dict]
    blob: WeightsBlob
    tensors: dict[str, Region]
    activation_bytes: int
    scratch: Region
    program: np.ndarray  # [calls, DESC_WORDS] int32: the descriptors, in call order
    widths: dict[str, Widths]
    plans: dict[str, NestPlan]  # each layer's loop nest, the one its descriptor encodes

    @property
    def peak_dram_bytes(self) -> int:
        return len(self.blob.data) + self.scratch.offset + self.scratch.bytes + self.program.nbytes

    def to_dict(self) -> dict:
        return {
            "version": 2,
            "dram": {
                "program_bin": {"calls": int(self.program.shape[0]), "bytes": int(self.program.nbytes)},
                "weights_bin": {"bytes": len(self.blob.data), "align": ALIGN},
                "activations": {"bytes": self.activation_bytes, "reused_by_liveness": True},
                "scratch": self.scratch.to_dict(),
                "peak_bytes": self.peak_dram_bytes,
                "note": "offsets of weights/bias/multipliers are into weights.bin (a run-time weight "
                "tensor's, as every tensor's, into the activation region); tensor and scratch offsets are "
                "into the activation region; tensors a layer touches are bit-packed at its widths",
            },
            "weights": {
                layer: {part: r.to_dict() for part, r in parts.items()}
                for layer, parts in self.blob.entries.items()
            },
            "tensors": {t: r.to_dict() for t, r in self.tensors.items()},
            "calls": self.entries,
        }


def build_schedule(
    graph: Graph,
    accel: Accelerator,
    mappings: dict[str, Mapping],
    params: dict[str, LayerParams],
    costs: dict[str, LayerCost],
    shapes: dict[str, int] | None = None,
) -> RuntimeSchedule:
    """The runtime schedule of a mapped graph (mappings already validated, costs from hw.evaluate)."""
    order = [graph.nodes[n] for n in graph.topological_order()]
    widths = {lay.name: Widths.of(lay, params.get(lay.name)) for lay in graph.layers}
    size = tensor_bytes(graph, widths, shapes)
    tensors, act_bytes = allocate(order, graph, size)
    plans = {layer.name: plan(layer, accel, mappings[layer.name]) for layer in graph.layers}
    scratch_need = 0
    for layer in graph.layers:
        if plans[layer.name].spills_partial_sums:
            scratch_need = max(scratch_need, packed_bytes(layer.operand_size("O"), widths[layer.name].acc))
    scratch = Region(_align(act_bytes), scratch_need)
    blob = WeightsBlob()
    entries: list[dict] = []
    program: list[np.ndarray] = []
    for node in order:
        if isinstance(node, HostOp):
            entries.append(
                {
                    "kind": "host",
                    "node": node.name,
                    "op_type": node.op_type,
                    "placement": node.placement,
                    "reason": node.reason,
                    "inputs": [{"tensor": t, **tensors[t].to_dict()} for t in node.inputs if t in tensors],
                    "outputs": [{"tensor": t, **tensors[t].to_dict()} for t in node.outputs],
                }
            )
            continue
        layer, wd, prm = node, widths[node.name], params[node.name]
        p = plans[layer.name]
        raw_parts = weight_parts(layer, prm, wd, weight_tile(p))
        parts = {part: blob.add(layer.name, part, raw) for part, raw in raw_parts.items()}
        spills = p.spills_partial_sums
        res = layer.epilogue.residual
        rt = layer.runtime_weight  # the weight operand is a tensor in the activation region
        dram = DramOffsets(
            w=tensors[layer.inputs[1]].offset if rt else parts["weights"].offset,
            b=parts["bias"].offset if "bias" in parts else -1,
            m=parts["multiplier"].offset if "multiplier" in parts else -1,
            x=tensors[layer.inputs[0]].offset,
            y=tensors[layer.outputs[0]].offset,
            r=tensors[res].offset if res else -1,
            ps=scratch.offset if spills else -1,
        )
        program.append(call_descriptor(p, accel, prm, wd, dram))
        c = costs[layer.name]

        def region(t: str, bits: int) -> dict:
            return {"tensor": t, **tensors[t].to_dict(), "bits": bits}

        entries.append(
            {
                "kind": "accel",
                "node": layer.name,
                "call": len(program) - 1,
                "engine": mappings[layer.name].engine,
                "onnx_node": layer.onnx_node,
                "widths": {"weight": wd.w, "input": wd.x, "output": wd.y, "accumulator": wd.acc},
                "weights": region(layer.inputs[1], wd.w) if rt else parts["weights"].to_dict(),
                "bias": parts["bias"].to_dict() if "bias" in parts else None,
                "multiplier": parts["multiplier"].to_dict() if "multiplier" in parts else None,
                "input": region(layer.inputs[0], wd.x),
                "residual": region(res, wd.r) if res else None,
                "output": region(layer.outputs[0], wd.y),
                "scratch": spills,
                "tile_loads": tile_counts(p),
                "predicted_cycles": c.cycles,
                "predicted_energy_pj": c.energy_pj,
                "macs": c.macs,
            }
        )
    prog = np.stack(program) if program else np.zeros((0, WORDS), np.int32)
    return RuntimeSchedule(entries, blob, tensors, act_bytes, scratch, prog, widths, plans)
