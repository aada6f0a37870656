"""The codax pass pipeline: canonicalize -> partition -> map -> annotate, as one tvm Sequential."""

from __future__ import annotations

import tvm

import codax.passes.ffi_errors  # noqa: F401
from codax.ir import Accelerator
from codax.passes.annotate import Annotate
from codax.passes.canonicalize import canonicalize
from codax.passes.map_layers import MapLayers, MappingsSource
from codax.passes.partition import Partition


def pipeline(
    accel: Accelerator,
    mappings: MappingsSource = None,
    *,
    offload: bool = True,
    map_layers: bool = True,
    objective: str = "latency",
    analysis: bool = False,
) -> tvm.transform.Sequential:
    """All codax passes for `accel`. `offload=False` keeps the composites host-compilable (reference);
    `map_layers=False` stops after partitioning (analysis without a mapper). `analysis=True` (for
    reports and mappings, never for building) offloads float layers to an integer accelerator and
    costs them at its precision (codax.hw.precision)."""
    passes = [canonicalize(), Partition(accel, offload=offload, analysis=analysis)]
    if map_layers:
        passes += [MapLayers(accel, mappings, objective=objective, analysis=analysis), Annotate(accel)]
    return tvm.transform.Sequential(passes, name="codax.pipeline")
