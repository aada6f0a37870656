"""A checker of hardware idioms in HLS sources: what keeps each synthesis top synthesizable at the II
and size the cost model charges (VTA's idioms, docs/vitis.md "What the code-derived reading shows").

Rules, each checked over what a top reaches (codax.codegen.hls_reader: calls into the sources
followed, library headers leaves):
- `m_axi-port-width`: every m_axi port is `ap_uint<8 x dram.bandwidth>` (a pointer to it), so one
  access is one beat of the port (UG1399 "AXI4 Master Interface"; VTA's load and store modules);
- `pointer-in-static-state`: no variable of static storage a top reaches (namespace scope or `static`)
  holds a pointer or reference: only scalars and arrays of scalars survive between calls (UG1399
  "Pointer Limitations");
- `run-time-trip-in-region`: no loop inside a pipelined or unrolled region (a PIPELINE pragma unrolls
  every loop below it) has a trip count that is not a compile-time constant, and no loop fully unrolled
  by an UNROLL pragma has one: the pipelined loop's own trip count is the only run-time one;
- `floating-point-outside-mac`: no floating-point value (expression, declaration, static state)
  outside the float MAC engine: the unrolled region of the MAC functions (`mac_functions`, and what
  they call) of an accelerator that declares float layers;
- `c-simulation-code-in-ip`: nothing a top reaches in the C-simulation view allocates (malloc, new),
  does I/O (printf, files, iostream), ends the process, uses a C++ container, or is code the
  synthesis view does not have (the scheduler, the accounting clocks, the counters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from codax.codegen import hls_reader as R
from codax.codegen import hls_types as HT

RULES = (
    "m_axi-port-width",
    "pointer-in-static-state",
    "run-time-trip-in-region",
    "floating-point-outside-mac",
    "c-simulation-code-in-ip",
)
FORBIDDEN_CALLS = frozenset(
    "printf fprintf sprintf snprintf vprintf vfprintf puts fputs putchar fputc perror malloc calloc realloc "
    "free abort exit _Exit quick_exit fopen fclose fread fwrite fflush fseek ftell fgets getenv system rand "
    "srand".split()
)
FORBIDDEN_STD_TYPES = frozenset(
    "deque vector list map unordered_map set string basic_string basic_ostream basic_istream "
    "basic_iostream basic_ofstream basic_ifstream basic_fstream".split()
)


@dataclass(frozen=True)
class Violation:
    rule: str
    top: str
    function: str
    file: str
    line: int
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def check(
    files: Mapping[str, str],
    tops: Sequence[str],
    m_axi_bits: int,
    float_mac: bool = False,
    unit: str = "engine.cpp",
    mac_functions: Sequence[str] = (),
) -> list[Violation]:
    """The idiom violations of the sources {relative path: text} whose synthesis tops are `tops`, with
    m_axi ports of `m_axi_bits` bits and a float MAC engine when `float_mac`: the unrolled code of
    `mac_functions` (module docstring). Raises HlsReadError when the sources cannot be read."""
    if m_axi_bits <= 0 or m_axi_bits % 8:
        raise ValueError(f"m_axi port width {m_axi_bits} bits is not a whole number of bytes")
    sources = R.parse(dict(files), (unit,))
    synth = sources.unit(unit, R.SYNTHESIS_VIEW)
    sim = sources.unit(unit, R.SIMULATION_VIEW)
    found: dict[tuple, Violation] = {}
    macs = frozenset(mac_functions) if float_mac else frozenset()

    def add(rule, ev_or_cursor, ctx_function, top, message):
        loc = ev_or_cursor.location
        file = loc.file.name.rsplit("/", 1)[-1] if loc.file else "?"
        # one violation per rule and line; ports and static variables share lines, so they are named
        what = message if rule in ("m_axi-port-width", "pointer-in-static-state") else ""
        key = (rule, top, ctx_function, file, loc.line, what)
        found.setdefault(key, Violation(rule, top, ctx_function, file, loc.line, message))

    for top in tops:
        walker = R.Walker(sources, synth, top)
        _ports(walker, top, m_axi_bits, add)
        reached: set[str] = {top}  # the functions and constructors the synthesis view reaches
        for ev in walker.events():
            reached.update(ev.ctx.path)
            if ev.kind == "call":
                reached.add(ev.callee.spelling)
            _trip(ev, top, add)
            _static_state(sources, ev, top, add, macs)
            _float(ev, top, add, macs)
            _csim_call(sources, ev, top, add)
        for ev in R.Walker(sources, sim, top).events():
            _csim_call(sources, ev, top, add)
            if ev.kind == "call" and sources.is_generated(ev.callee) and ev.ctx.function in reached:
                if ev.callee.spelling not in reached:
                    add("c-simulation-code-in-ip", ev.cursor, ev.ctx.function, top,
                        f"calls {ev.callee.spelling}, code the synthesis view does not have")  # fmt: skip
    return sorted(found.values(), key=lambda v: (v.rule, v.top, v.file, v.line))


def counts(violations: Sequence[Violation]) -> dict[str, int]:
    """Violations per rule (every rule listed)."""
    return {r: sum(v.rule == r for v in violations) for r in RULES}


def _ports(walker: R.Walker, top: str, bits: int, add) -> None:
    params = {c.spelling: c for c in walker.fn.get_children() if c.kind == R.K.PARM_DECL}
    for p in walker.function_pragmas(walker.fn):
        if R.interface_mode(p) != "m_axi":
            continue
        param = params.get(p.get("port", ""))
        if param is None:
            continue
        t = param.type.get_canonical()
        pointee = t.get_pointee() if t.kind == HT.T.POINTER else t
        d = pointee.get_canonical().get_declaration()
        ok = d.spelling == "ap_uint" and HT.ap_width(pointee) == bits
        if not ok:
            add("m_axi-port-width", param, top, top,
                f"m_axi port {param.spelling} is `{param.type.spelling}`, not ap_uint<{bits}>")  # fmt: skip


def _trip(ev: R.Event, top: str, add) -> None:
    if ev.kind != "loop":
        return
    loop, ctx = ev.loop, ev.ctx
    if loop.unroll == 0:
        add("run-time-trip-in-region", ev.cursor, ctx.function, top,
            "an UNROLL pragma on a loop whose trip count is not a compile-time constant")  # fmt: skip
    elif loop.trip is None and (ctx.pipeline is not None or ctx.unrolled):
        where = (
            f"pipelined loop at {ctx.pipeline[0]}:{ctx.pipeline[1]}" if ctx.pipeline else "an unrolled loop"
        )
        add("run-time-trip-in-region", ev.cursor, ctx.function, top,
            f"a loop with a run-time trip count inside the {where}")  # fmt: skip


def _in_mac(ev: R.Event, macs: frozenset) -> bool:
    """Inside the float MAC engine: unrolled code of a MAC function (or of what it calls)."""
    return ev.ctx.unrolled and any(f in macs for f in ev.ctx.path)


def _static_state(sources: R.Sources, ev: R.Event, top: str, add, macs: frozenset) -> None:
    if ev.kind == "decl" and R.has_static_storage(ev.cursor):
        var = ev.cursor
    elif ev.kind == "ref" and R.has_static_storage(ev.callee) and sources.is_generated(ev.callee):
        var = ev.callee
    else:
        return
    pointers = HT.contains(var.type, HT.is_pointer)
    if pointers:
        add("pointer-in-static-state", ev.cursor, ev.ctx.function, top,
            f"static {R.qualified_name(var)} holds pointers: {_paths(var, pointers)}")  # fmt: skip
    floats = HT.contains(var.type, HT.is_float)
    if floats and not _in_mac(ev, macs):
        add("floating-point-outside-mac", ev.cursor, ev.ctx.function, top,
            f"static {R.qualified_name(var)} holds floating point: {_paths(var, floats)}")  # fmt: skip


def _paths(var, paths: list[str]) -> str:
    shown = [var.spelling + p.replace("[]", "[*]") for p in paths[:4]]
    return ", ".join(shown) + (f" (+{len(paths) - 4} more)" if len(paths) > 4 else "")


def _float(ev: R.Event, top: str, add, macs: frozenset) -> None:
    if _in_mac(ev, macs):
        return  # the float MAC engine
    if ev.kind == "float" or (ev.kind == "decl" and HT.is_float(ev.cursor.type)):
        add("floating-point-outside-mac", ev.cursor, ev.ctx.function, top,
            f"floating-point {ev.cursor.type.spelling} ({ev.cursor.kind.name.lower()})")  # fmt: skip


def _csim_call(sources: R.Sources, ev: R.Event, top: str, add) -> None:
    rule = "c-simulation-code-in-ip"
    if ev.kind == "new":
        add(rule, ev.cursor, ev.ctx.function, top, "dynamic allocation (new / delete)")
    elif ev.kind == "call" and not sources.is_generated(ev.callee) and ev.callee.spelling in FORBIDDEN_CALLS:
        add(rule, ev.cursor, ev.ctx.function, top, f"calls {ev.callee.spelling}")
    elif ev.kind in ("decl", "ref"):
        t = (ev.cursor if ev.kind == "decl" else ev.callee).type
        std = HT.contains(t, _std_container)
        if std:
            add(
                rule,
                ev.cursor,
                ev.ctx.function,
                top,
                f"uses a C++ library container or stream ({t.spelling})",
            )


def _std_container(t) -> bool:
    t = t.get_canonical()
    if t.kind in (HT.T.POINTER, HT.T.LVALUEREFERENCE, HT.T.RVALUEREFERENCE):
        t = t.get_pointee().get_canonical()
    if t.kind != HT.T.RECORD:
        return False
    d = t.get_declaration()
    parent = d.semantic_parent
    while parent is not None and parent.kind == R.K.NAMESPACE and parent.spelling.startswith("__"):
        parent = parent.semantic_parent  # std::__cxx11::basic_string
    return d.spelling in FORBIDDEN_STD_TYPES and parent is not None and parent.spelling == "std"
