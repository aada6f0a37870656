"""One rule for checking a compiled network's outputs, used by `codax run --check` and `codax demo`.

Quantized outputs (integer tensors, or floats a DequantizeLinear produced from one):
- against the golden integer model (`codax.codegen.golden_net`): bit-exact, any difference fails;
- against ONNX Runtime (reference semantics, no fusions): in units of the output's quantization step.
  A float reference rounds some ties the other way from the integer pipeline, and which inputs hit a
  tie depends on the weights, so at most one step passes; the number of elements one step off and the
  largest difference in steps are reported.
Float outputs: within rtol 1e-4 (atol 1e-5) of either reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import numpy_helper

FLOAT_RTOL, FLOAT_ATOL = 1e-4, 1e-5


@dataclass
class OutputCheck:
    """How one output compares with one reference."""

    reference: str  # golden | onnxruntime
    ok: bool
    step: float | None  # the output's quantization step; None for float outputs
    max_steps: float | None = None  # largest |difference| in steps (quantized outputs)
    off_by_one_step: int = 0  # elements exactly one step away (quantized outputs vs onnxruntime)
    mismatching: int = 0  # elements that differ at all (golden) or by more than the rule allows
    max_abs_err: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        if self.step is None:
            verdict = "ok" if self.ok else "MISMATCH"
            return f"vs {self.reference}: max_abs_err={self.max_abs_err:.3g} ({verdict})"
        rule = "bit-exact" if self.reference == "golden" else "<= 1 step"
        return (
            f"vs {self.reference} ({rule}, step {self.step:.6g}): max {self.max_steps:g} steps, "
            f"{self.off_by_one_step} element(s) one step off, {self.mismatching} failing "
            f"({'ok' if self.ok else 'MISMATCH'})"
        )


def output_steps(model: onnx.ModelProto) -> list[float | None]:
    """Per graph output: its quantization step (1 for integer outputs, the scale for a float output
    a DequantizeLinear with a scalar scale produced), or None for a float output."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    steps: list[float | None] = []
    for out in model.graph.output:
        if out.type.tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            steps.append(1.0)
            continue
        n = producer.get(out.name)
        scale = consts.get(n.input[1]) if n is not None and n.op_type == "DequantizeLinear" else None
        steps.append(float(scale.reshape(())) if scale is not None and scale.size == 1 else None)
    return steps


def check_output(got: np.ndarray, ref: np.ndarray, step: float | None, reference: str) -> OutputCheck:
    g, r = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if g.shape != r.shape:
        return OutputCheck(reference, False, step, mismatching=int(max(g.size, r.size)), max_abs_err=np.inf)
    err = np.abs(g - r)
    max_err = float(err.max()) if err.size else 0.0
    if step is None:
        bad = ~np.isclose(g, r, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
        return OutputCheck(reference, not bad.any(), None, mismatching=int(bad.sum()), max_abs_err=max_err)
    steps = np.rint(err / step)
    if reference == "golden":
        bad = err > 0
    else:
        bad = steps > 1
    return OutputCheck(
        reference,
        not bad.any(),
        step,
        max_steps=float(steps.max()) if steps.size else 0.0,
        off_by_one_step=int((steps == 1).sum()),
        mismatching=int(bad.sum()),
        max_abs_err=max_err,
    )
