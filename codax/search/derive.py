"""Derive the searched design and hand it to the compiler.

Outputs (see `write_design`): the argmax network (PyTorch module, retrainable from scratch), its
per-layer bitwidths, `accel.yaml` (ir.Accelerator.to_dict), `mappings.yaml` (the exact mapper on
the derived network) and `net.onnx`, so that

    codax compile out/net.onnx --accel out/accel.yaml --mappings out/mappings.yaml

is the hand-off. Layer naming convention: each conv / linear layer is named after the PyTorch
module path of the derived network (`stem`, `b<i>.expand`, `b<i>.dw`, `b<i>.project`, `head`,
`fc`); the ONNX export renames the corresponding Conv / Gemm node to exactly that path, so the
compiler's ONNX frontend (layer name = ONNX node name) produces the names mappings.yaml uses.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch

from codax.hw.evaluate import NetworkCost, evaluate, evaluate_network
from codax.ir import Accelerator, Graph, Layer, Mapping, Precision
from codax.search.hwcost import LayerTable, template_mapping
from codax.search.space import AccelSpace, NetworkSpace
from codax.search.supernet import DerivedNet

log = logging.getLogger(__name__)


@dataclass
class Design:
    ops: list[int]  # chosen op index per unit
    bits: list[tuple[int, int]]  # (weight, activation) bits per unit
    accel: list[tuple[int, ...]]  # accelerator point per engine
    maps: list[list[int]] = field(default_factory=list)  # mapping template per unit and sub-slot

    def to_dict(self, net: NetworkSpace, space: AccelSpace) -> dict:
        return {
            "units": [
                {"name": u.name, "op": u.ops[o].label, "weight_bits": b[0], "act_bits": b[1]}
                for u, o, b in zip(net.units, self.ops, self.bits)
            ],
            "accelerator": [space.describe(c) for c in self.accel],
        }


def build_graph(net: NetworkSpace, design: Design, engine_of: list[int] | None = None) -> tuple[Graph, dict]:
    """The derived network's MAC layers as an ir.Graph (names per the convention), and each layer's
    engine name."""
    g = Graph("cosearch")
    engines: dict[str, str] = {}
    prev = "input"
    n_eng = 1 + max(engine_of or [0])
    for ui, (unit, o, (wb, ab)) in enumerate(zip(net.units, design.ops, design.bits)):
        for _, layer in unit.op_layers(unit.ops[o], wb, ab):
            out = f"{layer.name}_out"
            g.add(
                layer.with_(
                    inputs=(prev,),
                    outputs=(out,),
                    onnx_node=layer.name,
                    precision=Precision(weight=wb, act=ab, acc=32, out=ab),
                )
            )
            engines[layer.name] = "main" if n_eng == 1 else f"e{(engine_of or [0] * len(net.units))[ui]}"
            prev = out
    return g, engines


def _mapper():
    try:
        from codax.hw.mapper import map_layer  # type: ignore[attr-defined]

        return map_layer
    except ImportError:
        return None


def template_fallback(
    layer: Layer, accel: Accelerator, lt: LayerTable, space: AccelSpace, cfg: tuple, engine: str
) -> Mapping:
    """The best of the search's own mapping templates (used when the exact mapper is unavailable)."""
    key = layer.with_(precision=Precision(8, 8, 32, 8)).shape_key()
    idx = next((i for i, la in enumerate(lt.layers) if la.shape_key() == key), None)
    p = layer.precision
    if idx is None or p.weight not in lt.bits or p.act not in lt.bits:
        from codax.hw.mapper import naive_mapping

        return naive_mapping(layer, accel, engine)
    nb = len(lt.bits)
    b = lt.bits.index(p.weight) * nb + lt.bits.index(p.act)
    cands = [template_mapping(lt, space, cfg, idx, b, m, layer.name, engine) for m in range(3)]
    return min(cands, key=lambda m: evaluate(layer, accel, m).cycles)


