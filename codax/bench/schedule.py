"""Schedule benchmarks: map a network on accelerators and tabulate what each layer costs.

Library functions for `codax bench` and benchmarks/schedule_bench.py: `bench_network` maps a
graph on each accelerator (codax.hw.mapper.map_graph) and returns JSON-ready rows per layer plus
network totals, including the roofline bound (max of compute and compulsory DRAM traffic) and the
fraction of it each mapping reaches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codax.hw import LayerCost, load_accelerator
from codax.hw.mapper import map_graph
from codax.hw.precision import graph_at, precision_label
from codax.ir import Accelerator, Graph

DEFAULT_ACCELS: tuple[str, ...] = ("eyeriss-like", "shidiannao-like", "nvdla-small", "tpu-like", "zc706-int8")


@dataclass
class NetworkBench:
    network: str
    accelerator: str
    objective: str
    map_s: float
    searched: int
    evaluated: int
    totals: dict
    layers: list[dict] = field(default_factory=list)
    precision: str = ""  # the layers' precisions as analysed, e.g. "w8a8acc32 (fp32 layers at ...)"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def layer_row(lc: LayerCost, accel: Accelerator, kind: str, pes: int) -> dict:
    """One layer's figures: latency, energy, EDP, utilization, roofline bound and fraction reached."""
    compute_bound = lc.macs / pes
    memory_bound = lc.compulsory_dram_bytes / accel.dram.bandwidth
    return {
        "layer": lc.layer,
        "kind": kind,
        "macs": lc.macs,
        "cycles": lc.cycles,
        "latency_us": lc.cycles / accel.clock_mhz,
        "energy_uj": lc.energy_pj / 1e6,
        "edp_uj_us": lc.energy_pj / 1e6 * lc.cycles / accel.clock_mhz,
        "utilization": lc.utilization,
        "dram_bytes": lc.dram_bytes,
        "intensity_macs_per_byte": lc.macs / max(lc.dram_bytes, 1.0),
        "roofline_cycles": lc.roofline_cycles,
        "roofline_bound": "compute" if compute_bound >= memory_bound else "memory",
        "roofline_fraction": lc.roofline_fraction,
        "energy_breakdown_uj": {
            "mac": lc.mac_energy_pj / 1e6,
            **{lv: e / 1e6 for lv, e in lc.level_energy_pj.items()},
        },
    }


def bench_network(
    graph: Graph,
    accels: list[str | Accelerator] | tuple = DEFAULT_ACCELS,
    objective: str = "latency",
    seed: int = 0,
) -> list[NetworkBench]:
    """Map `graph` on every accelerator and return one NetworkBench (rows + totals) per accelerator.
    Float layers on an accelerator without a float datapath are analysed at its precision
    (codax.hw.precision), and the row says so."""
    out = []
    kinds = {layer.name: layer.kind for layer in graph.layers}
    for a in accels:
        accel = load_accelerator(a) if isinstance(a, str) else a
        analysed = graph_at(graph, accel)
        gm = map_graph(analysed, accel, objective, seed=seed)
        cost = gm.cost
        pes = accel.engine().pe_array.pes
        rows = [layer_row(lc, accel, kinds[lc.layer], pes) for lc in cost.layers]
        roof = sum(r["roofline_cycles"] for r in rows)
        totals = {
            "layers": len(rows),
            "macs": cost.macs,
            "cycles": cost.cycles,
            "latency_ms": cost.latency_ms,
            "fps": cost.fps,
            "energy_mj": cost.energy_pj / 1e9,
            "edp_mj_ms": cost.energy_pj / 1e9 * cost.latency_ms,
            "utilization": cost.macs / (cost.cycles * pes) if cost.cycles else 0.0,
            "roofline_cycles": roof,
            "roofline_fraction": roof / cost.cycles if cost.cycles else 0.0,
            "resources": cost.resources.to_dict(),
        }
        out.append(
            NetworkBench(
                graph.name,
                accel.name,
                objective,
                gm.wall_s,
                gm.searched,
                gm.evaluated,
                totals,
                rows,
                _precision_note(graph, analysed),
            )
        )
    return out


def _precision_note(graph: Graph, analysed: Graph) -> str:
    labels = sorted({precision_label(layer.precision) for layer in analysed.layers})
    retyped = any(a.precision != b.precision for a, b in zip(graph.layers, analysed.layers))
    return ",".join(labels) + (" (fp32 layers at the accelerator's precision)" if retyped else "")


def table(results: list[NetworkBench]) -> str:
    """A fixed-width text table of network totals."""
    head = (
        f"{'network':12s} {'accelerator':16s} {'lat ms':>9s} {'FPS':>8s} {'energy mJ':>10s} "
        f"{'EDP mJ*ms':>10s} {'util':>5s} {'roof%':>6s} {'map s':>6s}  precision"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        t = r.totals
        lines.append(
            f"{r.network:12s} {r.accelerator:16s} {t['latency_ms']:9.3f} {t['fps']:8.1f} "
            f"{t['energy_mj']:10.3f} {t['edp_mj_ms']:10.3f} {t['utilization']:5.2f} "
            f"{t['roofline_fraction'] * 100:6.1f} {r.map_s:6.2f}  {r.precision}"
        )
    return "\n".join(lines)
