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


def modules_ii(shape: CoreShape, modules) -> int:
    """The largest II over the pipelined loops of the IPs named in `modules` (fetch, load, gemm, store):
    the slowest loop a program of those IPs' instructions runs."""
    iis = ip_loop_iis(shape)
    return max(iis[m] for m in modules)


def fetch_loop_iis(shape: CoreShape) -> dict[str, int]:
    """{loop label: II} of the fetch IP's loops: BEATS_IN (the program's burst, a beat an iteration) and
    INSNS (an instruction into its module's queue an iteration)."""
    return {lp.label: lp.ii for lp in ip_loops(shape)["fetch"]}


def queue_depths(shape: CoreShape) -> dict[str, int]:
    """{module: the depth of its instruction queue}, from the STREAM pragmas of the block design
    (core_system.cpp): how far the fetch may run ahead of each module before it blocks."""
    import re

    src = core_sources(shape)[SYSTEM_UNIT]
    found = dict(re.findall(r"#pragma HLS STREAM variable=(\w+)_queue depth=(\d+)", src))
    missing = [m for m in ("load", "gemm", "store") if m not in found]
    if missing:
        raise ValueError(f"{SYSTEM_UNIT}: no STREAM depth for the instruction queue of {missing}")
    return {m: int(found[m]) for m in ("load", "gemm", "store")}
