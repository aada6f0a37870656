"""Relax passes that turn an imported model into accelerator layers with mappings (see pipeline)."""

import codax.passes.ffi_errors  # noqa: F401  (codax errors survive the FFI)
from codax.passes.annotate import Annotate
from codax.passes.attrs import OffloadedLayer, offloaded_functions, offloaded_layers
from codax.passes.canonicalize import ClipToRelax, canonicalize
from codax.passes.map_layers import MapLayers
from codax.passes.partition import Partition
from codax.passes.pipeline import pipeline
from codax.passes.qdq import LowerQDQ
from codax.passes.report import CompileReport, build_report, write_report

__all__ = [
    "Annotate",
    "ClipToRelax",
    "CompileReport",
    "LowerQDQ",
    "MapLayers",
    "OffloadedLayer",
    "Partition",
    "build_report",
    "canonicalize",
    "offloaded_functions",
    "offloaded_layers",
    "pipeline",
    "write_report",
]
