"""Python IR objects -> the batched tensors the cost model evaluates.

A `CostInputs` holds B points (layer, engine, mapping) that share the number of memory levels L
(DRAM included). The mapping tensors (factor, rank, db, spatial) have batch size B; a layer or
hardware tensor may have batch size 1 instead, shared by every point (broadcast). Dims follow
`codax.ir.DIMS`, operands `codax.ir.OPERANDS`, levels outermost first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch

from codax.hw.energy import dram_pj_per_bit, mac_pj, sram_pj_per_bit
from codax.hw.library import load_technology
from codax.ir import DIMS, OPERANDS, Accelerator, Layer, Mapping

DTYPE = torch.float64


@dataclass
class CostInputs:
    # layer
    bound: torch.Tensor  # [B, 8]
    stride: torch.Tensor  # [B, 2]
    dilation: torch.Tensor  # [B, 2]
    win_s: torch.Tensor  # [B, 2] stride / gcd(stride, dilation): collision period of the input window
    win_d: torch.Tensor  # [B, 2] dilation / gcd(stride, dilation)
    in_pad: torch.Tensor  # [B, 2] padded input rows/cols
    in_hw: torch.Tensor  # [B, 2] input rows/cols (the DRAM tensor's, without padding)
    w_bits: torch.Tensor  # [B]
    a_bits: torch.Tensor
    o_bits: torch.Tensor
    acc_bits: torch.Tensor
    is_float: torch.Tensor
    # mapping
    factor: torch.Tensor  # [B, L, 8] temporal loop trip counts
    spatial: torch.Tensor  # [B, 8] spatial unrolling per dim
    rank: torch.Tensor  # [B, L, 8] position of each dim in its level's loop order (0 = outermost)
    db: torch.Tensor  # [B, L] 1 where the level is double-buffered
    # hardware
    holds: torch.Tensor  # [B, L, 3] 1 where the level holds the operand (DRAM holds all)
    spatial_level: torch.Tensor  # [B] long: levels with a larger index sit below the spatial fan-out (per PE)
    cap_op: torch.Tensor  # [B, L, 3] bytes per operand (inf where shared or DRAM)
    cap_shared: torch.Tensor  # [B, L] bytes shared by the held operands (inf where per-operand or DRAM)
    banks: torch.Tensor  # [B, L]
    bandwidth: torch.Tensor  # [B, L] bytes/cycle of each level's port towards the levels inside it
    e_read: torch.Tensor  # [B, L] pJ per bit
    e_write: torch.Tensor  # [B, L]
    e_mac: torch.Tensor  # [B] pJ per MAC
    rows: torch.Tensor  # [B]
    cols: torch.Tensor  # [B]
    pipeline_depth: torch.Tensor  # [B]
    # [B] 1 where weights stream into the array (Dram.stream_weights): no weight fill phase
    w_stream: torch.Tensor = field(default_factory=lambda: torch.zeros(1, dtype=DTYPE))
    # [B] cycles from a DRAM burst's request to its first beat (Dram.latency), once per DRAM transfer
    axi_latency: torch.Tensor = field(default_factory=lambda: torch.zeros(1, dtype=DTYPE))
    # DRAM layouts (codax.codegen.program.dram_strides): [B] 1 where activations are a matmul's
    # [G][N][C] / [G][N][K] instead of a convolution's [N][G*C][H][W] / [N][G*K][P][Q]; [B] weights
    # 0 in tile order (constant), 1 a run-time [G][C][K] tensor, 2 a run-time [G][K][C] one
    mm_layout: torch.Tensor = field(default_factory=lambda: torch.zeros(1, dtype=DTYPE))
    w_layout: torch.Tensor = field(default_factory=lambda: torch.zeros(1, dtype=DTYPE))
    # [B] 1 where the epilogue adds a residual: the final store reads it from DRAM beside the output
    has_res: torch.Tensor = field(default_factory=lambda: torch.zeros(1, dtype=DTYPE))

    @property
    def batch(self) -> int:
        return self.factor.shape[0]

    @property
    def levels(self) -> int:
        return self.factor.shape[1]

    def index(self, idx) -> CostInputs:
        """The points idx selects; shared (batch-1) tensors stay shared unless every tensor is."""
        B = self.batch
        return CostInputs(
            **{
                f.name: t[idx] if t.shape[0] == B else t
                for f in fields(self)
                for t in (getattr(self, f.name),)
            }
        )

    def batch_innermost(self) -> CostInputs:
        """The same points with every batched tensor stored batch-innermost in memory (same shapes,
        transposed strides): the layout the analysis runs in, so compiled code reads contiguous
        points instead of striding over them."""
        B = self.batch

        def relayout(t: torch.Tensor) -> torch.Tensor:
            if t.dim() < 2 or t.shape[0] != B or B == 1:
                return t
            return t.movedim(0, -1).contiguous().movedim(-1, 0)

        return CostInputs(**{f.name: relayout(getattr(self, f.name)) for f in fields(self)})

    def expanded(self) -> CostInputs:
        """Every tensor at batch size B (shared tensors repeated)."""
        B = self.batch
        return CostInputs(
            **{f.name: (t := getattr(self, f.name)).expand(B, *t.shape[1:]) for f in fields(self)}
        )

    def with_(self, **changes) -> CostInputs:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(changes)
        return CostInputs(**d)


def batch_of_one(v) -> torch.Tensor:
    """A value (scalar or nested list) as a float64 tensor with a leading batch dim of one."""
    return torch.tensor([v], dtype=DTYPE)


def stack(items: list[CostInputs]) -> CostInputs:
    if len({x.levels for x in items}) > 1:
        raise ValueError("cost points stacked in one batch must have the same number of memory levels")
    items = [x.expanded() for x in items]
    return CostInputs(**{f.name: torch.cat([getattr(x, f.name) for x in items]) for f in fields(items[0])})


def encode_layer(layer: Layer) -> dict[str, torch.Tensor]:
    """The layer's part of a CostInputs, batch of one."""
    g = [math.gcd(s, d) for s, d in zip(layer.stride, layer.dilation)]
    pt, pl, pb, pr = layer.pads
    p = layer.precision
    return {
        "bound": batch_of_one([float(v) for v in layer.dims.values()]),
        "stride": batch_of_one(list(layer.stride)),
        "dilation": batch_of_one(list(layer.dilation)),
        "win_s": batch_of_one([s / gi for s, gi in zip(layer.stride, g)]),
        "win_d": batch_of_one([d / gi for d, gi in zip(layer.dilation, g)]),
        "in_pad": batch_of_one([layer.in_hw[0] + pt + pb, layer.in_hw[1] + pl + pr]),
        "in_hw": batch_of_one(list(layer.in_hw)),
        "mm_layout": batch_of_one(1.0 if layer.op == "matmul" else 0.0),
        "w_layout": batch_of_one({"": 0.0, "GCK": 1.0, "GKC": 2.0}[layer.runtime_weight]),
        "has_res": batch_of_one(1.0 if layer.epilogue.residual else 0.0),
        "w_bits": batch_of_one(p.weight),
        "a_bits": batch_of_one(p.act),
        "o_bits": batch_of_one(p.out),
        "acc_bits": batch_of_one(p.acc),
        "is_float": batch_of_one(1.0 if p.kind == "float" else 0.0),
    }


