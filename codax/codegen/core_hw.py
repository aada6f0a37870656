"""The core engine read as hardware (the project's HLS readers on its generated sources): each IP's
pipelined loops and their II from port pressure (codax.codegen.hls_ii), the resources every array and
multiply site instantiates (codax.codegen.hls_resources), and the idiom violations
(codax.codegen.hls_idioms)."""

from __future__ import annotations

from codax.codegen import hls_reader as R
from codax.codegen.core import CoreShape, core_sources
from codax.codegen.hls_idioms import check
from codax.codegen.hls_ii import loop_iis
from codax.codegen.hls_resources import SourceResources, read_resources

UNIT = "core.cpp"
IPS = {"load": "core_load", "gemm": "core_gemm", "store": "core_store"}


def ip_loops(shape: CoreShape) -> dict[str, list]:
    """{module: its IP's pipelined loops, each with the II its ports allow}."""
    files = core_sources(shape)
    src = R.parse(files, (UNIT,), (R.SYNTHESIS_VIEW,))
    unit = src.unit(UNIT, R.SYNTHESIS_VIEW)
    return {m: loop_iis(src, unit, [top]) for m, top in IPS.items()}


def ip_loop_iis(shape: CoreShape) -> dict[str, int]:
    """{module: the largest II over its IP's pipelined loops}."""
    return {m: max((lp.ii for lp in loops), default=1) for m, loops in ip_loops(shape).items()}


def resources(shape: CoreShape, dsp_kind: str | None) -> SourceResources:
    return read_resources(core_sources(shape), {"core": list(IPS.values())}, dsp_kind, unit=UNIT)


def violations(shape: CoreShape) -> list:
    return check(core_sources(shape), list(IPS.values()), shape.beat_bits, unit=UNIT)
