"""Float models on integer accelerators: post-training quantization with ONNX Runtime.

`codax compile --calibrate SAMPLES` quantizes a float model with `onnxruntime.quantization`
(static, QDQ format, per-channel symmetric int8 weights, int8 activations calibrated on SAMPLES) and
compiles the QDQ model; the compile output keeps it as model.onnx, the model ONNX Runtime checks
against. Without SAMPLES a float model on an integer accelerator is an error that says how to give
them (`require_integer_model`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from codax.errors import ConfigError, ModelError
from codax.frontend.onnx_graph import graph_from_onnx
from codax.frontend.onnx_io import LoadedModel
from codax.ir import Accelerator

HOW = (
    "give calibration inputs: `codax compile MODEL.onnx --accel ACCEL --calibrate SAMPLES` (SAMPLES: a "
    ".npy holding a batch of typical inputs [n, ...], or a folder of such .npy files; .npz with one "
    "array per input name for several inputs) to quantize it with ONNX Runtime, or compile a QDQ model "
    "you quantized yourself, or cost it without building with --analyze-only"
)


def require_integer_model(lm: LoadedModel, accel: Accelerator) -> None:
    """Raise ModelError when `lm` is a float model (no integer layer) and `accel` has no float datapath."""
    if accel.float_ok:
        return
    layers = graph_from_onnx(lm).graph.layers
    if not layers or any(layer.precision.kind == "int" for layer in layers):
        return
    names = ", ".join(layer.name for layer in layers[:3]) + (" ..." if len(layers) > 3 else "")
    bits = "/".join(str(b) for b in accel.weight_bits)
    raise ModelError(
        f"model {lm.name!r} is a float model (fp32 layers {names}) and accelerator {accel.name} computes "
        f"in integers only (int{bits}, precision.float: false); {HOW}"
    )


def _arrays(path: Path) -> list[dict[str, np.ndarray] | np.ndarray]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz"))
        if not files:
            raise ConfigError(f"--calibrate {path}: the folder holds no .npy or .npz files")
        return [a for f in files for a in _arrays(f)]
    if not path.is_file():
        raise ConfigError(f"--calibrate {path}: no such file or folder")
    if path.suffix not in (".npy", ".npz"):
        raise ConfigError(f"--calibrate {path}: expected a .npy or .npz file, or a folder of them")
    try:
        data = np.load(path)
    except Exception as e:  # numpy raises several types for a corrupt file
        raise ConfigError(
            f"--calibrate {path}: not a readable numpy file ({type(e).__name__}: {e})"
        ) from None
    return [dict(data)] if path.suffix == ".npz" else [data]


def _split(name: str, arr: np.ndarray, want: tuple[int, ...], src: str) -> list[np.ndarray]:
    """An array of samples for input `name` as a list of arrays of the input's shape."""
    arr = np.asarray(arr)
    if tuple(arr.shape) == want:
        return [arr]
    if arr.ndim == len(want) + 1 and tuple(arr.shape[1:]) == want:
        return list(arr)
    if want and want[0] == 1 and arr.ndim == len(want) and tuple(arr.shape[1:]) == want[1:]:
        return [arr[i : i + 1] for i in range(arr.shape[0])]
    raise ConfigError(
        f"--calibrate {src}: samples for input {name!r} have shape {tuple(arr.shape)}, but the model takes "
        f"{list(want)}; give an array of shape {list(want)}, [n, {', '.join(map(str, want[1:]))}] or "
        f"[n, {', '.join(map(str, want))}]"
    )


def load_samples(source: str | Path, lm: LoadedModel) -> list[dict[str, np.ndarray]]:
    """Calibration feeds {input name: array of the input's shape} from a .npy / .npz / folder."""
    path = Path(source)
    names = list(lm.input_shapes)
    dtypes = {
        i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
        for i in lm.model.graph.input
        if i.name in lm.input_shapes
    }
    per_input: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for item in _arrays(path):
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(names))
            if unknown:
                raise ConfigError(
                    f"--calibrate {path}: arrays {unknown} name no model input (inputs: {names})"
                )
            given = item
        elif len(names) == 1:
            given = {names[0]: item}
        else:
            raise ConfigError(
                f"--calibrate {path}: the model has inputs {names}; give .npz files with one array per input"
            )
        for name, arr in given.items():
            per_input[name] += _split(name, arr, lm.input_shapes[name], str(path))
    counts = {n: len(v) for n, v in per_input.items()}
    if len(set(counts.values())) != 1 or not min(counts.values()):
        raise ConfigError(f"--calibrate {path}: every input needs the same number of samples, got {counts}")
    return [{n: per_input[n][i].astype(dtypes[n]) for n in names} for i in range(next(iter(counts.values())))]


def quantize(lm: LoadedModel, source: str | Path) -> onnx.ModelProto:
    """The QDQ model ONNX Runtime's static quantizer makes of float model `lm`, calibrated on `source`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    lm.require_weights("--calibrate (quantizing the weights)")
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in lm.model.graph.node):
        raise ModelError(f"model {lm.name!r} is already quantized (it has QDQ nodes); drop --calibrate")
    feeds = load_samples(source, lm)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as td:
        src, dst = Path(td) / "float.onnx", Path(td) / "qdq.onnx"
        onnx.save(lm.model, str(src))
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer's pre-processing advice is not for codax's users
        try:
            quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
            )
        except Exception as e:  # onnxruntime raises many types; the message names the node
            raise ModelError(
                f"ONNX Runtime could not quantize {lm.name!r}: {type(e).__name__}: {str(e)[:300]}"
            ) from None
        finally:
            root.setLevel(level)
        return onnx.load(str(dst))
