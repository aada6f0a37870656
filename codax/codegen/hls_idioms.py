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
  synthesis view does not have (the scheduler, the accounting clocks, the counters);
- `m_axi-no-burst`: every access to an m_axi port in a pipelined loop is one UG1399 can turn into a burst
  ("Optimizing Burst Transfers", "Preconditions and Limitations of Burst Transfer"): made every
  iteration (not under an `if`, a `?:`, a `&&` / `||` operand or a `switch` inside the loop), at an
  address that advances by the same nonzero constant every iteration -- a sum of constants, variables
  the loop does not write, and variables the loop only steps by constants unconditionally (its
  induction variable, `a += 4`, `a = a + 1`, `++a`). Otherwise each access is a single transfer, a
  round trip each. Read in the loop's own function (an access in a function the loop calls is not).
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
    "m_axi-no-burst",
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
            _burst(walker, ev, top, add)
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


# ---- m_axi-no-burst ----------------------------------------------------------------------------------
_FUNCTIONS = (R.K.FUNCTION_DECL, R.K.CXX_METHOD, R.K.FUNCTION_TEMPLATE, R.K.CONVERSION_FUNCTION)
_CASTS = (R.K.CSTYLE_CAST_EXPR, R.K.CXX_FUNCTIONAL_CAST_EXPR, R.K.CXX_STATIC_CAST_EXPR)
_LOOPS = (R.K.FOR_STMT, R.K.WHILE_STMT, R.K.DO_STMT)


def _m_axi_ports(walker: R.Walker) -> set:
    """The top's parameters an m_axi INTERFACE pragma names."""
    names = {p.get("port") for p in walker.function_pragmas(walker.fn) if R.interface_mode(p) == "m_axi"}
    return {c for c in walker.fn.get_children() if c.kind == R.K.PARM_DECL and c.spelling in names}


def _port_of(param, bindings: tuple, ports: set):
    """The top's m_axi port a parameter is (through the calls' bindings), else None."""
    while param is not None and param.kind == R.K.PARM_DECL:
        if param in ports:
            return param
        bound = R.argument_of(param, bindings)
        if bound is None:
            return None
        arg, bindings = bound
        arg = _strip(arg)
        param = arg.referenced if arg.kind == R.K.DECL_REF_EXPR else None
    return None


def _operands(e) -> list:
    """The operands of an operator (built-in, or an overloaded one without its callee reference)."""
    kids = list(e.get_children())
    if e.kind != R.K.CALL_EXPR:
        return kids
    out = []
    for k in kids:
        s = R.strip_casts(k)
        if s.kind == R.K.DECL_REF_EXPR and s.referenced is not None and s.referenced.kind in _FUNCTIONS:
            continue  # the operator function
        if s.kind == R.K.MEMBER_REF_EXPR and s.spelling == e.spelling:
            out.extend(s.get_children())  # a member operator: its object
            continue
        out.append(k)
    return out


def _op(e) -> str | None:
    if e.kind in (R.K.BINARY_OPERATOR, R.K.COMPOUND_ASSIGNMENT_OPERATOR):
        return R.binary_op(e)
    if e.kind == R.K.UNARY_OPERATOR:
        toks = [t.spelling for t in e.get_tokens()]
        return "++" if "++" in toks else "--" if "--" in toks else None
    if e.kind == R.K.CALL_EXPR and e.spelling.startswith("operator") and e.spelling[8:9] != " ":
        return e.spelling[len("operator") :]
    return None


def _strip(e):
    """Below casts, parentheses, conversion operators and converting constructors (ap_int's)."""
    while True:
        e = R.strip_casts(e)
        kids = list(e.get_children())
        if e.kind == R.K.CALL_EXPR and e.spelling.startswith("operator ") and kids:
            member = R.strip_casts(kids[0])  # a conversion operator: its object
            e = next(member.get_children(), member) if member.kind == R.K.MEMBER_REF_EXPR else member
        elif e.kind in _CASTS and kids:
            e = kids[-1]
        elif e.kind == R.K.CALL_EXPR and e.referenced is not None and e.referenced.kind == R.K.CONSTRUCTOR:
            if len(kids) != 1:
                return e
            e = kids[0]
        else:
            return e


