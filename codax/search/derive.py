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
import onnx.version_converter
import torch

from codax.errors import CodaxError
from codax.hw.evaluate import NetworkCost, evaluate, evaluate_network
from codax.ir import Accelerator, Graph, Layer, Mapping, Precision
from codax.search.hwcost import LayerTable, template_mapping
from codax.search.quantized import LOGIT_BITS, QuantizedNet
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
    engine name. A layer's output is stored at the width of what reads it (QuantizedNet): the next
    layer's activation width, its own unit's for a residual block's project (the add's operands),
    LOGIT_BITS for the last layer."""
    g = Graph("cosearch")
    engines: dict[str, str] = {}
    prev = "input"
    n_eng = 1 + max(engine_of or [0])
    layers: list[tuple[Layer, int, int, bool]] = []  # layer, weight bits, act bits, feeds a residual add
    for ui, (unit, o, (wb, ab)) in enumerate(zip(net.units, design.ops, design.bits)):
        op = unit.ops[o]
        nest = unit.op_layers(op, wb, ab)
        residual = op.kind == "ir" and unit.stride == 1 and unit.c_in == unit.c_out
        for i, (_, layer) in enumerate(nest):
            layers.append((layer, wb, ab, residual and i == len(nest) - 1))
            engines[layer.name] = "main" if n_eng == 1 else f"e{(engine_of or [0] * len(net.units))[ui]}"
    for i, (layer, wb, ab, to_add) in enumerate(layers):
        out_bits = ab if to_add else layers[i + 1][2] if i + 1 < len(layers) else LOGIT_BITS
        out = f"{layer.name}_out"
        g.add(
            layer.with_(
                inputs=(prev,),
                outputs=(out,),
                onnx_node=layer.name,
                precision=Precision(weight=wb, act=ab, acc=32, out=out_bits),
            )
        )
        prev = out
    return g, engines


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
    """Map every layer with the exact mapper and evaluate the network exactly. A layer the mapper finds
    no legal mapping for (a CodaxError) keeps the search's own template mapping."""
    from codax.hw.mapper import map_graph, map_layer

    obj = objective if objective in ("latency", "energy", "edp") else "latency"
    try:  # one search per distinct layer shape
        gm = map_graph(graph, accel, objective=obj, engine_of=dict(engines))
        return dict(gm.mappings), gm.cost, "codax.hw.mapper.map_graph"
    except CodaxError as e:  # per layer below, with the template mapping where the mapper has none
        log.warning("map_graph found no mapping for every layer (%s); mapping layer by layer", e)
    mappings: dict[str, Mapping] = {}
    used = "codax.hw.mapper.map_layer"
    for layer in graph.layers:
        eng = engines.get(layer.name, "main")
        try:
            m = map_layer(layer, accel, objective=obj, engine=eng, seed=0).mapping
        except CodaxError as e:
            log.warning("no mapper mapping for %s (%s); using the template mapping", layer.name, e)
            ei = 0 if eng == "main" else int(eng[1:])
            m = template_fallback(layer, accel, lt, space, cfgs[ei], eng)
            used = "codax.hw.mapper.map_layer + search templates"
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


QDQ_OPSET = 21  # the first opset with INT4 / UINT4 QuantizeLinear and DequantizeLinear


def _point_tensors(m: onnx.ModelProto, qnet: QuantizedNet) -> dict[str, str]:
    """{ONNX tensor: QuantizedNet point} of the float export: each layer's input, a residual block's
    project output, the classifier's pooled input (back through Flatten/Reshape to the pooling's
    input), the logits."""
    nodes = {n.name: n for n in m.graph.node}
    producer = {o: n for n in m.graph.node for o in n.output}
    out: dict[str, str] = {}
    for layer in qnet.model.layer_names():
        x = nodes[layer].input[0]
        out[x] = f"{layer}.in"
        p = producer.get(x)
        while p is not None and p.op_type in ("Flatten", "Reshape", "GlobalAveragePool"):
            out[p.input[0]] = f"{layer}.pool" if p.op_type == "GlobalAveragePool" else f"{layer}.in"
            p = producer.get(p.input[0]) if p.op_type != "GlobalAveragePool" else None
    for point in qnet.points:
        if point.endswith(".res"):
            out[nodes[point[: -len(".res")] + ".project"].output[0]] = point
    out[m.graph.output[0].name] = "logits"
    missing = set(qnet.points) - set(out.values())
    if missing:  # a codax bug: the export and QuantizedNet disagree on the network's structure
        raise RuntimeError(f"quantization points without an ONNX tensor: {sorted(missing)}")
    return out


