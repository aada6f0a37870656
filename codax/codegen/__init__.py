"""Code generation: HLS C++ kernels that execute each layer's mapping exactly, the runtime schedule,
the Vitis HLS project, C-simulation (g++ + ap_types) with transfer counters, and the numpy golden model.

`codax.codegen.byoc` (TVM BYOC registration) is separate and imports TVM; nothing here does.
"""

from codax.codegen.counts import CountCheck, compare_counts
from codax.codegen.csim import Counts, CsimError, LayerKernel, build_library, run_layer
from codax.codegen.golden import golden_layer
from codax.codegen.hls.emit import KernelSource, emit_kernel
from codax.codegen.hls.types import KernelTypes
from codax.codegen.names import Namer, c_ident
from codax.codegen.nest import NestPlan, plan
from codax.codegen.params import LayerParams, from_onnx, random_params
from codax.codegen.project import generate, write_project
from codax.codegen.runtime import run_graph
from codax.codegen.schedule import RuntimeSchedule, build_schedule

__all__ = [
    "CountCheck",
    "compare_counts",
    "Counts",
    "CsimError",
    "LayerKernel",
    "build_library",
    "run_layer",
    "golden_layer",
    "KernelSource",
    "emit_kernel",
    "KernelTypes",
    "Namer",
    "c_ident",
    "NestPlan",
    "plan",
    "LayerParams",
    "from_onnx",
    "random_params",
    "generate",
    "write_project",
    "run_graph",
    "RuntimeSchedule",
    "build_schedule",
]
