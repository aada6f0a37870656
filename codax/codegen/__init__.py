"""Code generation: the accelerator's HLS engine (one per engine of accel.yaml, sized from it and the
same for every network), the network as a program of layer descriptors, the runtime schedule, the
Vitis HLS project, C-simulation of the engine (g++ + ap_types) with transfer counters, and the numpy
golden model.

`codax.codegen.byoc` (TVM BYOC registration) is separate and imports TVM; nothing here does.
"""

from codax.codegen.counts import CountCheck, compare_counts
from codax.codegen.csim import Counts, CsimError, EngineSim, LayerKernel, compile_cached, run_layer
from codax.codegen.engine import EngineSource, engine_sources
from codax.codegen.golden import golden_layer
from codax.codegen.names import Namer, c_ident
from codax.codegen.nest import NestPlan, plan
from codax.codegen.params import LayerParams, from_onnx, random_params
from codax.codegen.program import Widths, descriptor
from codax.codegen.project import generate, write_project
from codax.codegen.runtime import run_graph
from codax.codegen.schedule import RuntimeSchedule, build_schedule

__all__ = [
    "CountCheck",
    "compare_counts",
    "Counts",
    "CsimError",
    "EngineSim",
    "LayerKernel",
    "compile_cached",
    "run_layer",
    "EngineSource",
    "engine_sources",
    "golden_layer",
    "Namer",
    "c_ident",
    "NestPlan",
    "plan",
    "LayerParams",
    "from_onnx",
    "random_params",
    "Widths",
    "descriptor",
    "generate",
    "write_project",
    "run_graph",
    "RuntimeSchedule",
    "build_schedule",
]