def encode_hardware(
    accel: Accelerator, engine_name: str | None, layer: Layer | None = None
) -> dict[str, torch.Tensor]:
    """The hardware part of a CostInputs (one engine), batch of one."""
    engine = accel.engine(engine_name)
    tech = load_technology(accel.technology)
    inf = math.inf
    holds = [[1.0, 1.0, 1.0]] + [
        [1.0 if op in lv.operands else 0.0 for op in OPERANDS] for lv in engine.levels
    ]
    cap_op = [[inf] * 3]
    cap_shared = [inf]
    for lv in engine.levels:
        if lv.sizes is not None:
            cap_op.append([float(lv.sizes.get(op, inf)) for op in OPERANDS])
            cap_shared.append(inf)
        else:
            cap_op.append([inf] * 3)
            cap_shared.append(float(lv.size))
    sizes = torch.tensor([float(lv.total_bytes) for lv in engine.levels], dtype=DTYPE)
    sram = sram_pj_per_bit(sizes, tech)
    e_read = [accel.dram.read_pj_per_bit or dram_pj_per_bit(tech)]
    e_write = [accel.dram.write_pj_per_bit or dram_pj_per_bit(tech)]
    for i, lv in enumerate(engine.levels):
        e_read.append(lv.read_pj_per_bit if lv.read_pj_per_bit is not None else float(sram[i]))
        e_write.append(lv.write_pj_per_bit if lv.write_pj_per_bit is not None else float(sram[i]))
    pa = engine.pe_array
    prec = layer.precision if layer is not None else None
    wb = float(prec.weight if prec else max(accel.weight_bits))
    ab = float(prec.act if prec else max(accel.act_bits))
    accb = float(prec.acc if prec else accel.acc_bits)
    isf = 1.0 if (prec and prec.kind == "float") else 0.0
    if accel.mac_pj is not None:
        e_mac = batch_of_one(accel.mac_pj)
    else:
        e_mac = mac_pj(*(batch_of_one(v) for v in (wb, ab, accb, isf)), tech)
    return {
        "holds": batch_of_one(holds),
        "spatial_level": torch.tensor([engine.spatial_level], dtype=torch.long),
        "cap_op": batch_of_one(cap_op),
        "cap_shared": batch_of_one(cap_shared),
        "banks": batch_of_one([1.0] + [float(lv.banks) for lv in engine.levels]),
        "bandwidth": batch_of_one([accel.dram.bandwidth] + [lv.bandwidth for lv in engine.levels]),
        "e_read": batch_of_one(e_read),
        "e_write": batch_of_one(e_write),
        "e_mac": e_mac,
        "rows": batch_of_one(pa.rows),
        "cols": batch_of_one(pa.cols),
        "pipeline_depth": batch_of_one(pa.pipeline_depth),
        "w_stream": batch_of_one(1.0 if accel.dram.stream_weights else 0.0),
        "axi_latency": batch_of_one(float(accel.dram.latency)),
    }


def encode_mapping(mapping: Mapping, level_names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    factor = [[float(mapping.factor(lv, d)) for d in DIMS] for lv in level_names]
    rank = []
    for lv in level_names:
        order = mapping.full_order(lv)
        rank.append([float(order.index(d)) for d in DIMS])
    return {
        "factor": batch_of_one(factor),
        "spatial": batch_of_one([float(mapping.spatial_factor(d)) for d in DIMS]),
        "rank": batch_of_one(rank),
        "db": batch_of_one([1.0 if mapping.double_buffer.get(lv) else 0.0 for lv in level_names]),
    }


def encode(layer: Layer, accel: Accelerator, mapping: Mapping) -> CostInputs:
    """One (layer, engine, mapping) point as a batch of one."""
    engine = accel.engine(mapping.engine)
    hw = encode_hardware(accel, mapping.engine, layer)
    return CostInputs(**encode_layer(layer), **encode_mapping(mapping, engine.level_names), **hw)
