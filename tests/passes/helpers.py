"""Shared test helpers: accelerators, exported models, ORT reference runs, Relax runs."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tvm
from tvm import relax

from codax.hw.library import load_accelerator
from codax.ir import Accelerator

ZIGZAG = Path(__file__).resolve().parents[2] / ".venv/lib/python3.11/site-packages/zigzag/inputs/workload"


@cache
def int8_accel() -> Accelerator:
    """zc706-int8: int8/6/4 only, no float datapath."""
    return load_accelerator("zc706-int8")


@cache
def float_accel() -> Accelerator:
    """zcu102-mixed: int8 and fp32 MACs in every PE, a per-PE register that holds an fp32 weight."""
    return load_accelerator("zcu102-mixed")


def ort_session(path) -> ort.InferenceSession:
    """ONNX Runtime with every graph optimization off: the reference (QDQ) semantics."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_run(path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort_session(path).run(None, feeds)


def relax_vm(mod: tvm.IRModule):
    """Build with tvm.compile on LLVM; returns a function running main on the Relax VM."""
    ex = tvm.compile(mod, target="llvm")
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return lambda *args: vm["main"](*[tvm.runtime.tensor(a) for a in args]).numpy()


def relax_run(mod: tvm.IRModule, *args: np.ndarray) -> np.ndarray:
    return relax_vm(mod)(*args)
