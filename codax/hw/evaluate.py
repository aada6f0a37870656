"""Readable per-layer and per-network costs on top of the batched cost model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from codax.errors import ConfigError
from codax.hw.cost import CostOutputs, cost_core, descriptor_beats
from codax.hw.encode import CostInputs, batch_of_one, encode, stack
from codax.hw.library import load_device, load_technology
from codax.hw.resources import asic_area_um2, bram18, dsp_per_mac, lut, lutram_bits
from codax.ir import OPERANDS, Accelerator, Graph, Layer, Mapping, validate_mapping
from codax.ir.mapping import input_window


@dataclass
class Resources:
    dsp: float = 0.0
    bram18: float = 0.0
    lut: float = 0.0
    area_mm2: float = 0.0

    def to_dict(self) -> dict:
        return {"dsp": self.dsp, "bram18": self.bram18, "lut": self.lut, "area_mm2": self.area_mm2}


@dataclass
class LayerCost:
    layer: str
    engine: str
    macs: int
    cycles: float
    compute_cycles: float
    energy_pj: float
    mac_energy_pj: float
    level_energy_pj: dict[str, float]
    words_in: dict[str, dict[str, float]]  # level -> operand -> words written into the level from its parent
    words_out: dict[str, dict[str, float]]  # level -> operand -> words leaving the level to its parent
    tile_bytes: dict[str, dict[str, float]]
    dram_bytes: float
    compulsory_dram_bytes: float
    roofline_cycles: float
    utilization: float
    spatial_utilization: float
    resources: Resources
    latency_s: float = 0.0
    dram_beats: float = 0.0  # beats the DRAM port moves (tiles in their layouts), the descriptors' included
    # the cycles the call waits for its descriptor before its tasks start: a layer on its own fetches it
    # (latency + beats); in a network (evaluate_network) the call before prefetched it, and this is
    # what of that prefetch outlasted the call before (the exposed fetch)
    fetch_cycles: float = 0.0

    @property
    def edp(self) -> float:
        return self.energy_pj * self.cycles

    @property
    def roofline_fraction(self) -> float:
        return self.roofline_cycles / self.cycles

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["resources"] = self.resources.to_dict()
        return d


@dataclass
class NetworkCost:
    layers: list[LayerCost]
    cycles: float  # end-to-end latency of one inference (layers in sequence)
    period_cycles: float  # initiation interval: slowest engine when engines are pipelined
    energy_pj: float
    macs: int
    clock_mhz: float
    resources: Resources
    engine_cycles: dict[str, float] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        return self.cycles / (self.clock_mhz * 1e3)

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.period_cycles

    @property
    def edp(self) -> float:
        return self.energy_pj * self.cycles

    def to_dict(self) -> dict:
        return {
            "cycles": self.cycles,
            "period_cycles": self.period_cycles,
            "latency_ms": self.latency_ms,
            "fps": self.fps,
            "energy_pj": self.energy_pj,
            "macs": self.macs,
            "resources": self.resources.to_dict(),
            "engine_cycles": self.engine_cycles,
            "layers": [lc.to_dict() for lc in self.layers],
        }


def compulsory_words(layer: Layer) -> dict[str, float]:
    """Words every mapping must move to or from DRAM at least once: whole weights and outputs, and
    the distinct (padded) input positions the layer's windows touch."""

    def distinct(p: int, r: int, axis: int) -> int:
        s, d = layer.stride[axis], layer.dilation[axis]
        g = math.gcd(s, d)
        s, d = s // g, d // g
        return p * r - max(0, p - d) * max(0, r - s)

    rows, cols = distinct(layer.P, layer.R, 0), distinct(layer.Q, layer.S, 1)
    assert rows <= input_window(layer, layer.P, layer.R, 0)
    return {
        "W": layer.operand_size("W"),
        "I": layer.N * layer.G * layer.C * rows * cols,
        "O": layer.operand_size("O"),
    }


