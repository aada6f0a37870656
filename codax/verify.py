"""One rule for checking a quantized network, used by `codax run --check`, `codax demo` and the
search's export.

Against the golden integer model (`codax.codegen.golden_net`): every output bit-exact. The golden
model and the engine compute the same integer pipeline, so any difference is a defect.

Against an outside float reference (ONNX Runtime; PyTorch's QuantizedNet for the export): **per
layer**. The network is cut at its quantization points (the integer tensors its DequantizeLinear
nodes read), at the outputs of offloaded layers and at its graph outputs; each piece between two
cuts runs in ONNX Runtime on the *same* input tensors the integer pipeline computed, and its output
may differ from the pipeline's by at most one step. One step is what a float reference can honestly
promise for one rounding: the reference rounds `x / scale` in float arithmetic, and on a tie (or a
value within the float path's error of one) it may go either way, depending on the CPU's
vectorization, FMA and summation order. End to end no such bound exists: a tie decided the other
way in layer i moves layer i+1's input by one step, which layer i+1 can turn into two or more steps
at its output. So the end-to-end comparison is reported (the step histogram, the largest difference,
top-1 agreement), not asserted.

Float tensors (a float model's layers, float outputs): within rtol 1e-4 of the reference, with an
absolute allowance of 1e-5 times the tensor's largest magnitude (at least 1e-5).

A leaf module (it imports nothing of codax but its errors), so the search's export uses it too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from codax.errors import ModelError

FLOAT_RTOL, FLOAT_ATOL = 1e-4, 1e-5
STEP_RULE, EXACT_RULE, FLOAT_RULE, REPORTED = "<= 1 step", "bit-exact", "float rtol 1e-4", "reported"


@dataclass
class Check:
    """A tensor compared with a reference under one rule. `ok` is None for a comparison that is
    reported, not asserted (end to end against a float reference)."""

    what: str  # "output <i>", or the layer / nodes a per-layer piece runs
    reference: str  # golden | onnxruntime | pytorch
    rule: str
    ok: bool | None
    step: float | None  # 1 for integer tensors, the scale of a dequantized output, None for floats
    max_steps: float | None = None
    steps_histogram: dict[str, int] = field(default_factory=dict)  # |difference| in steps -> elements
    mismatching: int = 0  # elements the rule rejects (for a reported check: more than one step off)
    max_abs_err: float = 0.0
    argmax_agreement: float | None = None  # share of rows whose argmax over the last axis agrees

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def off_by_one_step(self) -> int:
        return self.steps_histogram.get("1", 0)

    def line(self) -> str:
        verdict = "reported" if self.ok is None else ("ok" if self.ok else "MISMATCH")
        head = f"{self.what} vs {self.reference} ({self.rule}"
        if self.max_abs_err == np.inf:
            return f"{head}): shapes differ ({verdict})"
        if self.step is None:
            return f"{head}): max_abs_err={self.max_abs_err:.3g} ({verdict})"
        hist = ", ".join(f"{k}: {v}" for k, v in self.steps_histogram.items())
        top1 = "" if self.argmax_agreement is None else f", top-1 agreement {self.argmax_agreement:.3f}"
        return (
            f"{head}, step {self.step:.6g}): max {self.max_steps:g} steps, elements by steps off "
            f"{{{hist}}}{top1} ({verdict})"
        )


def compare(got, ref, step: float | None, reference: str, rule: str, what: str) -> Check:
    """`got` against `ref` under `rule` (EXACT_RULE, STEP_RULE, FLOAT_RULE or REPORTED)."""
    g, r = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if g.shape != r.shape:
        n = int(max(g.size, r.size))
        return Check(what, reference, rule, False if rule != REPORTED else None, step, None, {}, n, np.inf)
    err = np.abs(g - r)
    max_err = float(err.max()) if err.size else 0.0
    agree = None
    if g.ndim >= 2 and g.shape[-1] > 1:
        agree = float((g.argmax(-1) == r.argmax(-1)).mean())
    if step is None:
        atol = FLOAT_ATOL * max(1.0, float(np.abs(r).max()) if r.size else 0.0)
        bad = ~np.isclose(g, r, rtol=FLOAT_RTOL, atol=atol)
        ok = None if rule == REPORTED else not bad.any()
        return Check(what, reference, rule, ok, None, None, {}, int(bad.sum()), max_err, agree)
    steps = np.rint(err / step).astype(np.int64)
    values, counts = np.unique(steps, return_counts=True)
    hist = {str(int(v)): int(c) for v, c in zip(values, counts)}
    bad = err > 0 if rule == EXACT_RULE else steps > 1
    ok = None if rule == REPORTED else not bad.any()
    max_steps = float(steps.max()) if steps.size else 0.0
    return Check(what, reference, rule, ok, step, max_steps, hist, int(bad.sum()), max_err, agree)


@dataclass
class NetworkCheck:
    """A network's outputs checked against the golden model (bit-exact), its layers against a float
    reference (one step each), and its outputs against that reference end to end (reported)."""

    golden: list[Check]
    layers: list[Check]
    end_to_end: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.golden + self.layers)

    @property
    def failing_layers(self) -> list[str]:
        return [c.what for c in self.layers if not c.ok]

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "golden": [c.to_dict() for c in self.golden],
            "layers": [c.to_dict() for c in self.layers],
            "end_to_end": [c.to_dict() for c in self.end_to_end],
        }

    def lines(self) -> list[str]:
        worst = max((c.max_steps or 0.0 for c in self.layers), default=0.0)
        out = [c.line() for c in self.golden]
        out.append(
            f"{len(self.layers)} layer piece(s) vs {self.layers[0].reference if self.layers else 'reference'}"
            f" ({STEP_RULE} each, on the pipeline's own inputs): max {worst:g} steps, "
            f"{len(self.failing_layers)} failing"
            + (f": {', '.join(self.failing_layers)}" if self.failing_layers else "")
        )
        out += [c.line() for c in self.layers if not c.ok]
        out += [c.line() for c in self.end_to_end]
        return out


def output_steps(model: onnx.ModelProto) -> list[float | None]:
    """Per graph output: its quantization step (1 for integer outputs, the scale for a float output
    a DequantizeLinear with a scalar scale produced), or None for a float output."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consts = _constants(model)
    steps: list[float | None] = []
    for out in model.graph.output:
        if out.type.tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            steps.append(1.0)
            continue
        n = producer.get(out.name)
        scale = consts.get(n.input[1]) if n is not None and n.op_type == "DequantizeLinear" else None
        steps.append(float(scale.reshape(())) if scale is not None and scale.size == 1 else None)
    return steps


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return consts


