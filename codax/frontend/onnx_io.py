"""Loading ONNX files: clear errors for corrupt files, missing weights and dynamic input shapes.

Models whose weights live in external data files that are absent (the zigzag-dse workloads ship
like that) load as *shape-only* models: every analysis that needs only shapes works, and code that
needs the weights asks for them with a `WeightsMissingError`.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import external_data_helper

from codax.errors import ModelError
from codax.frontend.qonnx_lower import QuantTensor, is_qonnx, lower_qonnx
from codax.frontend.widths import read_widths

ModelSource = str | Path | bytes | onnx.ModelProto


class WeightsMissingError(ModelError):
    """A shape-only model (external weight files absent) was asked for its weights."""


@dataclass
class LoadedModel:
    """An ONNX model with fixed input shapes, shape-inferred, plus what is known to be missing."""

    model: onnx.ModelProto
    name: str
    missing_weights: tuple[str, ...] = ()  # initializers whose external data file is absent
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    widths: dict[str, int] = field(default_factory=dict)  # integer tensor -> bits (frontend.widths)
    # the model as given (its input shapes fixed), before the width rewrite: what ONNX Runtime runs as
    # the reference and what a compiled output keeps as model.onnx
    given: onnx.ModelProto | None = None
    # a QONNX model: the QONNX node behind each quantized tensor (frontend.qonnx_lower); `given` is then
    # the equal QDQ model, which ONNX Runtime runs
    qonnx: dict[str, QuantTensor] = field(default_factory=dict)

    @property
    def shape_only(self) -> bool:
        return bool(self.missing_weights)

    def require_weights(self, what: str) -> None:
        """Raise a clear error when `what` needs weights this model does not carry."""
        if self.missing_weights:
            shown = ", ".join(self.missing_weights[:3]) + (" ..." if len(self.missing_weights) > 3 else "")
            raise WeightsMissingError(
                f"{what} needs the weights of model {self.name!r}, but {len(self.missing_weights)} "
                f"initializer(s) ({shown}) refer to external data files that are missing; it was loaded "
                "shape-only. Put the external data file(s) next to the .onnx file to compile or run it."
            )


def _read(source: ModelSource) -> tuple[onnx.ModelProto, str, Path | None]:
    if isinstance(source, onnx.ModelProto):
        return source, source.graph.name or "model", None
    if isinstance(source, bytes):
        try:
            return onnx.load_from_string(source), "model", None
        except Exception as e:  # protobuf raises its own DecodeError type
            raise ModelError(f"the given bytes are not an ONNX model ({type(e).__name__}: {e})") from None
    path = Path(source)
    if not path.is_file():
        raise ModelError(f"ONNX file {path} does not exist; check the path")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(
            f"{path} is not a readable ONNX model ({type(e).__name__}: {e}); the file is corrupt or "
            "truncated — re-export it"
        ) from None
    if not model.graph.node:
        raise ModelError(f"{path} parses but holds an empty graph (no nodes); it is not a usable ONNX model")
    return model, path.stem, path.parent


def _load_external(model: onnx.ModelProto, base: Path | None) -> tuple[str, ...]:
    """Load external weights that exist; return the names of those whose files are missing."""
    missing = []
    for t in model.graph.initializer:
        if not external_data_helper.uses_external_data(t):
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if base is None or not (base / loc).is_file():
            missing.append(t.name)
    if not missing and base is not None:
        external_data_helper.load_external_data_for_model(model, str(base))
    return tuple(missing)


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are real inputs (not initializers listed as inputs, as old exporters do)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _fix_shapes(model: onnx.ModelProto, shapes: dict[str, list[int]] | None) -> dict[str, tuple[int, ...]]:
    """Pin every input to a static shape, from the model or from `shapes`; name what is missing."""
    shapes = dict(shapes or {})
    names = [i.name for i in graph_inputs(model)]
    for k in shapes:
        if k not in names:
            raise ModelError(f"shapes names input {k!r}, but the model's inputs are {names}")
    out: dict[str, tuple[int, ...]] = {}
    for inp in graph_inputs(model):
        tt = inp.type.tensor_type
        dims = tt.shape.dim
        if inp.name in shapes:
            given = [int(d) for d in shapes[inp.name]]
            if tt.HasField("shape") and len(dims) and len(dims) != len(given):
                raise ModelError(
                    f"input {inp.name!r} has rank {len(dims)} but shapes gives {given} (rank {len(given)})"
                )
            tt.shape.ClearField("dim")
            for v in given:
                tt.shape.dim.add().dim_value = v
            out[inp.name] = tuple(given)
            continue

        def known(d) -> bool:
            return d.HasField("dim_value") and d.dim_value > 0

        if tt.HasField("shape") and len(dims) >= 2 and not known(dims[0]) and all(known(d) for d in dims[1:]):
            # the accelerator runs one sample at a time: a dynamic leading batch dim is taken as 1
            rest = "x".join(str(d.dim_value) for d in dims[1:])
            print(
                f"codax: input {inp.name!r} has a dynamic batch dimension "
                f"{dims[0].dim_param or '?'!r}; compiling for batch 1 (--shape {inp.name}:Nx{rest} sets it)",
                file=sys.stderr,
            )
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
        static = tt.HasField("shape") and all(known(d) for d in dims)
        if not static:
            shown = (
                [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
                if tt.HasField("shape")
                else "unknown rank"
            )
            example = "x".join(str(d.dim_value) if known(d) else "1" for d in dims) or "1x3x224x224"
            raise ModelError(
                f"input {inp.name!r} has a dynamic shape {shown}; give static input shapes: "
                f"--shape {inp.name}:{example} (Python: shapes={{{inp.name!r}: [...]}})"
            )
        out[inp.name] = tuple(d.dim_value for d in dims)
    return out


def load_onnx(source: ModelSource, shapes: dict[str, list[int]] | None = None) -> LoadedModel:
    """Read, validate and shape-infer an ONNX model. Raises ModelError naming the problem and fix."""
    model, name, base = _read(source)
    model = copy.deepcopy(model) if isinstance(source, onnx.ModelProto) else model
    missing = (
        _load_external(model, base)
        if base is not None
        else tuple(t.name for t in model.graph.initializer if external_data_helper.uses_external_data(t))
    )
    input_shapes = _fix_shapes(model, shapes)
    declared: dict[str, QuantTensor] = {}
    if is_qonnx(model):  # detected from the nodes' domain: QONNX models need no flag
        model, declared = lower_qonnx(model, name)
    given = copy.deepcopy(model)
    model, widths = read_widths(model)  # 4-bit types as 8-bit ones, integer clips folded
    try:
        # shape inference reads only dims, so it works on shape-only models as well
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:
        raise ModelError(f"ONNX shape inference failed on {name!r}: {e}") from None
    return LoadedModel(
        model=model,
        name=name,
        missing_weights=missing,
        input_shapes=input_shapes,
        widths=widths,
        given=given,
        qonnx=declared,
    )