def engine_resources(accel: Accelerator, engine_name: str | None = None) -> Resources:
    """Resources of one engine as the generated hardware builds it: the PE array (one MAC per PE at
    the accelerator's widest weight x activation, plus an fp32 MAC when it runs float layers) and
    every on-chip array at its declared size (`ir.Engine.arrays`), whatever the network. A
    double-buffered mapping splits a buffer into two copies; it never enlarges it."""
    engine = accel.engine(engine_name)
    pes = engine.pe_array.pes
    wb, ab = float(max(accel.weight_bits)), float(max(accel.act_bits))
    res = Resources()
    sram_bytes = 0.0
    lutram = 0.0
    zero = batch_of_one(0.0)
    for arr in engine.arrays():
        b = batch_of_one(float(arr.bytes))
        sram_bytes += arr.bytes
        if arr.per_pe:  # registers: one bank per PE
            lutram += float(lutram_bits(b, batch_of_one(float(pes)), zero))
            continue
        res.bram18 += float(bram18(b, batch_of_one(float(arr.banks)), zero))
        lutram += float(lutram_bits(b, batch_of_one(float(arr.banks)), zero))
    if accel.target == "fpga":
        dev = load_device(accel.device)
        per = float(dsp_per_mac(batch_of_one(wb), batch_of_one(ab), zero, dev.dsp_kind))
        if accel.float_ok:
            per += float(dsp_per_mac(batch_of_one(32.0), batch_of_one(32.0), batch_of_one(1.0), dev.dsp_kind))
        res.dsp = pes * per
        res.lut = float(lut(batch_of_one(float(pes)), batch_of_one(1.0 if accel.float_ok else 0.0), zero))
        res.lut += lutram / 64.0
    else:
        tech = load_technology(accel.technology)
        area = asic_area_um2(
            batch_of_one(float(pes)), batch_of_one(wb), batch_of_one(ab), zero, batch_of_one(sram_bytes), tech
        )
        if accel.float_ok:
            area = area + pes * tech.fp32_mac_um2
        res.area_mm2 = float(area) / 1e6
        res.bram18 = 0.0  # BRAM is an FPGA resource
    return res


def accelerator_resources(accel: Accelerator) -> Resources:
    """Every engine of the accelerator, summed: the hardware exists whichever layers use it."""
    total = Resources()
    for e in accel.engines:
        r = engine_resources(accel, e.name)
        total.dsp += r.dsp
        total.bram18 += r.bram18
        total.lut += r.lut
        total.area_mm2 += r.area_mm2
    return total


def layer_cost(layer: Layer, accel: Accelerator, mapping: Mapping, out: CostOutputs, i: int = 0) -> LayerCost:
    """The LayerCost of `mapping` from row i of cost-model outputs already computed for it (e.g. by a
    search that scored the mapping in a batch): what `evaluate` returns, without a second evaluation.
    The caller guarantees that row i is the cost of this (layer, accel, mapping) point."""
    engine = accel.engine(mapping.engine)
    names = engine.level_names

    def per_level(t: torch.Tensor) -> dict[str, dict[str, float]]:
        return {
            lv: {op: float(t[i, li, xi]) for xi, op in enumerate(OPERANDS)} for li, lv in enumerate(names)
        }

    comp = compulsory_words(layer)
    p = layer.precision
    comp_bytes = (comp["W"] * p.weight + comp["I"] * p.act + comp["O"] * p.out) / 8.0
    cycles = float(out.cycles[i])
    roof = max(layer.macs / engine.pe_array.pes, comp_bytes / accel.dram.bandwidth)
    return LayerCost(
        layer=layer.name,
        engine=engine.name,
        macs=layer.macs,
        cycles=cycles,
        compute_cycles=float(out.compute_cycles[i]),
        energy_pj=float(out.energy_pj[i]),
        mac_energy_pj=float(out.mac_energy_pj[i]),
        level_energy_pj={lv: float(out.level_energy_pj[i, li]) for li, lv in enumerate(names)},
        words_in=per_level(out.words_in),
        words_out=per_level(out.words_out),
        tile_bytes=per_level(out.tile_bytes),
        dram_bytes=float(out.dram_bits[i]) / 8.0,
        compulsory_dram_bytes=comp_bytes,
        roofline_cycles=roof,
        utilization=float(out.utilization[i]),
        spatial_utilization=float(out.spatial_utilization[i]),
        resources=engine_resources(accel, mapping.engine),
        latency_s=cycles / (accel.clock_mhz * 1e6),
        dram_beats=float(out.dram_beats[i]),
        fetch_cycles=float(out.fetch_cycles[i]),
    )