def _terms(e) -> list[tuple]:
    """An address as a sum: ('const', value), ('var', declaration) or ('other', cursor) terms."""
    e = _strip(e)
    is_ref = e.kind == R.K.DECL_REF_EXPR
    if not is_ref or (e.referenced is not None and e.referenced.type.is_const_qualified()):
        v = R.evaluate(e)
        if v is not None:
            return [("const", v)]
    op = _op(e)
    ops = _operands(e)
    if op == "+" and len(ops) == 2:
        return _terms(ops[0]) + _terms(ops[1])
    if op == "-" and len(ops) == 2:
        rhs = _terms(ops[1])
        if all(t[0] == "const" for t in rhs):
            return _terms(ops[0]) + [("const", -t[1]) for t in rhs]
    if op in (">>", "<<") and len(ops) == 2 and R.evaluate(_strip(ops[1])) == 0:
        return _terms(ops[0])  # a shift by a constant 0 (a ratio of widths that is 1)
    if is_ref and e.referenced is not None and e.referenced.kind in (R.K.VAR_DECL, R.K.PARM_DECL):
        return [("var", e.referenced)]
    return [("other", e)]


def _write(e) -> tuple[object, int | None] | None:
    """(the variable an assignment writes, its constant step or None), or None if `e` writes none."""
    op = _op(e)
    if op not in ("=", "+=", "-=", "++", "--"):
        return None
    ops = _operands(e)
    if not ops:
        return None
    lhs = R.strip_casts(ops[0])
    if lhs.kind != R.K.DECL_REF_EXPR or lhs.referenced is None:
        return None
    var = lhs.referenced
    if op in ("++", "--"):
        return var, 1 if op == "++" else -1
    if len(ops) < 2:
        return var, None
    rhs = _terms(ops[1])
    if op in ("+=", "-="):
        ok = all(t[0] == "const" for t in rhs)
        step = sum(t[1] for t in rhs) if ok else None
        return var, None if step is None else (step if op == "+=" else -step)
    rest = [t for t in rhs if not (t[0] == "var" and t[1] == var)]  # a = a + c
    if len(rest) == len(rhs) - 1 and all(t[0] == "const" for t in rest):
        return var, sum(t[1] for t in rest)
    return var, None


def _conditional_children(c) -> set[int]:
    """The children of `c` (by position) that run only under a condition."""
    if c.kind in (R.K.IF_STMT, R.K.CONDITIONAL_OPERATOR):
        return set(range(1, 3))
    if c.kind == R.K.BINARY_OPERATOR and R.binary_op(c) in ("&&", "||"):
        return {1}
    if c.kind in (R.K.SWITCH_STMT, R.K.CASE_STMT, R.K.DEFAULT_STMT):
        return set(range(0, 99))
    return set()


def _burst(walker: R.Walker, ev: R.Event, top: str, add) -> None:
    """m_axi-no-burst over the outermost pipelined loop `ev` opens (module docstring)."""
    if ev.kind != "loop" or not ev.loop.pipeline or ev.ctx.pipeline is not None:
        return
    ports = _m_axi_ports(walker)
    if not ports:
        return
    accesses: list[tuple] = []  # (subscript, port, index expression, conditional)
    writes: dict = {}  # variable -> [(step, conditional)]

    def visit(c, cond: bool) -> None:
        w = _write(c)
        if w is not None:
            writes.setdefault(w[0], []).append((w[1], cond))
        if c.kind == R.K.ARRAY_SUBSCRIPT_EXPR:
            base, index = (R.strip_casts(k) for k in c.get_children())
            ref = base.referenced if base.kind == R.K.DECL_REF_EXPR else None
            port = _port_of(ref, ev.ctx.bindings, ports) if ref is not None else None
            if port is not None:
                accesses.append((c, port, index, cond))
        conditional = _conditional_children(c)
        for i, k in enumerate(c.get_children()):
            visit(k, cond or i in conditional)

    visit(ev.cursor, False)
    for sub, port, index, cond in accesses:
        why = None
        if cond:
            why = "is made under a condition in the loop"
        else:
            step = 0
            for kind, t in _terms(index):
                if kind == "other":
                    why = "has an address that is not a sum of constants and loop counters"
                    break
                if kind == "var" and t in writes:
                    steps = writes[t]
                    if any(s is None or c for s, c in steps):
                        why = f"has an address ({t.spelling}) the loop sets, not by a constant step each time"
                        break
                    step += sum(s for s, _ in steps)
            if why is None and step == 0:
                why = "has an address that does not advance from one iteration to the next"
        if why is not None:
            add("m_axi-no-burst", sub, ev.ctx.function, top,
                f"no burst: the access to m_axi port {port.spelling} in the pipelined loop at line "
                f"{ev.loop.line} {why} (UG1399 Preconditions and Limitations of Burst Transfer)")  # fmt: skip


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