def exact_cost(
    graph: Graph,
    accel: Accelerator,
    engines: dict[str, str],
    objective: str = "latency",
    lt: LayerTable | None = None,
    space: AccelSpace | None = None,
    cfgs: list[tuple] | None = None,
) -> tuple[dict[str, Mapping], NetworkCost, str]:
    """Map every layer with the exact mapper (or the fallback) and evaluate the network exactly."""
    map_layer = _mapper()
    obj = objective if objective in ("latency", "energy", "edp") else "latency"
    if map_layer is not None:
        try:  # one search per distinct layer shape
            from codax.hw.mapper import map_graph

            gm = map_graph(graph, accel, objective=obj, engine_of=dict(engines))
            return dict(gm.mappings), gm.cost, "codax.hw.mapper.map_graph"
        except Exception as e:  # per layer below, with the template fallback
            log.warning("map_graph failed (%s); mapping layer by layer", e)
    mappings: dict[str, Mapping] = {}
    used = "codax.hw.mapper.map_layer" if map_layer else "search templates (mapper not available)"
    for layer in graph.layers:
        eng = engines.get(layer.name, "main")
        m = None
        if map_layer is not None:
            try:
                m = map_layer(layer, accel, objective=obj, engine=eng, seed=0).mapping
            except Exception as e:  # infeasible for the mapper or a mapper bug: keep the search result
                log.warning("mapper failed on %s (%s); using the template mapping", layer.name, e)
        if m is None:
            ei = 0 if eng == "main" else int(eng[1:])
            m = template_fallback(layer, accel, lt, space, cfgs[ei], eng)
        mappings[layer.name] = m
    return mappings, evaluate_network(graph, accel, mappings), used


def derived_module(net: NetworkSpace, design: Design) -> DerivedNet:
    """A fresh (untrained) plain network for the design: the retrain-from-scratch entry point."""
    return DerivedNet(net, design.ops, design.bits)


# --- ONNX --------------------------------------------------------------------------------------------
def _rename_nodes(model: onnx.ModelProto, names: list[str]) -> None:
    """Give each Conv / Gemm node its module path (legacy exporter scopes look like /b0/dw/Conv)."""
    wanted = set(names)
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            path = ".".join(p for p in node.name.strip("/").split("/")[:-1])
            if path in wanted:
                node.name = path


def export_onnx(
    model: DerivedNet, path: str, shape: tuple[int, int, int], opset: int = 17
) -> onnx.ModelProto:
    """Float ONNX export (BN folded) with node names = codax layer names."""
    model = model.eval()
    q = model.quantize
    model.quantize = False
    f = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, *shape),),
            f,
            opset_version=opset,
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    model.quantize = q
    m = onnx.load_from_string(f.getvalue())
    _rename_nodes(m, model.layer_names())
    missing = set(model.layer_names()) - {n.name for n in m.graph.node}
    if missing:
        raise RuntimeError(f"ONNX export lost layer names {sorted(missing)}")  # a codax bug, not a user error
    onnx.save(m, path)
    return m


def quantize_qdq(
    float_path: str, out_path: str, calib: torch.Tensor, bits: dict[str, tuple[int, int]]
) -> None:
    """Static int8 QDQ quantisation (per-channel weights) calibrated on training images.

    Layers searched at 4 or 6 bits are exported with int8 QDQ too (opset 17 has no narrower
    integer types); their searched widths are recorded in the model's metadata (`codax.bits`) and
    in mappings.yaml / architecture.json, so the compiler can narrow them."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": calib[i : i + 16].numpy()} for i in range(0, len(calib), 16)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        float_path,
        out_path,
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    m = onnx.load(out_path)
    import json

    entry = m.metadata_props.add()
    entry.key, entry.value = (
        "codax.bits",
        json.dumps({k: {"weight": w, "act": a} for k, (w, a) in bits.items()}),
    )
    onnx.save(m, out_path)


def onnx_outputs(path: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x.astype(np.float32)})[0]
