"""The size in bytes of every tensor of a (static-shape) ONNX model, host-op intermediates included.

The runtime schedule plans memory for every tensor, including those only host ops read and write,
so it needs all their sizes. ONNX shape inference gives most of them (a scalar is a known shape with
no dims); where it cannot follow a node (data-dependent shapes it does not propagate), ONNX Runtime
runs the model once on zero inputs and the sizes are read off the actual tensors.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from codax.errors import ModelError


def _itemsize(elem_type: int) -> int:
    return int(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)


def _inferred(model: onnx.ModelProto) -> dict[str, int]:
    out: dict[str, int] = {}
    g = model.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape") or not t.elem_type:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim]
        if all(d > 0 for d in dims):  # [] is a scalar: one element
            out[vi.name] = int(np.prod(dims, dtype=np.int64)) * _itemsize(t.elem_type)
    consts = [(i.name, i) for i in g.initializer]
    consts += [
        (n.output[0], a.t)
        for n in g.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    ]
    for name, t in consts:
        out.setdefault(name, int(np.prod(t.dims, dtype=np.int64)) * _itemsize(t.data_type))
    return out


def _measured(model: onnx.ModelProto, names: list[str]) -> dict[str, int]:
    """Run the model on zeros with `names` as extra outputs; their sizes as computed."""
    import onnxruntime as ort

    from codax.frontend.onnx_io import graph_inputs

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in names:
        m.graph.output.append(onnx.ValueInfoProto(name=name))
    feeds = {}
    for inp in graph_inputs(m):
        t = inp.type.tensor_type
        shape = [d.dim_value for d in t.shape.dim]
        feeds[inp.name] = np.zeros(shape, helper.tensor_dtype_to_np_dtype(t.elem_type))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        values = sess.run(names, feeds)
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelError(
            f"the shapes of tensor(s) {names[:3]} cannot be inferred by ONNX shape inference, and ONNX "
            f"Runtime could not run the model to measure them ({type(e).__name__}: {str(e)[:200]}); give "
            "static input shapes (--shape NAME:DxD) or simplify the model (onnxsim) so every shape is static"
        ) from None
    return {n: int(np.asarray(v).nbytes) for n, v in zip(names, values)}


def tensor_bytes(model: onnx.ModelProto) -> dict[str, int]:
    """{tensor name: bytes} for every graph input, initializer, constant and node output."""
    out = _inferred(model)
    unknown = [o for n in model.graph.node for o in n.output if o and o not in out]
    if unknown:
        out.update(_measured(model, unknown))
    return out
