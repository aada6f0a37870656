"""PyTorch -> ONNX (opset 17) with BatchNorm folded into the preceding convolutions.

Uses the TorchScript exporter (`dynamo=False`): it is fast, needs no extra packages, gives stable node
names from the module hierarchy (e.g. /layer1/layer1.0/conv1/Conv) and, in eval mode with constant
folding, folds every Conv -> BatchNorm pair into the Conv's weight and bias.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import onnx
import torch

from codax.errors import ModelError

OPSET = 17


def export_torch(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    path: str | Path,
    *,
    input_names: tuple[str, ...] = ("input",),
    output_names: tuple[str, ...] = ("output",),
    opset: int = OPSET,
) -> Path:
    """Export `model` (a copy, in eval mode) to `path`; returns the path. Raises ModelError on failure."""
    if opset < 17:
        raise ModelError(f"opset {opset} is too old; codax needs ONNX opset >= 17")
    m = copy.deepcopy(model).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                m,
                (example_input,),
                str(path),
                opset_version=opset,
                dynamo=False,
                do_constant_folding=True,
                training=torch.onnx.TrainingMode.EVAL,
                input_names=list(input_names),
                output_names=list(output_names),
            )
    except Exception as e:
        raise ModelError(
            f"exporting {type(model).__name__} to ONNX failed: {type(e).__name__}: {e}"
        ) from None
    left = [
        n.name
        for n in onnx.load(str(path), load_external_data=False).graph.node
        if n.op_type == "BatchNormalization"
    ]
    if left:
        warnings.warn(
            f"BatchNormalization not folded (no preceding Conv?): {left[:3]}; it runs on the host",
            stacklevel=2,
        )
    return path
