"""The core engine read as hardware (the project's HLS readers on its generated sources): each IP's
pipelined loops and their II from port pressure (codax.codegen.hls_ii), the resources every IP and the
block design instantiate (codax.codegen.hls_resources: the buffers once, as core_system.cpp declares
them; the IPs' multiply sites), and the idiom violations (codax.codegen.hls_idioms)."""

from __future__ import annotations

from codax.codegen import hls_reader as R
from codax.codegen.core import CoreShape, core_sources, core_tops
from codax.codegen.core_system import SYSTEM_UNIT
from codax.codegen.hls_idioms import check
from codax.codegen.hls_ii import loop_iis
from codax.codegen.hls_resources import SourceResources, read_resources

UNIT = "core.cpp"
IPS = {"fetch": "core_fetch", "load": "core_load", "gemm": "core_gemm", "store": "core_store"}


def _ips(shape: CoreShape) -> dict[str, str]:
    tops = core_tops(shape)
    return {m: t for m, t in IPS.items() if t in tops}


def ip_loops(shape: CoreShape) -> dict[str, list]:
    """{module: its IP's pipelined loops, each with the II its ports allow}."""
    files = core_sources(shape)
    src = R.parse(files, (UNIT,), (R.SYNTHESIS_VIEW,))
    unit = src.unit(UNIT, R.SYNTHESIS_VIEW)
    return {m: loop_iis(src, unit, [top]) for m, top in _ips(shape).items()}


def ip_loop_iis(shape: CoreShape) -> dict[str, int]:
    """{module: the largest II over its IP's pipelined loops}."""
    return {m: max((lp.ii for lp in loops), default=1) for m, loops in ip_loops(shape).items()}


def resources(shape: CoreShape, dsp_kind: str | None) -> SourceResources:
    """The whole engine: every IP's multipliers, and each buffer once, as the block design declares and
    binds it (the IPs' `bram` ports hold none)."""
    tops = list(_ips(shape).values())
    return read_resources(core_sources(shape), {"core": tops}, dsp_kind, unit=UNIT, system=SYSTEM_UNIT)


def violations(shape: CoreShape) -> list:
    return check(core_sources(shape), list(_ips(shape).values()), shape.beat_bits, unit=UNIT)