def quantization_points(model: onnx.ModelProto) -> list[str]:
    """The integer activation tensors of a QDQ model: those its DequantizeLinear nodes read that are
    not constants (weights, biases)."""
    consts = _constants(model)
    seen: dict[str, None] = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] not in consts:
            seen[n.input[0]] = None
    return list(seen)


class LayerReference:
    """ONNX Runtime on the pieces of `model` between its cuts (the quantization points, the tensors
    in `cuts` and the graph outputs), each fed the tensors the pipeline under test computed.

    `names` names a piece by the tensor it ends in (an offloaded layer's output -> the layer);
    others are named by their compute nodes."""

    def __init__(self, model: onnx.ModelProto, cuts=(), names: dict[str, str] | None = None) -> None:
        self.model = model
        self.names = dict(names or {})
        graph_outputs = [o.name for o in model.graph.output]
        self.cuts = list(dict.fromkeys([*quantization_points(model), *cuts, *graph_outputs]))
        self.graph_inputs = {i.name for i in model.graph.input}
        self.consts = {t.name for t in model.graph.initializer}
        self.producer = {o: n for n in model.graph.node for o in n.output if o}
        self.order = {id(n): i for i, n in enumerate(model.graph.node)}
        self.steps = dict(zip(graph_outputs, output_steps(model)))
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # noqa: BLE001 - types are then taken from the fed values
            inferred = model
        infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
        self.types = {vi.name: vi.type.tensor_type.elem_type for vi in infos}
        # shapes as inferred, a symbolic dim (the batch) as 0
        self.shapes = {
            vi.name: tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
            for vi in infos
            if vi.type.tensor_type.HasField("shape")
        }
        self._sessions: dict[tuple, object] = {}

    def check(self, values: dict[str, np.ndarray], reference: str = "onnxruntime") -> list[Check]:
        """One Check per cut the pipeline computed (in `values`) and a node produces."""
        out = []
        for t in self.cuts:
            if t not in values or t not in self.producer:
                continue
            nodes, inputs = self._piece(t, values)
            feed = {i: np.asarray(values[i]).astype(_np_type(self.types.get(i), values[i])) for i in inputs}
            try:
                (ref,) = self._session(t, nodes, inputs, values).run(None, feed)
            except Exception as e:  # noqa: BLE001 - ONNX Runtime's own error, named by the piece
                raise ModelError(
                    f"the reference cannot run the nodes {[n.name or n.op_type for n in nodes]} that "
                    f"compute {t!r} on their own: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                ) from None
            step = self._step(t, values[t])
            rule = STEP_RULE if step is not None else FLOAT_RULE
            out.append(compare(values[t], ref, step, reference, rule, self._name(t, nodes)))
        return out

    def _step(self, t: str, value: np.ndarray) -> float | None:
        if np.issubdtype(np.asarray(value).dtype, np.integer):
            return 1.0
        return self.steps.get(t)

    def _name(self, t: str, nodes: list) -> str:
        if t in self.names:
            return self.names[t]
        compute = [n.name or n.op_type for n in nodes if not self._is_quantization(n)]
        return "+".join(compute) or "+".join(n.name or n.op_type for n in nodes)

    def _is_quantization(self, n: onnx.NodeProto) -> bool:
        """Q, DQ, and a Clip of an integer tensor (a narrower width's range)."""
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            return True
        integer = (
            onnx.TensorProto.INT8,
            onnx.TensorProto.UINT8,
            onnx.TensorProto.INT16,
            onnx.TensorProto.UINT16,
        )
        return n.op_type == "Clip" and self.types.get(n.input[0]) in integer

    def _piece(self, t: str, values: dict) -> tuple[list, list[str]]:
        """The nodes between `t` and the nearest cuts (or graph inputs) above it the pipeline
        computed, in graph order, and those input tensors."""
        cuts = set(self.cuts)
        nodes: dict[int, onnx.NodeProto] = {}
        inputs: dict[str, None] = {}
        stack = [self.producer[t]]
        while stack:
            n = stack.pop()
            if id(n) in nodes:
                continue
            nodes[id(n)] = n
            for i in n.input:
                if not i or i in self.consts:
                    continue
                if i in values and (i in cuts or i in self.graph_inputs):
                    inputs[i] = None
                elif i in self.producer:
                    stack.append(self.producer[i])
                elif i in values:
                    inputs[i] = None
                else:
                    raise ModelError(
                        f"tensor {i!r} (read by node {n.name or n.op_type}) has no value to feed"
                    )
        return sorted(nodes.values(), key=lambda n: self.order[id(n)]), list(inputs)

    def _session(self, t: str, nodes: list, inputs: list[str], values: dict):
        key = (t, tuple(inputs))
        if key not in self._sessions:
            import onnxruntime as ort

            used = {i for n in nodes for i in n.input}
            inits = [x for x in self.model.graph.initializer if x.name in used]

            def info(name: str):
                v = np.asarray(values[name])
                return helper.make_tensor_value_info(name, _onnx_type(self.types.get(name), v), list(v.shape))

            g = helper.make_graph(nodes, "piece", [info(i) for i in inputs], [info(t)], inits)
            m = helper.make_model(
                g, opset_imports=list(self.model.opset_import), ir_version=self.model.ir_version
            )
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            opts.intra_op_num_threads = 1
            self._sessions[key] = ort.InferenceSession(
                m.SerializeToString(), opts, providers=["CPUExecutionProvider"]
            )
        return self._sessions[key]


def _onnx_type(declared: int | None, value: np.ndarray) -> int:
    if declared:
        return declared
    return helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)


def _np_type(declared: int | None, value: np.ndarray):
    return helper.tensor_dtype_to_np_dtype(_onnx_type(declared, value))
