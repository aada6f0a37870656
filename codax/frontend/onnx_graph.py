"""ONNX graph -> codax.ir.Graph: which nodes are MAC layers (with their fused epilogue) and which are not.

This is the accelerator-independent view: every Conv / Gemm / MatMul with constant weights becomes a
`Layer` named after its ONNX node; the Relu/Clip, bias and residual Add, and (for QDQ models) the
Dequantize/Quantize nodes around it are recorded as fused into it; every other node is a `HostOp`
saying why. The Relax patterns in codax.passes fuse the same chains, so both views agree.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import numpy_helper

from codax.errors import ConfigError
from codax.frontend.conv_transpose import conv_weight, node_geometry
from codax.frontend.onnx_io import LoadedModel
from codax.ir import Epilogue, Graph, HostOp, Layer, Precision

LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# ONNX op type -> the accelerator's post-processing-unit kind (Accelerator.host_ops)
VECTOR_KINDS = {
    "Add": "add",
    "MaxPool": "maxpool",
    "AveragePool": "avgpool",
    "GlobalAveragePool": "globalavgpool",
    "Concat": "concat",
    "Relu": "relu",
    "Softmax": "softmax",
    "LayerNormalization": "layernorm",
    "Gelu": "gelu",
    "Erf": "gelu",  # GELU as exported: x * 0.5 * (1 + erf(x / sqrt 2)); its Erf is the unit's part
}
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def weight_key(array: np.ndarray, op: str) -> str:
    """A content fingerprint of a layer's weight, the link between an ONNX node and a Relax function.

    Relax drops ONNX names, but a layer's weights survive every pass unchanged (constants are not
    rewritten), so hashing them identifies the layer. Matmul weights are hashed in [K, C] order.
    """
    a = np.asarray(array)
    if op == "matmul":
        a = a.T
    a = np.ascontiguousarray(a)
    h = hashlib.sha1(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return "sha1:" + h.hexdigest()


def param_name(initializer: str) -> str:
    """The Relax parameter name a missing (shape-only) initializer is imported as."""
    return "w_" + re.sub(r"\W", "_", initializer)


def param_key(initializer: str) -> str:
    return "param:" + param_name(initializer)


@dataclass
class OnnxGraph:
    """The extracted graph plus what the report and the passes need to link back to ONNX."""

    graph: Graph
    fused: dict[str, str] = field(default_factory=dict)  # ONNX node -> layer it is fused into
    keys: dict[str, str] = field(default_factory=dict)  # weight key -> layer name
    node_order: list[str] = field(default_factory=list)  # every ONNX node name, in graph order
    op_types: dict[str, str] = field(default_factory=dict)  # ONNX node name -> op type
    # MACs of every MAC node (Conv, ConvTranspose, Gemm, MatMul): a layer's as the accelerator runs
    # it, a host node's as ONNX defines the op; the denominator of the offloaded MAC share
    macs: dict[str, int] = field(default_factory=dict)


class _Index:
    """Producers, consumers, constants and shapes of an ONNX graph."""

    def __init__(self, lm: LoadedModel):
        g = lm.model.graph
        self.missing = set(lm.missing_weights)
        self.widths = lm.widths
        self.inits = {t.name: t for t in g.initializer}
        self.consts: dict[str, onnx.TensorProto] = dict(self.inits)
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = a.t
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.graph_outputs = {o.name for o in g.output}
        self.runtime_matmuls = 0  # MatMul/Gemm nodes with a run-time second operand seen so far
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, int] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            tt = vi.type.tensor_type
            if tt.HasField("shape"):
                self.shapes[vi.name] = tuple(d.dim_value for d in tt.shape.dim)
            self.dtypes[vi.name] = tt.elem_type
        for t in g.initializer:
            self.shapes[t.name] = tuple(t.dims)
            self.dtypes[t.name] = t.data_type

    def const(self, name: str) -> np.ndarray | None:
        t = self.consts.get(name)
        if t is None or name in self.missing:
            return None
        return numpy_helper.to_array(t)

    def bits(self, tensor: str) -> int:
        """An integer tensor's width: read from the model (codax.frontend.widths), else its type's."""
        return self.widths.get(tensor) or _bits(self.dtypes.get(tensor, 3))

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def sole_consumer(self, tensor: str) -> onnx.NodeProto | None:
        cs = self.consumers.get(tensor, [])
        if len(cs) != 1 or tensor in self.graph_outputs:
            return None
        return cs[0]

    def dq_of(self, tensor: str) -> onnx.NodeProto | None:
        p = self.producer.get(tensor)
        return p if p is not None and p.op_type == "DequantizeLinear" else None


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _bits(elem_type: int) -> int:
    return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize * 8)


def _node_name(node: onnx.NodeProto, i: int) -> str:
    return node.name or f"{node.op_type}_{i}"


@dataclass
class _Core:
    """A recognised MAC node before its epilogue is walked."""

    layer: Layer
    key: str
    fused: list[str]
    quantized: bool
    weight: str


def _clip_activation(ix: _Index, node: onnx.NodeProto) -> Epilogue | None:
    a = _attrs(node)
    lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
    for pos in (1, 2):
        if len(node.input) > pos and node.input[pos]:
            v = ix.const(node.input[pos])
            if v is None:
                return None  # a run-time bound: not an epilogue
            if pos == 1:
                lo = float(v)
            else:
                hi = float(v)
    if lo == 0 and hi == 6:
        return Epilogue(activation="relu6")
    if lo == 0 and np.isinf(hi):
        return Epilogue(activation="relu")
    return Epilogue(activation="clip", clip_min=float(lo), clip_max=float(hi))


def _core(ix: _Index, node: onnx.NodeProto, name: str) -> _Core | str:
    """A Layer for a Conv/ConvTranspose/Gemm/MatMul node, or the reason it cannot be one."""
    a = _attrs(node)
    x, w = node.input[0], node.input[1]
    fused: list[str] = []
    quantized = False
    wsrc = w
    dq_w, dq_x = ix.dq_of(w), ix.dq_of(x)
    if dq_w is not None and ix.is_const(dq_w.input[0]):
        wsrc = dq_w.input[0]
        fused.append(dq_w.name)
        quantized = dq_x is not None
    if not ix.is_const(wsrc):
        return _runtime_matmul(ix, node, name)
    xshape, wshape, yshape = ix.shapes.get(x), tuple(ix.shapes.get(wsrc, ())), ix.shapes.get(node.output[0])
    if not xshape or not yshape or 0 in xshape or 0 in yshape:
        return f"{node.op_type} with unknown input/output shape (run shape inference or give input shapes)"
    if quantized:
        prec = Precision(
            weight=ix.bits(wsrc),
            act=ix.bits(dq_x.input[0]),
            acc=32,
            out=8,
            kind="int",
        )
        x = dq_x.input[0]
        fused.append(dq_x.name)
    else:
        prec = Precision.float32()
    bias = len(node.input) > 2 and bool(node.input[2])
    dq_b = ix.dq_of(node.input[2]) if bias else None
    if dq_b is not None:
        fused.append(dq_b.name)
    bias_src = dq_b.input[0] if bias and dq_b is not None else (node.input[2] if bias else "")
    inputs = [x, wsrc] + ([bias_src] if bias else [])
    try:
        if node.op_type == "Conv" and len(xshape) == 3:
            # Conv1d: a 2-D convolution with H = 1 (codax.passes.layout does the same in Relax)
            a = _conv1d_as_2d(a)
            xshape, wshape, yshape = _h1(xshape), _h1(wshape), _h1(yshape)
        if node.op_type == "ConvTranspose":
            layer = _conv_transpose(name, a, xshape, wshape, yshape)
            if isinstance(layer, str):
                return layer
            layer = layer.with_(
                precision=prec, epilogue=Epilogue(bias=bias), inputs=tuple(inputs), onnx_node=node.name
            )
            op = "conv"
        elif node.op_type == "Conv":
            if len(xshape) != 4:
                return f"Conv on a rank-{len(xshape)} input (only 1-D and 2-D convolutions are layers)"
            k = int(a.get("group", 1))
            pads = list(a.get("pads", [0, 0, 0, 0]))
            auto = a.get("auto_pad", b"NOTSET")
            auto = auto.decode() if isinstance(auto, bytes) else auto
            if auto in ("SAME_UPPER", "SAME_LOWER"):
                strides = a.get("strides", [1, 1])
                dil = a.get("dilations", [1, 1])
                pads = [0, 0, 0, 0]
                for i in range(2):
                    eff = (wshape[2 + i] - 1) * dil[i] + 1
                    total = max(0, (yshape[2 + i] - 1) * strides[i] + eff - xshape[2 + i])
                    small, big = total // 2, total - total // 2
                    pads[i], pads[i + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
            layer = Layer(
                name,
                N=xshape[0],
                G=k,
                K=wshape[0] // k,
                C=wshape[1],
                P=yshape[2],
                Q=yshape[3],
                R=wshape[2],
                S=wshape[3],
                stride=tuple(a.get("strides", [1, 1])),
                dilation=tuple(a.get("dilations", [1, 1])),
                pads=(pads[0], pads[1], pads[2], pads[3]),
                in_hw=(xshape[2], xshape[3]),
                op="conv",
                precision=prec,
                epilogue=Epilogue(bias=bias),
                inputs=tuple(inputs),
                onnx_node=node.name,
            )
            op = "conv"
        else:
            if node.op_type == "Gemm":
                if a.get("transA", 0):
                    return "Gemm with transA=1 (unsupported attribute)"
                if a.get("alpha", 1.0) != 1.0:
                    return f"Gemm with alpha={a['alpha']} (unsupported attribute)"
                kdim, cdim = (wshape[0], wshape[1]) if a.get("transB", 0) else (wshape[1], wshape[0])
            else:
                if len(xshape) < 2 or len(wshape) != 2:
                    return (
                        f"MatMul of rank {len(xshape)} x {len(wshape)} (only [..., C] x [C, K] matmuls with "
                        "a 2-D weight are layers)"
                    )
                kdim, cdim = wshape[1], wshape[0]
            layer = Layer(
                name,
                N=int(np.prod(xshape[:-1])),  # [B, T, C] tokens are B*T rows (codax.passes.layout)
                K=kdim,
                C=cdim,
                op="matmul",
                in_hw=(1, 1),
                precision=prec,
                epilogue=Epilogue(bias=bias),
                inputs=tuple(inputs),
                onnx_node=node.name,
            )
            op = "matmul"
    except ConfigError as e:
        return f"{node.op_type} not expressible as a loop-nest layer: {e}"
    arr = ix.const(wsrc)
    if arr is None:
        key = param_key(wsrc)
    else:
        if node.op_type == "Gemm" and a.get("transB", 0):
            arr = arr.T
        if op == "conv" and arr.ndim == 3:
            arr = arr[:, :, None, :]
        if node.op_type == "ConvTranspose":
            arr = conv_weight(arr, int(a.get("group", 1)))
        key = weight_key(arr, op)
    return _Core(layer, key, fused, quantized, wsrc)


def runtime_matmul_key(index: int) -> str:
    """The link between the index-th MatMul of two run-time tensors (in graph order) and its Relax
    matmul: there is no weight to fingerprint, and TVM's importer keeps the nodes' order."""
    return f"runtime:{index}"


def _runtime_matmul(ix: _Index, node: onnx.NodeProto, name: str) -> _Core | str:
    """A MatMul whose second operand is computed (attention's Q K^T and A V): a matmul layer whose
    weight operand is that run-time tensor, its batch dims (equal on both sides) the group dim G."""
    x, w = node.input[0], node.input[1]
    if node.op_type not in ("MatMul", "Gemm"):
        return f"{node.op_type} with a weight computed at run time ({w!r}): runs on the host"
    index = ix.runtime_matmuls  # counted like the Relax matmuls they import as
    ix.runtime_matmuls += 1
    if node.op_type != "MatMul":
        return (
            f"{node.op_type} whose second operand {w!r} is computed at run time: runs on the host; write "
            "it as a MatMul (only MatMul takes two run-time tensors)"
        )
    fused: list[str] = []
    dq_x, dq_w = ix.dq_of(x), ix.dq_of(w)
    quantized = dq_x is not None and dq_w is not None
    if quantized:
        x, w = dq_x.input[0], dq_w.input[0]
        fused += [dq_x.name, dq_w.name]
    xshape, wshape = ix.shapes.get(x), ix.shapes.get(w)
    if not xshape or not wshape or 0 in xshape or 0 in wshape:
        return "MatMul with unknown operand shapes (run shape inference or give input shapes)"
    if (
        len(xshape) < 2
        or len(wshape) < 2
        or tuple(xshape[:-2]) != tuple(wshape[:-2])
        or xshape[-1] != wshape[-2]
    ):
        return (
            f"MatMul of run-time tensors {list(xshape)} x {list(wshape)}: only [..., N, C] x [..., C, K] "
            "with equal batch dims runs on the accelerator (broadcast the batch first)"
        )
    prec = (
        Precision(weight=ix.bits(w), act=ix.bits(x), acc=32, out=8, kind="int")
        if quantized
        else Precision.float32()
    )
    layer = Layer(
        name,
        N=int(xshape[-2]),
        G=int(np.prod(xshape[:-2], dtype=np.int64)),  # the batch (heads): one weight tensor each
        K=int(wshape[-1]),
        C=int(xshape[-1]),
        op="matmul",
        in_hw=(1, 1),
        precision=prec,
        inputs=(x, w),
        onnx_node=node.name,
        runtime_weight="GCK",
    )
    return _Core(layer, runtime_matmul_key(index), fused, quantized, w)


def _conv_transpose(name: str, a: dict, xshape, wshape, yshape) -> Layer | str:
    """The ordinary convolution a ConvTranspose computes over its zero-inserted input, or why not."""
    if len(xshape) != 4:
        return f"ConvTranspose on a rank-{len(xshape)} input (only 2-D transposed convolutions are layers)"
    auto = a.get("auto_pad", b"NOTSET")
    if "output_shape" in a or (auto.decode() if isinstance(auto, bytes) else auto) != "NOTSET":
        return "ConvTranspose with output_shape / auto_pad (give explicit pads and output_padding)"
    g_ = int(a.get("group", 1))
    geo = node_geometry(a, (xshape[2], xshape[3]), (wshape[2], wshape[3]))
    if geo.out_hw != tuple(yshape[2:]):
        return f"ConvTranspose whose output {list(yshape)} is not the one its attributes give ({geo.out_hw})"
    return Layer(
        name,
        N=xshape[0],
        G=g_,
        K=wshape[1],
        C=wshape[0] // g_,
        P=yshape[2],
        Q=yshape[3],
        R=wshape[2],
        S=wshape[3],
        stride=(1, 1),
        dilation=geo.dilation,
        pads=geo.pads,
        in_hw=geo.in_hw,
        op="conv",
    )


def _h1(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A Conv1d tensor shape [N, C, W] (or weight [K, C, S]) as its H = 1 2-D form."""
    return (shape[0], shape[1], 1, shape[2])


def _conv1d_as_2d(a: dict) -> dict:
    """Conv1d attributes as those of the equivalent 2-D convolution over [N, C, 1, W]."""
    out = dict(a)
    if "kernel_shape" in a:
        out["kernel_shape"] = [1, *a["kernel_shape"]]
    out["strides"] = [1, *a.get("strides", [1])]
    out["dilations"] = [1, *a.get("dilations", [1])]
    left, right = a.get("pads", [0, 0])
    out["pads"] = [0, left, 0, right]
    return out


def _epilogue(ix: _Index, node: onnx.NodeProto, core: _Core, claimed: set[str]) -> tuple[Layer, list[str]]:
    """Walk the single-consumer chain after a core node: bias Add, residual Add, activation, requant.
    A node already fused into an earlier layer (an Add joining two conv chains) is not taken twice."""
    layer, fused = core.layer, list(core.fused)
    ep = layer.epilogue
    out = node.output[0]
    inputs = list(layer.inputs)
    nxt = ix.sole_consumer(out)
    if nxt is not None and nxt.name in claimed:
        nxt = None
    if not core.quantized and not layer.runtime_weight:  # a run-time matmul fuses no bias/residual
        if nxt is not None and nxt.op_type == "Add" and not ep.bias:
            other = nxt.input[1] if nxt.input[0] == out else nxt.input[0]
            cshape = ix.shapes.get(other, ())
            if ix.is_const(other) and int(np.prod(cshape or (1,))) == (layer.G * layer.K):
                ep = Epilogue(bias=True)
                inputs.append(other)
                fused.append(nxt.name)
                out, nxt = nxt.output[0], ix.sole_consumer(nxt.output[0])
        if nxt is not None and nxt.op_type == "Add" and not any(ix.is_const(i) for i in nxt.input):
            other = nxt.input[1] if nxt.input[0] == out else nxt.input[0]
            if ix.shapes.get(other) == ix.shapes.get(out):
                ep = Epilogue(bias=ep.bias, residual=other)
                inputs.append(other)
                fused.append(nxt.name)
                out, nxt = nxt.output[0], ix.sole_consumer(nxt.output[0])
    act = None
    if nxt is not None and nxt.op_type == "Relu":
        act = Epilogue(activation="relu")
    elif nxt is not None and nxt.op_type == "Clip":
        act = _clip_activation(ix, nxt)
    if act is not None:
        ep = Epilogue(ep.bias, act.activation, act.clip_min, act.clip_max, ep.residual)
        fused.append(nxt.name)
        out, nxt = nxt.output[0], ix.sole_consumer(nxt.output[0])
    if core.quantized:
        if nxt is None or nxt.op_type != "QuantizeLinear":
            return layer.with_(precision=Precision.float32(), inputs=tuple(inputs)), []
        ep = Epilogue(ep.bias, ep.activation, ep.clip_min, ep.clip_max, None, requant=True)
        fused.append(nxt.name)
        out = nxt.output[0]
        layer = layer.with_(precision=replace(layer.precision, out=ix.bits(out)))
    return layer.with_(epilogue=ep, inputs=tuple(inputs), outputs=(out,)), fused


def _node_macs(ix: _Index, node: onnx.NodeProto) -> int | None:
    """MACs of a Conv / ConvTranspose / Gemm / MatMul node from its shapes, None if unknown."""
    x, y = ix.shapes.get(node.input[0]), ix.shapes.get(node.output[0])
    w = ix.shapes.get(node.input[1])
    dq = ix.dq_of(node.input[1])
    if dq is not None:
        w = ix.shapes.get(dq.input[0], w)
    if not x or not y or not w:
        return None
    if node.op_type == "Conv":  # each output needs C/groups * kernel MACs
        return int(np.prod(y, dtype=np.int64) * np.prod(w[1:], dtype=np.int64))
    if node.op_type == "ConvTranspose":  # each input scatters into Cout/groups * kernel outputs
        return int(np.prod(x, dtype=np.int64) * np.prod(w[1:], dtype=np.int64))
    inner = x[0] if node.op_type == "Gemm" and _attrs(node).get("transA", 0) else x[-1]
    return int(np.prod(y, dtype=np.int64) * inner)


def _host_reason(node: onnx.NodeProto) -> str:
    if node.op_type == "Constant":
        return "constant: folded at compile time"
    if node.op_type in _QDQ:
        return "quantization boundary (float <-> integer) not absorbed into a layer"
    if node.op_type in VECTOR_KINDS:
        return f"{node.op_type} is not a MAC operator"
    return f"{node.op_type} is not a MAC operator and has no accelerator support"


def graph_from_onnx(lm: LoadedModel) -> OnnxGraph:
    """Classify every ONNX node: a Layer (MAC op with its fused chain), fused into one, or a HostOp."""
    ix = _Index(lm)
    g = lm.model.graph
    graph = Graph(
        name=lm.name,
        inputs=tuple(lm.input_shapes),
        outputs=tuple(o.name for o in g.output),
    )
    result = OnnxGraph(graph=graph)
    names = [_node_name(n, i) for i, n in enumerate(g.node)]
    result.node_order = names
    result.op_types = {nm: n.op_type for nm, n in zip(names, g.node)}
    entries: list[Layer | HostOp] = []
    reasons: dict[str, str] = {}
    for node, name in zip(g.node, names):
        if node.op_type not in LAYER_OPS:
            continue
        core = _core(ix, node, name)
        if isinstance(core, str):
            reasons[name] = core
            continue
        layer, fused = _epilogue(ix, node, core, set(result.fused))
        if core.quantized and not fused:
            reasons[name] = "QDQ layer without a QuantizeLinear after it (no requantization point)"
            continue
        for f in fused:
            result.fused[f] = name
        result.keys[core.key] = name
        entries.append(layer)
    # activation DequantizeLinear nodes are fused only if every consumer is a fused layer input
    layer_by_name = {layer.name: layer for layer in entries}
    for node, name in zip(g.node, names):
        if node.op_type == "DequantizeLinear" and name in result.fused:
            users = ix.consumers.get(node.output[0], [])
            if any(u.name not in layer_by_name for u in users):
                del result.fused[name]
    for node, name in zip(g.node, names):
        if name in layer_by_name:
            result.macs[name] = layer_by_name[name].macs
        elif node.op_type in LAYER_OPS and (n := _node_macs(ix, node)) is not None:
            result.macs[name] = n
    for node, name in zip(g.node, names):
        if name in layer_by_name:
            graph.add(layer_by_name[name])
        elif name not in result.fused:
            graph.add(
                HostOp(
                    name,
                    node.op_type,
                    inputs=tuple(i for i in node.input if i),
                    outputs=tuple(node.output),
                    reason=reasons.get(name, _host_reason(node)),
                    onnx_node=node.name,
                )
            )
    return result
