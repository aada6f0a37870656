"""The compile report: per ONNX node where it runs and why, per layer its mapping and predicted cost.

Built only from the compiled IRModule (its codax.* attributes), so it describes exactly what the
passes decided. `write_report` writes report.json and returns the printed table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import tvm

from codax.frontend.graph_json import from_json
from codax.frontend.onnx_graph import VECTOR_KINDS
from codax.hw.precision import precision_label
from codax.ir import Accelerator, Layer
from codax.passes import attrs as A
from codax.passes.relax_util import attr


@dataclass
class NodeRow:
    node: str
    op_type: str
    placement: str  # accelerator | fused | vector | host
    reason: str
    layer: str | None = None


@dataclass
class LayerRow:
    layer: str
    kind: str
    dims: dict
    macs: int
    precision: str
    epilogue: str
    mapping: str | None
    mapping_source: str | None
    cycles: float | None
    energy_pj: float | None
    # the widths the model states where the accelerator does not list them (the layer runs at
    # `precision`, the next wider widths it lists; codax.hw.precision.at_listed_widths)
    model_precision: str | None = None


@dataclass
class CompileReport:
    model: str
    accelerator: str
    nodes: list[NodeRow] = field(default_factory=list)
    layers: list[LayerRow] = field(default_factory=list)
    model_macs: int = 0  # MACs of every Conv/ConvTranspose/Gemm/MatMul node, offloaded or not
    notes: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict:
        cyc = [r.cycles for r in self.layers if r.cycles is not None]
        en = [r.energy_pj for r in self.layers if r.energy_pj is not None]
        count = {
            p: sum(1 for n in self.nodes if n.placement == p)
            for p in ("accelerator", "fused", "vector", "host")
        }
        offloaded = sum(r.macs for r in self.layers)
        return {
            "onnx_nodes": len(self.nodes),
            **{f"nodes_{k}": v for k, v in count.items()},
            "offloaded_layers": len(self.layers),
            "offloaded_macs": offloaded,
            "model_macs": self.model_macs,
            "offloaded_mac_share": offloaded / self.model_macs if self.model_macs else 0.0,
            "cycles": sum(cyc) if cyc else None,
            "energy_pj": sum(en) if en else None,
        }

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "accelerator": self.accelerator,
            "totals": self.totals,
            "notes": self.notes,
            "nodes": [n.__dict__ for n in self.nodes],
            "layers": [r.__dict__ for r in self.layers],
        }

    def table(self) -> str:
        lines = [f"codax compile report: {self.model} on {self.accelerator}", "", "ONNX nodes:"]
        w = max([len(n.node) for n in self.nodes] + [4])
        for n in self.nodes:
            lines.append(f"  {n.node:<{w}}  {n.op_type:<18} {n.placement:<11} {n.reason}")
        lines += ["", "Offloaded layers:"]
        lines.append(f"  {'layer':<{w}}  {'kind':<9} {'MACs':>12} {'cycles':>12} {'energy uJ':>10}  mapping")
        for r in self.layers:
            cyc = f"{r.cycles:,.0f}" if r.cycles is not None else "-"
            en = f"{r.energy_pj / 1e6:.3f}" if r.energy_pj is not None else "-"
            lines.append(
                f"  {r.layer:<{w}}  {r.kind:<9} {r.macs:>12,} {cyc:>12} {en:>10}  {r.mapping or '-'}"
            )
        t = self.totals
        cyc = f"{t['cycles']:,.0f}" if t["cycles"] is not None else "-"
        en = f"{t['energy_pj'] / 1e6:.3f} uJ" if t["energy_pj"] is not None else "-"
        lines += [
            "",
            f"totals: {t['onnx_nodes']} ONNX nodes ({t['nodes_accelerator']} layers offloaded, "
            f"{t['nodes_fused']} fused, {t['nodes_vector']} vector unit, {t['nodes_host']} host); "
            f"{t['offloaded_macs']:,} of {t['model_macs']:,} MACs offloaded "
            f"({t['offloaded_mac_share']:.1%}); {cyc} cycles; {en}",
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _epilogue_str(layer: Layer) -> str:
    e = layer.epilogue
    parts = (
        (["bias"] if e.bias else [])
        + (["residual"] if e.residual else [])
        + (["requant"] if e.requant else [])
    )
    parts += [e.activation] if e.activation else []
    return "+".join(parts) or "-"


def build_report(mod: tvm.IRModule, accel: Accelerator) -> CompileReport:
    """Collect the report from a module that went through the codax pipeline."""
    main = mod["main"]
    og = from_json(str(attr(main, "codax.graph")))
    hosts = json.loads(str(attr(main, A.HOST_LAYERS) or "{}"))
    offl = A.offloaded_layers(mod)
    offloaded_names = {str(attr(f, A.LAYER)) for _, f in A.offloaded_functions(mod)}
    rep = CompileReport(model=og.graph.name, accelerator=accel.name, model_macs=sum(og.macs.values()))
    for name in og.node_order:
        op = og.op_types[name]
        node = og.graph.nodes.get(name)
        if isinstance(node, Layer):
            if name in offloaded_names:
                what = f"{node.kind} layer" + (
                    " over the zero-inserted input (the insertion runs on the host)"
                    if op == "ConvTranspose"
                    else ""
                )
                rep.nodes.append(NodeRow(name, op, "accelerator", what, name))
            else:
                reason = hosts.get(name, "not partitioned (no Relax op found for it)")
                rep.nodes.append(NodeRow(name, op, "host", reason, name))
        elif node is not None:
            kind = VECTOR_KINDS.get(op)
            if kind is not None and kind in accel.host_ops:
                rep.nodes.append(NodeRow(name, op, "vector", f"{op} on the post-processing unit ({kind})"))
            else:
                rep.nodes.append(NodeRow(name, op, "host", node.reason))
        else:
            layer = og.fused.get(name)
            if layer in offloaded_names:
                rep.nodes.append(NodeRow(name, op, "fused", f"fused into layer {layer}", layer))
            else:
                rep.nodes.append(
                    NodeRow(name, op, "host", f"part of layer {layer}, which runs on the host", layer)
                )
    for name in og.node_order:
        if name in offl:
            o = offl[name]
            p = o.layer.precision
            stated = og.graph.nodes.get(name)
            stated = stated.precision if isinstance(stated, Layer) and stated.precision.kind == "int" else p
            rep.layers.append(
                LayerRow(
                    layer=name,
                    kind=o.layer.kind,
                    dims=o.layer.dims,
                    macs=o.layer.macs,
                    precision=precision_label(p),
                    epilogue=_epilogue_str(o.layer),
                    mapping=o.mapping.summary() if o.mapping else None,
                    mapping_source=o.mapping_source,
                    cycles=o.cycles,
                    energy_pj=o.energy_pj,
                    model_precision=_stated(stated) if _stated(stated) != _stated(p) else None,
                )
            )
    widened = [
        f"{r.layer} ({r.model_precision} -> {_stated(offl[r.layer].layer.precision)})"
        for r in rep.layers
        if r.model_precision
    ]
    if widened:
        rep.notes.append(
            f"widths {accel.name} does not list run at the next wider width it lists (the values fit): "
            + ", ".join(widened)
        )
    analysed = sorted(
        {
            r.precision
            for r in rep.layers
            if isinstance(og.graph.nodes.get(r.layer), Layer)
            and og.graph.nodes[r.layer].precision.kind == "float"
            and r.precision != "fp32"
        }
    )
    if analysed:
        rep.notes.append(
            f"fp32 layers analysed at {accel.name}'s precision ({', '.join(analysed)}; it has no float "
            "datapath): the figures are those of the model quantized, as `codax compile --calibrate "
            "SAMPLES` builds it"
        )
    return rep


def _stated(p) -> str:
    """'w3a4o4': weight, input and output widths (a precision label with the output's width)."""
    return f"w{p.weight}a{p.act}o{p.out}"


def write_report(mod: tvm.IRModule, accel: Accelerator, out_dir: str | Path) -> CompileReport:
    """Write report.json into out_dir (atomically) and return the report (print `.table()`)."""
    rep = build_report(mod, accel)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".report.json.tmp"
    tmp.write_text(json.dumps(rep.to_dict(), indent=2))
    tmp.replace(out / "report.json")
    return rep
