"""The runtime schedule: ordered accelerator calls and host ops, the weights blob, DRAM allocation.

DRAM holds two regions:
- the weights blob (`weights.bin`): per layer its weights, bias (accumulator width) and requantization
  multipliers (float32), each 64-byte aligned, in execution order;
- the activation region: every tensor the network passes between nodes, allocated first-fit with
  reuse once its last reader has run (liveness), followed by one partial-sum scratch area shared by
  all layers (they run one after another) sized for the largest layer that spills partial sums.
Each entry carries the DRAM offsets its kernel is called with, how many tiles each level loads, and
the cost model's predicted cycles/energy, so the host runtime and the hardware engineer read the
same facts the generated top function hard-codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from codax.codegen.hls.types import KernelTypes
from codax.codegen.names import Namer
from codax.codegen.nest import NestPlan, plan
from codax.codegen.params import LayerParams
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

    def add(self, layer: str, part: str, arr: np.ndarray) -> Region:
        off = _align(len(self.data))
        self.data.extend(b"\0" * (off - len(self.data)))
        raw = np.ascontiguousarray(arr).tobytes()
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


def tensor_bytes(graph: Graph, types: dict[str, KernelTypes], shapes: dict[str, int] | None = None):
    """Bytes of every tensor passed between nodes: from the layers that produce or read it, else from
    `shapes` (elements x bytes given by the caller), else inferred through shape-preserving host ops."""
    size: dict[str, int] = dict(shapes or {})
    for layer in graph.layers:
        t = types[layer.name]
        for name in layer.outputs[:1]:
            size.setdefault(name, layer.operand_size("O") * t.dtype("Y").itemsize)
        for name in layer.inputs[:1]:
            size.setdefault(name, layer.operand_size("I") * t.dtype("I").itemsize)
        if layer.epilogue.residual:
            size.setdefault(layer.epilogue.residual, layer.operand_size("O") * t.dtype("R").itemsize)
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
    r = list(node.inputs[:1] if isinstance(node, Layer) else node.inputs)
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
    idents: dict[str, str]

    @property
    def peak_dram_bytes(self) -> int:
        return len(self.blob.data) + self.scratch.offset + self.scratch.bytes

    def to_dict(self) -> dict:
        return {
            "version": 1,
            "dram": {
                "weights_bin": {"bytes": len(self.blob.data), "align": ALIGN},
                "activations": {"bytes": self.activation_bytes, "reused_by_liveness": True},
                "scratch": self.scratch.to_dict(),
                "peak_bytes": self.peak_dram_bytes,
                "note": "offsets of weights/bias/multipliers are into weights.bin; tensor and scratch "
                "offsets are into the activation region",
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
    idents: Namer | None = None,
    shapes: dict[str, int] | None = None,
) -> RuntimeSchedule:
    """The runtime schedule of a mapped graph (mappings already validated, costs from hw.evaluate)."""
    namer = idents or Namer()
    order = [graph.nodes[n] for n in graph.topological_order()]
    types = {lay.name: KernelTypes.for_layer(lay, params.get(lay.name)) for lay in graph.layers}
    size = tensor_bytes(graph, types, shapes)
    tensors, act_bytes = allocate(order, graph, size)
    blob = WeightsBlob()
    scratch_need = 0
    entries: list[dict] = []
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
        layer, t, prm = node, types[node.name], params[node.name]
        w = blob.add(layer.name, "weight", prm.weight.astype(t.dtype("W")))
        b = (
            blob.add(layer.name, "bias", np.asarray(prm.bias).astype(t.dtype("ACC")))
            if layer.epilogue.bias and prm.bias is not None
            else None
        )
        mult = blob.add(layer.name, "multiplier", prm.multiplier) if t.kind == "int" else None
        p = plan(layer, accel, mappings[layer.name])
        counts = tile_counts(p)
        spills = any(tr.operand == "O" and tr.parent == 0 and p.first_visit_loops(tr) for tr in p.transfers)
        if spills:
            scratch_need = max(scratch_need, layer.operand_size("O") * t.dtype("ACC").itemsize)
        c = costs[layer.name]
        entries.append(
            {
                "kind": "accel",
                "node": layer.name,
                "kernel": namer(layer.name),
                "engine": mappings[layer.name].engine,
                "onnx_node": layer.onnx_node,
                "weights": w.to_dict(),
                "bias": b.to_dict() if b else None,
                "multiplier": mult.to_dict() if mult else None,
                "input": {"tensor": layer.inputs[0], **tensors[layer.inputs[0]].to_dict()}
                if layer.inputs
                else None,
                "residual": (
                    {"tensor": layer.epilogue.residual, **tensors[layer.epilogue.residual].to_dict()}
                    if layer.epilogue.residual
                    else None
                ),
                "output": {"tensor": layer.outputs[0], **tensors[layer.outputs[0]].to_dict()}
                if layer.outputs
                else None,
                "scratch": spills,
                "tile_loads": counts,
                "predicted_cycles": c.cycles,
                "predicted_energy_pj": c.energy_pj,
                "macs": c.macs,
            }
        )
    scratch = Region(_align(act_bytes), scratch_need)
    return RuntimeSchedule(
        entries, blob, tensors, act_bytes, scratch, {lay.name: namer(lay.name) for lay in graph.layers}
    )
