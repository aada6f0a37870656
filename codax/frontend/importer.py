"""ONNX -> Relax IRModule through TVM's own frontend, carrying codax's ONNX view along.

TVM's importer drops ONNX node names, so the module's `main` gets three attributes that later passes
read: `codax.graph` (the extracted graph as JSON, see graph_json), `codax.layer_keys` (weight
fingerprint -> layer name, how a partitioned Relax function finds its ONNX layer) and
`codax.missing_weights` (shape-only models: the initializers imported as parameters).
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
import warnings

import onnx
import tvm
from tvm.relax.frontend.onnx import from_onnx

from codax.errors import ModelError, UnsupportedError
from codax.frontend.graph_json import to_json
from codax.frontend.onnx_graph import graph_from_onnx, param_name
from codax.frontend.onnx_io import LoadedModel, ModelSource, WeightsMissingError, load_onnx

ATTR_GRAPH = "codax.graph"
ATTR_KEYS = "codax.layer_keys"
ATTR_MISSING = "codax.missing_weights"
# set by codax.passes (named here so the frontend can read a partitioned module without importing passes)
ATTR_LAYER = "codax.layer"
ATTR_LAYER_JSON = "codax.layer_json"
ATTR_HOST_LAYERS = "codax.host_layers"


def _weights_as_inputs(lm: LoadedModel) -> onnx.ModelProto:
    """A copy where each missing initializer is a graph input, so TVM imports it as a parameter."""
    model = copy.deepcopy(lm.model)
    missing = set(lm.missing_weights)
    keep, moved = [], []
    for t in model.graph.initializer:
        (moved if t.name in missing else keep).append(t)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    rename = {t.name: param_name(t.name) for t in moved}
    for t in moved:
        model.graph.input.append(
            onnx.helper.make_tensor_value_info(rename[t.name], t.data_type, list(t.dims))
        )
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
    for t in moved:
        for inp in list(model.graph.input):
            if inp.name == t.name:
                model.graph.input.remove(inp)
    return model


def _unsupported(model: onnx.ModelProto, err: Exception) -> UnsupportedError:
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = _get_convert_map()
    bad = [
        (n.name or n.op_type, n.op_type)
        for n in model.graph.node
        if n.op_type not in known and n.op_type != "Constant"
    ]
    shown = ", ".join(f"{nm} ({op})" for nm, op in bad[:5]) or str(err)
    return UnsupportedError(
        f"TVM's ONNX frontend cannot import node(s) {shown}; no Relax module can be built. "
        "extract_graph() still analyses the model (they are reported as host ops); replace the op(s) "
        "in the exported model to compile it"
    )


def _failed_nodes(model: onnx.ModelProto, printed: str) -> str:
    """' at node(s) a, b (Op)' for the op type TVM's frontend reported failing on, else ''."""
    m = re.search(r"Error converting operator (\w+)", printed)
    if m is None:
        return ""
    op = m.group(1)
    names = [n.name or op for n in model.graph.node if n.op_type == op]
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    return f" at {'node' if len(names) == 1 else 'one of the nodes'} {shown} ({op})"


def import_onnx(
    source: ModelSource | LoadedModel, shapes: dict[str, list[int]] | None = None
) -> tvm.IRModule:
    """Import an ONNX model (path, bytes or ModelProto; float or QDQ) into a Relax IRModule.

    `shapes` pins dynamic input dims ({input name: [dims]}); without it a dynamic input raises a
    ModelError naming the input. Shape-only models import with their weights as parameters of
    `main` (listed in the `codax.missing_weights` attribute).
    """
    lm = source if isinstance(source, LoadedModel) else load_onnx(source, shapes)
    og = graph_from_onnx(lm)
    model = _weights_as_inputs(lm) if lm.shape_only else lm.model
    shape_dict = {k: list(v) for k, v in lm.input_shapes.items()}
    said = io.StringIO()  # TVM prints the op type it failed on; the ONNX node names come from it
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(said):
            warnings.simplefilter("ignore")
            mod = from_onnx(model, shape_dict=shape_dict, keep_params_in_input=False)
    except tvm.error.OpNotImplemented as e:
        raise _unsupported(model, e) from None
    except Exception as e:
        if lm.shape_only:
            raise WeightsMissingError(
                f"importing shape-only model {lm.name!r} into Relax needs a value that lives in its "
                f"missing external data ({type(e).__name__}: {str(e)[:200]}); put the data file next to "
                "the .onnx file, or use extract_graph() for shape analysis"
            ) from None
        raise ModelError(
            f"TVM could not import {lm.name!r}{_failed_nodes(model, said.getvalue())}: "
            f"{type(e).__name__}: {str(e)[:300]}; change the node's attributes or replace it in the "
            "exported model"
        ) from None
    main = mod["main"].with_attrs(
        {
            ATTR_GRAPH: to_json(og),
            ATTR_KEYS: dict(og.keys),
            ATTR_MISSING: [param_name(n) for n in lm.missing_weights],
        }
    )
    mod["main"] = main
    return mod