def _range_clips(m: onnx.ModelProto, narrow: dict[str, int]) -> None:
    """Restrict the int8 QuantizeLinear of each tensor in `narrow` ({tensor: bits}) to the bits-bit
    range with a Clip on the integer tensor (Q -> Clip -> DQ): ONNX has no 6-bit type."""
    rebuilt = []
    for n in list(m.graph.node):
        rebuilt.append(n)
        if n.op_type != "QuantizeLinear" or n.input[0] not in narrow:
            continue
        bits = narrow[n.input[0]]
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1  # fake_quant's grid
        name, q_out = n.name + "_range", n.output[0]
        n.output[0] = q_out + "_int8"
        m.graph.initializer.extend(
            [
                onnx.numpy_helper.from_array(np.array(lo, np.int8), name + "_min"),
                onnx.numpy_helper.from_array(np.array(hi, np.int8), name + "_max"),
            ]
        )
        rebuilt.append(
            onnx.helper.make_node("Clip", [n.output[0], name + "_min", name + "_max"], [q_out], name=name)
        )
    del m.graph.node[:]
    m.graph.node.extend(rebuilt)


def quantize_qdq(float_path: str, out_path: str, qnet: QuantizedNet, calib: torch.Tensor) -> onnx.ModelProto:
    """The QDQ model of `qnet` (docs/bitwidths.md): ONNX Runtime's quantize_static on the float
    export with every scale, zero point and type given (TensorQuantOverrides), so the model computes
    what `qnet` computes. Weights: INT4 at 4 bits (opset 21), else INT8 whose values lie in the
    narrower range. Activations: INT8, restricted below 8 bits by a Clip on the integer tensor (ONNX
    Runtime's QDQ fusion turns INT4 activations into QLinearConv, which rejects them)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    def override(scale: float, qtype=QuantType.QInt8) -> list[dict]:
        zp = np.array(0, np.int8)
        return [{"scale": np.array(scale, np.float32), "zero_point": zp, "quant_type": qtype}]

    if any(b[0] > 8 or b[1] > 8 for b in qnet.bits.values()):
        raise ValueError("QDQ export supports widths up to 8 bits")  # the search space's widths are <= 8
    # INT4 needs opset 21; the float model's ops are converted there first (torch exports <= 20)
    fm = onnx.version_converter.convert_version(onnx.load(float_path), QDQ_OPSET)
    points = _point_tensors(fm, qnet)
    overrides = {t: override(qnet.points[p].scale) for t, p in points.items()}
    nodes = {n.name: n for n in fm.graph.node}
    for layer in qnet.model.layer_names():
        wq = qnet.weight_quant(layer)
        overrides[nodes[layer].input[1]] = override(
            wq.scale, QuantType.QInt4 if wq.bits == 4 else QuantType.QInt8
        )

    class Reader(CalibrationDataReader):  # every range is given: calibration only has to run
        def __init__(self):
            self.it = iter([{"input": calib[:16].numpy()}])

        def get_next(self):
            return next(self.it, None)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(
            fm,
            out_path,
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "Gemm", "Add", "GlobalAveragePool"],
            per_channel=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            extra_options={
                "TensorQuantOverrides": overrides,
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                # a ReLU after a Conv is quantized after the ReLU only, where the network quantizes
                "OpTypesToExcludeOutputQuantization": ["Conv"],
                "QDQDisableWeightAdjustForInt32Bias": True,
            },
        )
    m = onnx.load(out_path)
    # ORT renames a quantized graph output's producer tensor to <output>_QuantizeLinear_Input
    quantized = {
        n.input[0].removesuffix("_QuantizeLinear_Input")
        for n in m.graph.node
        if n.op_type == "QuantizeLinear"
    }
    extra = quantized - set(overrides)
    if extra:  # a codax bug: ORT quantized a tensor the network does not
        raise RuntimeError(f"the QDQ model quantizes tensors the network does not: {sorted(extra)}")
    _range_clips(m, {t: qnet.points[p].bits for t, p in points.items() if qnet.points[p].bits < 8})
    onnx.checker.check_model(m)
    onnx.save(m, out_path)
    return m


def export_qdq(model: DerivedNet, float_path: str, out_path: str, calib: torch.Tensor, test) -> dict:
    """Calibrate the fused `model` at its widths (QuantizedNet), write its QDQ model and check ONNX
    Runtime on it against the PyTorch network on the test images by `codax.verify`'s rule: per layer
    (each piece between quantization points run by ONNX Runtime on PyTorch's own integer tensors)
    within one step; end to end (logits in steps, top-1) reported."""
    from codax.verify import REPORTED, LayerReference, compare

    qnet = QuantizedNet(model, calib)
    m = quantize_qdq(float_path, out_path, qnet, calib)
    x, y = test
    out, ints = qnet.run_integers(x)
    ref = out.numpy()
    got = onnx_outputs(out_path, x.numpy())
    step = qnet.points["logits"].scale
    pieces = LayerReference(m)
    shapes = pieces.shapes  # a point's ONNX tensor may keep dims PyTorch flattened (pooled [N, C, 1, 1])
    values = {
        t: ints[p].reshape(len(x), *shapes[t][1:]) if t in shapes else ints[p]
        for t, p in _integer_points(m, onnx.load(float_path), qnet).items()
    }
    values.update({m.graph.input[0].name: x.numpy(), m.graph.output[0].name: ref})
    layers = pieces.check(values)
    e2e = compare(got, ref, step, "pytorch", REPORTED, "logits")
    return {
        "test_acc_quantized": float((ref.argmax(1) == y.numpy()).mean()),
        "onnx_qdq_acc": float((got.argmax(1) == y.numpy()).mean()),
        "onnx_qdq_layers_checked": len(layers),
        "onnx_qdq_layer_max_steps": max((c.max_steps or 0.0 for c in layers), default=0.0),
        "onnx_qdq_layers_failing": [c.what for c in layers if not c.ok],
        "onnx_qdq_top1_agreement": e2e.argmax_agreement,
        "onnx_qdq_max_abs_diff": e2e.max_abs_err,
        "onnx_qdq_max_diff_steps": e2e.max_steps,
        "onnx_qdq_steps_histogram": e2e.steps_histogram,
    }


def _integer_points(m: onnx.ModelProto, float_model: onnx.ModelProto, qnet: QuantizedNet) -> dict[str, str]:
    """{integer tensor a DequantizeLinear of the QDQ model `m` reads: QuantizedNet point}: back from
    the DequantizeLinear through the range Clip (narrow widths) to the QuantizeLinear and its input,
    a tensor of the float export."""
    from codax.verify import quantization_points

    producer = {o: n for n in m.graph.node for o in n.output}
    float_points = _point_tensors(float_model, qnet)
    out = {}
    for t in quantization_points(m):
        q = producer[t]
        if q.op_type == "Clip":
            q = producer[q.input[0]]
        src = q.input[0].removesuffix("_QuantizeLinear_Input")  # ORT's renaming of a graph output
        if src not in float_points:  # a codax bug: the QDQ model quantizes a tensor the network does not
            raise RuntimeError(f"quantized tensor {src} is no quantization point of the network")
        out[t] = float_points[src]
    return out


def onnx_outputs(path: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x.astype(np.float32)})[0]