def evaluate_many(points: list[tuple[Layer, Accelerator, Mapping]], check: bool = True) -> list[LayerCost]:
    """Costs of many (layer, accelerator, mapping) points, evaluated in as few batches as possible."""
    if check:
        for layer, accel, mapping in points:
            validate_mapping(layer, accel, mapping)
    encoded = [encode(layer, accel, mapping) for layer, accel, mapping in points]
    groups: dict[int, list[int]] = {}
    for i, e in enumerate(encoded):
        groups.setdefault(e.levels, []).append(i)
    results: list[LayerCost | None] = [None] * len(points)
    for idx in groups.values():
        out = cost_core(stack([encoded[i] for i in idx]))
        for j, i in enumerate(idx):
            results[i] = layer_cost(*points[i], out, j)
    return results  # type: ignore[return-value]


def evaluate(layer: Layer, accel: Accelerator, mapping: Mapping, check: bool = True) -> LayerCost:
    """The cost of one layer under one mapping; validates the mapping first unless check=False."""
    return evaluate_many([(layer, accel, mapping)], check=check)[0]


def evaluate_core(layer: Layer, accel: Accelerator, mapping: Mapping) -> tuple[CostInputs, CostOutputs]:
    x = encode(layer, accel, mapping)
    return x, cost_core(x)


def chain_calls(alone: list[LayerCost], accel: Accelerator) -> list[LayerCost]:
    """The costs of layers run as a program's calls, in this order, from their costs as calls on their
    own (codax.hw.cost, "the descriptor fetch across calls"). Each call but the last prefetches the
    next one's descriptor: the prefetch's beats are the first on its DRAM port (its cycles and beats
    grow by them); a call the call before, on the same engine, prefetched for waits only for what of
    the prefetch outlasted that call: its fetch_cycles, relu(F - that call's cycles). The first call,
    and one after a call on another engine, fetches its own descriptor (F)."""
    beats = descriptor_beats(accel.dram.bandwidth)
    out: list[LayerCost] = []
    for i, c in enumerate(alone):
        fetch = c.fetch_cycles  # F: latency + beats
        own = c.cycles - fetch
        prefetches = i + 1 < len(alone)
        fetched = i == 0 or alone[i - 1].engine != c.engine
        exposed = fetch if fetched else max(0.0, fetch - out[-1].cycles + out[-1].fetch_cycles)
        cycles = own + (beats if prefetches else 0.0) + exposed
        out.append(
            replace(
                c,
                cycles=cycles,
                fetch_cycles=exposed,
                dram_beats=c.dram_beats - beats + beats * (fetched + prefetches),
                utilization=c.utilization * c.cycles / cycles,
                latency_s=cycles / (accel.clock_mhz * 1e6),
            )
        )
    return out


def evaluate_network(graph: Graph, accel: Accelerator, mappings: dict[str, Mapping]) -> NetworkCost:
    """Per-layer costs and network totals. Layers run one after another on their engines, each a call
    of the program in the graph's order (chain_calls: a call's descriptor is prefetched by the call
    before); with several engines the network is pipelined, so throughput is set by the busiest
    engine."""
    missing = [layer.name for layer in graph.layers if layer.name not in mappings]
    if missing:
        raise ConfigError(
            f"no mapping for layer(s) {', '.join(missing[:5])}; map them first (codax.hw.map_graph)"
        )
    layers = graph.layers
    costs = chain_calls(evaluate_many([(layer, accel, mappings[layer.name]) for layer in layers]), accel)
    engine_cycles: dict[str, float] = {e.name: 0.0 for e in accel.engines}
    for c in costs:
        engine_cycles[c.engine] += c.cycles
    res = accelerator_resources(accel)
    return NetworkCost(
        layers=costs,
        cycles=sum(c.cycles for c in costs),
        period_cycles=max(engine_cycles.values()) if costs else 0.0,
        energy_pj=sum(c.energy_pj for c in costs),
        macs=sum(c.macs for c in costs),
        clock_mhz=accel.clock_mhz,
        resources=res,
        engine_cycles=engine_cycles,
    )
