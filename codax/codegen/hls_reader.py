"""A reader of HLS C++ sources through libclang: what each synthesis top reaches, as Vitis HLS sees it.

The sources are parsed by clang (libclang's Python bindings) in one of two views, each with its
build's flags: the synthesis view with what run_hls.tcl / hls_config.cfg pass to engine.cpp
(`-Iinclude` and nothing else), CODAX_SYNTHESIS_VIEW standing for `__SYNTHESIS__` (the sources treat
the two alike; the library headers -- hls4ml's ap_types, the C++ compiler's own -- are read in their
C-simulation branch, as their `__SYNTHESIS__` branch calls Vitis's own builtins), and the C-simulation
view with the C-simulation build's flags (the sources' root and include/, CODAX_MAX_LEVELS,
CODAX_COUNT and CODAX_TRACE defined: every piece of C-simulation machinery present). Both parse as
C++14. Structure comes from the AST only: functions, loops, declarations, calls and operators are
cursors, template code is read in the instantiation a call selects (its template arguments
substituted), constant expressions are evaluated by clang. `#pragma HLS` lines (any case, continued
by a backslash) have no AST node of their own: they are read from the token stream of the function
that holds them, dropping the ranges the preprocessor skipped, and belong to the innermost loop body
(or function body) whose source range holds them -- the scope rule UG1399 gives them. A value given by
name (factor=F) is evaluated by clang or refused (HlsReadError); `off` / `off=true` switches a
directive off.

`Walker(sources, tu, top).events()` follows a top through every function it calls (a call into the
sources is read as if inlined, the HLS default for the small functions it reaches; a call into a
library header -- ap_types, hls_stream, the C library -- is a leaf) and reports, in order, the loops,
multiply and floating-point add sites, declarations, references and calls it meets, each with its
context: the function and line, how many copies of it the unrolled loops around it make, and whether
it sits in a pipelined region (UG1399 "Pipelining Loops": a PIPELINE pragma on a loop, or on a
function, unrolls every loop below it). A recursive call (by the callee's USR) is not followed again.
Types are read by codax.codegen.hls_types.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from codax.codegen.hls_types import is_float, is_signed, type_bits
from codax.errors import CodaxError

try:
    import clang.cindex as ci
except ImportError:  # pragma: no cover - the dependency is declared in pyproject.toml
    ci = None

K = ci.CursorKind if ci else None

SYNTHESIS_VIEW = ("-DCODAX_SYNTHESIS_VIEW",)
SIMULATION_VIEW = ("-DCODAX_COUNT", "-DCODAX_TRACE")
STD = "-std=c++14"
INTERFACE_MODES = ("ap_none", "ap_vld", "ap_ack", "ap_hs", "ap_ovld", "ap_fifo", "ap_memory", "bram",
                   "axis", "s_axilite", "m_axi", "ap_ctrl_none", "ap_ctrl_hs", "ap_ctrl_chain")  # fmt: skip


# libclang's objects must go before the bindings' module does at interpreter exit
atexit.register(lambda: _PARSED.clear())


class HlsReadError(CodaxError):
    """The sources could not be read (libclang missing, or clang reported an error)."""


# ---- libclang entry points the bindings do not wrap ----------------------------------------------
class _RangeList(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint), ("ranges", ctypes.c_void_p)]


@functools.cache
def _lib():
    if ci is None:
        raise HlsReadError("reading HLS sources needs libclang's Python bindings: pip install libclang")
    try:
        lib = ci.conf.lib
    except ci.LibclangError as e:
        raise HlsReadError(f"reading HLS sources needs libclang's shared library: {e}") from None
    lib.clang_Cursor_Evaluate.argtypes = [ci.Cursor]
    lib.clang_Cursor_Evaluate.restype = ctypes.c_void_p
    lib.clang_EvalResult_getKind.argtypes = [ctypes.c_void_p]
    lib.clang_EvalResult_getKind.restype = ctypes.c_int
    lib.clang_EvalResult_getAsLongLong.argtypes = [ctypes.c_void_p]
    lib.clang_EvalResult_getAsLongLong.restype = ctypes.c_longlong
    lib.clang_EvalResult_dispose.argtypes = [ctypes.c_void_p]
    lib.clang_getCursorBinaryOperatorKind.argtypes = [ci.Cursor]
    lib.clang_getCursorBinaryOperatorKind.restype = ctypes.c_int
    lib.clang_getBinaryOperatorKindSpelling.argtypes = [ctypes.c_int]
    lib.clang_getBinaryOperatorKindSpelling.restype = ci._CXString
    lib.clang_getBinaryOperatorKindSpelling.errcheck = ci._CXString.from_result
    lib.clang_Location_isFromMainFile.argtypes = [ci.SourceLocation]
    lib.clang_Location_isFromMainFile.restype = ctypes.c_int
    lib.clang_getAllSkippedRanges.argtypes = [ci.TranslationUnit]
    lib.clang_getAllSkippedRanges.restype = ctypes.POINTER(_RangeList)
    lib.clang_disposeSourceRangeList.argtypes = [ctypes.POINTER(_RangeList)]
    return lib


@functools.cache
def clang_version() -> str:
    """libclang's version string (a part of the disk cache's key)."""
    lib = _lib()
    lib.clang_getClangVersion.restype = ci._CXString
    lib.clang_getClangVersion.errcheck = ci._CXString.from_result
    lib.clang_getClangVersion.argtypes = []
    return str(lib.clang_getClangVersion())


def evaluate(cursor) -> int | None:
    """The integer value of a constant expression (or of a variable's constant initializer)."""
    lib = _lib()
    res = lib.clang_Cursor_Evaluate(cursor)
    if not res:
        return None
    try:
        return (
            int(lib.clang_EvalResult_getAsLongLong(res)) if lib.clang_EvalResult_getKind(res) == 1 else None
        )
    finally:
        lib.clang_EvalResult_dispose(res)


def binary_op(cursor) -> str:
    """The operator of a BINARY_OPERATOR / COMPOUND_ASSIGNMENT_OPERATOR cursor ('*', '+=', '<', ...)."""
    lib = _lib()
    return lib.clang_getBinaryOperatorKindSpelling(lib.clang_getCursorBinaryOperatorKind(cursor))


# ---- parsing -----------------------------------------------------------------------------------------
@functools.cache
def _compiler_include() -> str | None:
    """The C++ compiler's own headers (stddef.h, ...): the PyPI libclang ships none."""
    try:
        out = subprocess.run(
            ["g++", "-print-file-name=include"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return None
    return out if out and Path(out, "stddef.h").exists() else None


@dataclass
class Sources:
    """Parsed sources: one translation unit per view, the directory they were written to."""

    root: Path
    units: dict[str, object]  # "<file>|<view>" -> TranslationUnit
    _keep: object = None  # the temporary directory, alive as long as the parse

    def unit(self, file: str, view: tuple[str, ...]):
        return self.units[f"{file}|{' '.join(view)}"]

    def is_generated(self, cursor) -> bool:
        """Whether `cursor` is declared in the sources (not a library or system header)."""
        f = cursor.location.file
        return f is not None and _under(f.name, str(self.root))


@functools.cache
def _under(file: str, root: str) -> bool:
    return Path(file).resolve().is_relative_to(root)


_PARSED: dict[str, Sources] = {}
_PARSED_KEEP = 4  # parses kept: the resources and the idiom checker read the same sources


def parse(
    files: dict[str, str], units: tuple[str, ...] = ("engine.cpp",), views=(SYNTHESIS_VIEW, SIMULATION_VIEW)
) -> Sources:
    """Parse {relative path: text}: each of `units` in each view (the last few parses are kept, by
    content). Raises HlsReadError on a clang error."""
    h = hashlib.sha256(repr((sorted(files.items()), units, views)).encode()).hexdigest()
    if h not in _PARSED:
        while len(_PARSED) >= _PARSED_KEEP:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[h] = _parse(files, units, views)
    return _PARSED[h]


def view_flags(view: tuple[str, ...], max_levels: int) -> list[str]:
    """The compiler flags of a view ({root}: the sources' directory): the synthesis scripts' for the
    synthesis view (engine.cpp's `-Iinclude`), the C-simulation build's otherwise."""
    flags = ["-x", "c++", STD]
    if view == SYNTHESIS_VIEW:
        return [*flags, "-I", "{root}/include", *view]
    return [*flags, f"-DCODAX_MAX_LEVELS={max_levels}", "-I", "{root}", "-I", "{root}/include", *view]


def _parse(files: dict[str, str], units: tuple[str, ...], views) -> Sources:
    from codax.codegen.csim import MAX_LEVELS, CsimError, ap_types_dir

    _lib()
    try:
        ap_types = ap_types_dir()
    except CsimError as e:
        raise HlsReadError(str(e)) from None
    tmp = tempfile.TemporaryDirectory(prefix="codax-hls-")
    root = Path(tmp.name).resolve()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    system = ["-isystem", str(ap_types)]
    if _compiler_include():
        system += ["-isystem", _compiler_include()]
    try:
        index = ci.Index.create()
    except ci.LibclangError as e:
        raise HlsReadError(f"reading HLS sources needs libclang's shared library: {e}") from None
    parsed = {}
    for unit in units:
        if unit not in files:
            raise HlsReadError(f"{unit}: not among the sources ({', '.join(sorted(files))})")
        for view in views:
            args = [a.replace("{root}", str(root)) for a in view_flags(view, MAX_LEVELS)] + system
            try:
                tu = index.parse(
                    str(root / unit), args=args, options=ci.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD
                )
            except ci.TranslationUnitLoadError as e:
                raise HlsReadError(f"clang could not load {unit} ({' '.join(view)}): {e}") from None
            errors = [d for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
            if errors:
                raise HlsReadError(
                    f"clang could not parse {unit} ({' '.join(view)}): " + "; ".join(map(str, errors[:5]))
                )
            parsed[f"{unit}|{' '.join(view)}"] = tu
    return Sources(root, parsed, tmp)


# ---- pragmas -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pragma:
    """One `#pragma HLS DIRECTIVE flag key=value ...` line."""

    directive: str  # upper case: PIPELINE, UNROLL, ARRAY_PARTITION, INTERFACE, ...
    flags: tuple[str, ...]  # options without a value (cyclic, complete, m_axi, bram, ...)
    options: tuple[tuple[str, str], ...]  # key=value options, keys lower case
    file: str
    line: int

    def get(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)


def _skipped(tu) -> list[tuple[str, int, int]]:
    """The (file, first line, last line) ranges the preprocessor skipped (#if branches not taken)."""
    lib = _lib()
    lst = lib.clang_getAllSkippedRanges(tu)
    out = []
    try:
        arr = ctypes.cast(lst.contents.ranges, ctypes.POINTER(ci.SourceRange))
        for i in range(lst.contents.count):
            r = arr[i]
            if r.start.file is not None:
                out.append((r.start.file.name, r.start.line, r.end.line))
    finally:
        lib.clang_disposeSourceRangeList(lst)
    return out


def _skipped_cached(tu) -> tuple:
    return _memo(tu, "skipped", lambda: tuple(_skipped(tu)))


def pragmas_in(tu, cursor) -> list[Pragma]:
    """The HLS pragmas inside `cursor`'s source range (read from its tokens), in order."""
    ext = cursor.extent
    if ext.start.file is None:
        return []
    return list(_pragmas(tu, ext.start.file.name, ext.start.offset, ext.end.offset, cursor))


def _memo(tu, key, compute):
    """A value computed once per translation unit (kept on the unit, so it goes with it)."""
    memo = tu.__dict__.setdefault("_codax_memo", {})
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _pragmas(tu, file: str, start: int, end: int, cursor) -> tuple[Pragma, ...]:
    return _memo(tu, ("pragmas", file, start, end), lambda: _read_pragmas(tu, file, cursor))


def _read_pragmas(tu, file: str, cursor) -> tuple[Pragma, ...]:
    skipped = [(a, b) for f, a, b in _skipped_cached(tu) if f == file]
    lines: dict[int, list[str]] = {}
    for tok in cursor.get_tokens():  # a raw lexing of the range: one file
        lines.setdefault(tok.location.line, []).append(tok.spelling)
    text = _file_lines(file)
    out = []
    for line, toks in lines.items():
        if toks[:2] != ["#", "pragma"] or len(toks) < 4 or toks[2].upper() != "HLS":
            continue
        if any(a <= line <= b for a, b in skipped):
            continue
        toks = list(toks)
        nxt = line  # a pragma continued by a backslash at the end of its line goes on below
        while 0 < nxt <= len(text) and text[nxt - 1].rstrip().endswith("\\") and nxt + 1 in lines:
            nxt += 1
            toks += [t for t in lines[nxt] if t != "\\"]
        out.append(_pragma([t for t in toks[3:] if t != "\\"], file, line))
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _file_lines(file: str) -> tuple[str, ...]:
    try:
        return tuple(Path(file).read_text().splitlines())
    except OSError:
        return ()


def _pragma(toks: list[str], file: str, line: int) -> Pragma:
    flags, opts = [], []
    i = 1
    while i < len(toks):
        if i + 1 < len(toks) and toks[i + 1] == "=":
            j = i + 2  # a value: one token, or a qualified name a::b, or a field x.f
            value = toks[j] if j < len(toks) else ""
            while j + 2 < len(toks) and toks[j + 1] in ("::", "."):
                value += toks[j + 1] + toks[j + 2]
                j += 2
            opts.append((toks[i].lower(), value))
            i = j + 1
        else:
            flags.append(toks[i].lower())
            i += 1
    return Pragma(toks[0].upper(), tuple(flags), tuple(opts), file, line)


def is_off(p: Pragma) -> bool:
    """A directive switched off (`off`, `off=true`): PIPELINE off, UNROLL off=true, ARRAY_PARTITION
    off=true, ..."""
    return "off" in p.flags or (p.get("off") or "").lower() == "true"


def interface_mode(p: Pragma) -> str | None:
    """The mode of an INTERFACE pragma, in either syntax: `INTERFACE bram port=x` or `INTERFACE
    mode=bram port=x` (UG1399's current one)."""
    if p.directive != "INTERFACE":
        return None
    mode = p.get("mode")
    if mode:
        return mode.lower()
    return next((f for f in p.flags if f in INTERFACE_MODES), None)


def pragma_int(tu, p: Pragma, key: str, default: int | None = None) -> int | None:
    """The integer value of option `key` of pragma `p`: a literal, or a named constant (a const
    variable or an enumerator, or an object-like macro) evaluated by clang; HlsReadError when the name
    has no constant value."""
    text = p.get(key)
    if text is None or text == "":
        return default
    try:
        return int(text, 0)
    except ValueError:
        pass
    value = named_constant(tu, text)
    if value is None:
        raise HlsReadError(
            f"{Path(p.file).name}:{p.line}: #pragma HLS {p.directive} {key}={text}: "
            f"{text} is not a compile-time integer constant clang can evaluate"
        )
    return value


def named_constant(tu, name: str) -> int | None:
    table = _memo(tu, "constants", lambda: _constants(tu))
    return table.get(name, table.get(name.rsplit("::", 1)[-1]))


def _constants(tu) -> dict[str, int]:
    """The integer constants of the translation unit by name: const variables and enumerators (by
    their plain and qualified names) and object-like macros whose body is one integer literal; those of
    the sources (the unit's directory) before those of library headers."""
    root = str(Path(tu.spelling).parent)
    own: dict[str, int] = {}
    lib: dict[str, int] = {}
    scopes = (K.NAMESPACE, K.ENUM_DECL, K.STRUCT_DECL, K.CLASS_DECL, K.LINKAGE_SPEC)

    def visit(c):
        f = c.location.file
        mine = f is not None and f.name.startswith(root)
        table = own if mine else lib
        if c.kind == K.MACRO_DEFINITION:
            toks = [t.spelling for t in c.get_tokens()]
            if len(toks) == 2:
                try:
                    table.setdefault(toks[0], int(toks[1].rstrip("uUlL"), 0))
                except ValueError:
                    pass
            return
        if c.kind == K.ENUM_CONSTANT_DECL or (c.kind == K.VAR_DECL and c.type.is_const_qualified()):
            v = c.enum_value if c.kind == K.ENUM_CONSTANT_DECL else evaluate(c)
            if v is not None:
                table.setdefault(c.spelling, v)
                table.setdefault(qualified_name(c), v)
        if mine or c.kind in scopes or c.kind == K.TRANSLATION_UNIT:
            for k in c.get_children():
                visit(k)

    visit(tu.cursor)
    return {**lib, **own}


def _inside(p: Pragma, cursor) -> bool:
    ext = cursor.extent
    return (
        ext.start.file is not None
        and ext.start.file.name == p.file
        and ext.start.line <= p.line <= ext.end.line
    )


def qualified_name(cursor) -> str:
    parts = []
    c = cursor
    while c is not None and c.kind != K.TRANSLATION_UNIT:
        if c.spelling:
            parts.append(c.spelling)
        c = c.semantic_parent
    return "::".join(reversed(parts))


def has_static_storage(var) -> bool:
    """A variable that outlives a call: namespace scope, a static data member, or declared `static`."""
    if var.kind != K.VAR_DECL:
        return False
    parent = var.semantic_parent
    return (
        parent is None
        or parent.kind in (K.NAMESPACE, K.TRANSLATION_UNIT, K.STRUCT_DECL, K.CLASS_DECL, K.CLASS_TEMPLATE)
        or var.storage_class == ci.StorageClass.STATIC
    )  # a VAR_DECL in a class is a static data member


# ---- walking a top ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """Where a cursor sits: the call path from the top, the copies the unrolled loops around it make,
    whether a pipelined loop encloses it (and which), and the unrolled loops' induction variables."""

    top: str
    path: tuple[str, ...]  # function names, the top first
    copies: int = 1
    pipeline: tuple[str, int] | None = None  # (function, line) of the enclosing pipelined loop
    unrolled: bool = False  # inside a loop the UNROLL pragma (or an enclosing PIPELINE) unrolls
    # (USR, values) of the induction variables of fully unrolled loops: per copy a constant
    constants: frozenset = frozenset()
    usrs: tuple[str, ...] = ()  # the USRs of the functions on the path (the recursion guard)
    # the outermost unrolled loop around the cursor: the call depth (len(path)) it sits at and its
    # extent (file, first and last offset); a variable declared inside it, or in a function called
    # inside it, takes one value per copy (None: no unrolled loop around)
    unroll_depth: int | None = None
    unroll_extent: tuple | None = None
    # the arguments the calls on the path bind to their functions' parameters: (parameter's extent,
    # argument cursor, the caller's bindings), innermost call last
    bindings: tuple = ()

    @property
    def function(self) -> str:
        return self.path[-1]


@dataclass(frozen=True)
class Loop:
    function: str
    file: str
    line: int
    label: str | None
    trip: int | None  # None: a run-time trip count
    pipeline: bool  # carries a PIPELINE pragma
    unroll: int | None  # the UNROLL pragma's copies (the trip count when full); None: no UNROLL pragma
    pragmas: tuple[Pragma, ...]


@dataclass
class Event:
    """What `walk` meets: kind is 'loop', 'mul', 'fadd', 'decl', 'ref', 'call', 'float', 'new', 'index'
    (an array or pointer subscript, the outermost of a chain a[i][j]; `target` is how it is used: 'r'
    read, 'w' written by an assignment, 'rw' read and written by a compound assignment or ++ / --)."""

    kind: str
    cursor: object
    ctx: Context
    loop: Loop | None = None
    callee: object = None
    operands: tuple = ()
    target: str | None = None  # the variable the statement around a multiply assigns (BIND_OP variable=)
    pragmas: tuple = ()  # the pragmas of the function the event sits in

    @property
    def line(self) -> int:
        return self.cursor.location.line

    @property
    def file(self) -> str:
        f = self.cursor.location.file
        return f.name if f else ""


def declarations(tu) -> list:
    """The declarations of the translation unit's own file (namespaces entered), in order."""
    return _memo(tu, "declarations", lambda: list(_declarations(tu)))


def _declarations(tu) -> Iterator:
    lib = _lib()

    def under(c):
        for k in c.get_children():
            if not lib.clang_Location_isFromMainFile(k.location):  # cheaper than comparing file names
                continue
            if k.kind == K.NAMESPACE:
                yield from under(k)
            else:
                yield k

    yield from under(tu.cursor)


def find_function(tu, name: str):
    """The definition of function `name` in the translation unit (a synthesis top)."""
    for c in declarations(tu):
        if c.kind == K.FUNCTION_DECL and c.spelling == name and c.is_definition():
            return c
    raise HlsReadError(f"function {name} is not defined in {tu.spelling}")


def _loop_kinds():
    return (K.FOR_STMT, K.WHILE_STMT, K.DO_STMT, K.CXX_FOR_RANGE_STMT)


def same(a, b) -> bool:
    """Whether two cursors (either may be None) are the same declaration."""
    return a is not None and b is not None and a == b


def strip_casts(c):
    """Below implicit casts and parentheses."""
    while c.kind in (K.UNEXPOSED_EXPR, K.PAREN_EXPR) and len(list(c.get_children())) == 1:
        c = next(c.get_children())
    return c


def _is_var(c) -> bool:
    return c is not None and c.kind == K.VAR_DECL


def _assigned(c) -> str | None:
    """The variable a declaration or an assignment writes (its name), else None."""
    kind = c.kind
    if kind == K.VAR_DECL:
        return c.spelling
    if kind in (K.BINARY_OPERATOR, K.COMPOUND_ASSIGNMENT_OPERATOR, K.CALL_EXPR):
        if kind == K.BINARY_OPERATOR and binary_op(c) != "=":
            return None
        if kind == K.CALL_EXPR and (
            not c.spelling.startswith("operator") or c.spelling[-1:] != "=" or c.spelling[-2:-1] in "=<>!"
        ):
            return None
        lhs = next(iter(c.get_children()), None)
        lhs = strip_casts(lhs) if lhs is not None else None
        if lhs is not None and lhs.kind in (K.DECL_REF_EXPR, K.MEMBER_REF_EXPR):
            return lhs.spelling
    return None


def trip_count(loop) -> int | None:
    """The trip count of `for (int v = a; v OP b; v STEP)` with a, b and the step constant; else None."""
    rng = loop_range(loop)
    return len(rng) if rng is not None else None


def loop_range(loop) -> range | None:
    """The values of `v` in `for (int v = a; v OP b; v STEP)` with a, b and the step constant; else None."""
    if loop.kind != K.FOR_STMT:
        return None
    kids = list(loop.get_children())
    if len(kids) < 4 or kids[0].kind != K.DECL_STMT:
        return None  # a clause is missing (for (;;) ...): the loop ends on a run-time break
    decls = [d for d in kids[0].get_children() if d.kind == K.VAR_DECL]
    if len(decls) != 1:
        return None
    var = decls[0]
    start = evaluate(var)
    cond, inc = kids[1], kids[2]
    if start is None or cond.kind != K.BINARY_OPERATOR:
        return None
    op = binary_op(cond)
    lhs, rhs = (strip_casts(x) for x in cond.get_children())
    if not (lhs.kind == K.DECL_REF_EXPR and same(lhs.referenced, var)):
        return None
    bound = evaluate(rhs)
    step = _step(inc, var)
    if bound is None or not step:
        return None
    end = {"<": bound, "<=": bound + 1, "!=": bound, ">": bound, ">=": bound - 1}.get(op)
    if end is None or (op in (">", ">=")) != (step < 0) or step == 0:
        return None
    return range(start, end, step)


def _step(inc, var) -> int | None:
    if inc.kind == K.UNARY_OPERATOR:
        toks = [t.spelling for t in inc.get_tokens()]
        return 1 if "++" in toks else (-1 if "--" in toks else None)
    if inc.kind == K.COMPOUND_ASSIGNMENT_OPERATOR:
        lhs, rhs = list(inc.get_children())
        v = evaluate(rhs)
        if v is None:
            return None
        return v if binary_op(inc) == "+=" else (-v if binary_op(inc) == "-=" else None)
    return None


def _extent(c) -> tuple:
    e = c.extent
    return (e.start.file.name if e.start.file else "", e.start.offset, e.end.offset)


def _note_written(c, kind, written: dict) -> None:
    """Record the subscript an assignment (=, op=, ++ / --; built-in or an overloaded operator) writes."""
    if kind == K.BINARY_OPERATOR:
        op = binary_op(c)
        mode = "w" if op == "=" else None
    elif kind == K.COMPOUND_ASSIGNMENT_OPERATOR:
        mode = "rw"
    elif kind == K.UNARY_OPERATOR:
        toks = [t.spelling for t in c.get_tokens()][:1] + [t.spelling for t in c.get_tokens()][-1:]
        mode = "rw" if "++" in toks or "--" in toks else None
    elif kind == K.CALL_EXPR and c.spelling.startswith("operator"):
        op = c.spelling[len("operator") :]
        mode = (
            "w" if op == "=" else ("rw" if op in ("+=", "-=", "*=", "|=", "&=", "^=", "++", "--") else None)
        )
    else:
        mode = None
    if mode is None:
        return
    lhs = next(iter(c.get_children()), None)
    if kind == K.CALL_EXPR:  # an overloaded operator: its callee reference may come first
        lhs = next((a for a in c.get_children() if strip_casts(a).kind != K.DECL_REF_EXPR
                    or not same(strip_casts(a).referenced, c.referenced)), None)  # fmt: skip
    if lhs is not None:
        lhs = strip_casts(lhs)
        if lhs.kind == K.ARRAY_SUBSCRIPT_EXPR:
            written[_extent(lhs)] = mode


class Walker:
    """Follows one top through the sources (see the module docstring); `events()` yields what it meets."""

    MAX_DEPTH = 40

    def __init__(self, sources: Sources, tu, top: str):
        self.sources, self.tu, self.top = sources, tu, top
        self.fn = find_function(tu, top)

    def function_pragmas(self, fn) -> list[Pragma]:
        return pragmas_in(self.tu, fn)

    def events(self) -> Iterator[Event]:
        ctx = Context(self.top, (self.top,), usrs=(self.fn.get_usr(),))
        self._targets: list[str | None] = [None]
        self._written: dict[tuple, str] = {}  # subscripts an assignment writes: extent -> 'w' | 'rw'
        self._inner: set[tuple] = set()  # subscripts that are the base of an outer one (a[i] in a[i][j])
        yield from self._function(self.fn, ctx)

    def _function(self, fn, ctx: Context) -> Iterator[Event]:
        body = next((c for c in fn.get_children() if c.kind == K.COMPOUND_STMT), None)
        for c in fn.get_children():
            if c.kind == K.PARM_DECL:
                yield Event("decl", c, ctx)
        if body is None:
            return
        pragmas = self.function_pragmas(fn)
        # a PIPELINE pragma in the function body itself (outside its loops) pipelines the function:
        # every loop in it is unrolled (UG1399 "Function Pipelining")
        loops = [k for k in body.walk_preorder() if k.kind in _loop_kinds()]
        own = [p for p in pragmas if _inside(p, body) and not any(_inside(p, n) for n in loops)]
        if ctx.pipeline is None and any(p.directive == "PIPELINE" and not is_off(p) for p in own):
            ctx = replace(ctx, pipeline=(ctx.function, fn.location.line))
        yield from self._visit(body, ctx, pragmas, None)

    def _visit(self, c, ctx: Context, pragmas: list[Pragma], label: str | None) -> Iterator[Event]:
        target = _assigned(c)
        if target is not None:
            self._targets.append(target)
            try:
                yield from self._visit_node(c, ctx, pragmas, label)
            finally:
                self._targets.pop()
            return
        yield from self._visit_node(c, ctx, pragmas, label)

    def _visit_node(self, c, ctx: Context, pragmas: list[Pragma], label: str | None) -> Iterator[Event]:
        kind = c.kind
        if kind == K.LABEL_STMT:
            for k in c.get_children():
                yield from self._visit(k, ctx, pragmas, c.spelling)
            return
        if kind in _loop_kinds():
            yield from self._loop(c, ctx, pragmas, label)
            return
        _note_written(c, kind, self._written)
        if kind == K.ARRAY_SUBSCRIPT_EXPR:
            key = _extent(c)
            if key not in self._inner:
                base = strip_casts(next(c.get_children()))
                while base.kind == K.ARRAY_SUBSCRIPT_EXPR:
                    self._inner.add(_extent(base))
                    base = strip_casts(next(base.get_children()))
                yield Event("index", c, ctx, target=self._written.get(key, "r"))
        if kind == K.VAR_DECL:
            yield Event("decl", c, ctx)
        elif kind in (K.DECL_REF_EXPR, K.MEMBER_REF_EXPR) and _is_var(c.referenced):
            yield Event("ref", c, ctx, callee=c.referenced, pragmas=tuple(pragmas))
        elif kind in (K.BINARY_OPERATOR, K.COMPOUND_ASSIGNMENT_OPERATOR):
            op = binary_op(c)
            if op in ("*", "*="):
                yield Event("mul", c, ctx, operands=tuple(c.get_children()), target=self._targets[-1],
                            pragmas=tuple(pragmas))  # fmt: skip
            elif op in ("+", "-", "+=", "-=") and is_float(c.type):
                yield Event("fadd", c, ctx, operands=tuple(c.get_children()))
        elif kind in (K.CXX_NEW_EXPR, K.CXX_DELETE_EXPR):
            yield Event("new", c, ctx)
        elif kind == K.CALL_EXPR:
            yield from self._call(c, ctx, pragmas)
        elif kind in (K.IF_STMT, K.CONDITIONAL_OPERATOR):
            kids = list(c.get_children())
            value = evaluate(kids[0]) if kids else None
            if value is not None and len(kids) >= 2:  # a constant condition: HLS keeps one branch only
                taken = kids[1] if value else (kids[2] if len(kids) > 2 else None)
                yield from self._visit(kids[0], ctx, pragmas, None)
                if taken is not None:
                    yield from self._visit(taken, ctx, pragmas, None)
                return
        if kind not in (K.TYPE_REF, K.TEMPLATE_REF) and c.type is not None and is_float(c.type):
            if kind not in (K.UNEXPOSED_EXPR, K.PAREN_EXPR):
                yield Event("float", c, ctx)
        for k in c.get_children():
            yield from self._visit(k, ctx, pragmas, None)

    def _call(self, c, ctx: Context, pragmas) -> Iterator[Event]:
        callee = c.referenced
        if callee is None:
            return
        if callee.spelling == "operator*":  # an overloaded multiply (ap_int): its two operands
            args = [a for a in c.get_children() if not same(strip_casts(a).referenced, callee)]
            yield Event("mul", c, ctx, callee=callee, operands=tuple(args), target=self._targets[-1],
                        pragmas=tuple(pragmas))  # fmt: skip
        if callee.spelling in ("operator+", "operator-") and is_float(c.type):
            yield Event("fadd", c, ctx, callee=callee)
        yield Event("call", c, ctx, callee=callee)
        if not self.sources.is_generated(callee):
            return
        body = callee if callee.is_definition() else callee.get_definition()
        if body is None or len(ctx.path) > self.MAX_DEPTH:
            return
        usr = body.get_usr()
        if usr in ctx.usrs:
            return  # a recursive call (HLS rejects recursion): read once
        params = [k for k in body.get_children() if k.kind == K.PARM_DECL]
        bound = tuple((_extent(p), a, ctx.bindings) for p, a in zip(params, c.get_arguments()))
        inner = replace(ctx, path=(*ctx.path, callee.spelling), usrs=(*ctx.usrs, usr), bindings=bound)
        saved, self._targets = self._targets, [None]
        try:
            yield from self._function(body, inner)
        finally:
            self._targets = saved

    def _loop(self, c, ctx: Context, pragmas: list[Pragma], label: str | None) -> Iterator[Event]:
        kids = list(c.get_children())
        body = kids[-1] if kids else c
        # a loop body that is itself a loop (no braces between) holds that loop's pragmas, not its own
        nested = [k for k in body.walk_preorder() if k.kind in _loop_kinds()]
        own = tuple(p for p in pragmas if _inside(p, body) and not any(_inside(p, n) for n in nested))
        rng = loop_range(c)
        trip = len(rng) if rng is not None else None
        unroll = None
        for p in own:
            if p.directive == "UNROLL" and not is_off(p):
                f = pragma_int(self.tu, p, "factor")
                unroll = f if f is not None else trip
                if unroll is None:
                    unroll = 0  # a full unroll of a run-time trip count: not possible
                elif trip is not None:
                    unroll = min(unroll, trip)
        pipe = any(p.directive == "PIPELINE" and not is_off(p) for p in own)
        file = c.location.file.name if c.location.file else ""
        loop = Loop(ctx.function, file, c.location.line, label, trip, pipe, unroll, own)
        yield Event("loop", c, ctx, loop=loop)
        copies, unrolled, constants, pipeline = ctx.copies, ctx.unrolled, ctx.constants, ctx.pipeline
        implicit = ctx.pipeline is not None and not pipe  # PIPELINE unrolls every loop below it
        if unroll or implicit:
            n = unroll if unroll else trip
            copies *= max(1, n or 1)
            unrolled = True
            if (unroll == trip or implicit) and rng is not None and kids and kids[0].kind == K.DECL_STMT:
                values = tuple(rng)
                constants = constants | {
                    (v.get_usr(), values) for v in kids[0].get_children() if v.kind == K.VAR_DECL
                }
        if pipe and pipeline is None:
            pipeline = (ctx.function, c.location.line)
        depth, extent = ctx.unroll_depth, ctx.unroll_extent
        if unrolled and depth is None:
            depth, extent = len(ctx.path), _extent(c)
        inner = replace(ctx, copies=copies, pipeline=pipeline, unrolled=unrolled, constants=constants,
                        unroll_depth=depth, unroll_extent=extent)  # fmt: skip
        for k in kids:
            yield from self._visit(k, inner, pragmas, None)


@dataclass(frozen=True)
class Operand:
    """A multiply's operand as hardware: its width, its signedness, and its compile-time values (one
    for a constant expression; one per copy for an unrolled loop's index; None for a run-time value)."""

    bits: int
    signed: bool
    values: tuple[int, ...] | None = None


def operand_bits(expr, constants: frozenset = frozenset()) -> Operand:
    """A multiply's operand: the narrowest integer width its value passes through on the way (a widening
    cast or promotion carries no information: sign or zero extension, which HLS's width analysis sees
    through) with that type's signedness, and its compile-time values (in this copy of the unrolled
    code)."""
    value = evaluate(expr)
    if value is not None:
        return Operand(max(1, value.bit_length() + (1 if value < 0 or is_signed(expr.type) else 0)),
                       value < 0 or is_signed(expr.type), (value,))  # fmt: skip
    c = expr
    bits = type_bits(c.type) or 64
    signed = is_signed(c.type)
    while True:
        kids = [k for k in c.get_children() if k.kind not in (K.TYPE_REF, K.TEMPLATE_REF, K.NAMESPACE_REF)]
        cast = c.kind in (K.UNEXPOSED_EXPR, K.PAREN_EXPR, K.CSTYLE_CAST_EXPR, K.CXX_FUNCTIONAL_CAST_EXPR,
                          K.CXX_STATIC_CAST_EXPR, K.CALL_EXPR)  # fmt: skip
        if not cast or len(kids) != 1:
            break
        if c.kind == K.CALL_EXPR and c.referenced is not None and c.referenced.kind != K.CONSTRUCTOR:
            break  # a function call: its result's width
        c = kids[0]
        w = type_bits(c.type)
        if w and not is_float(c.type) and w <= bits:
            bits, signed = w, is_signed(c.type)
    if c.kind == K.DECL_REF_EXPR and c.referenced is not None:
        values = dict(constants).get(c.referenced.get_usr())
        if values is not None:
            return Operand(bits, signed, values)
    return Operand(bits, signed)


def copy_invariant(var, ctx: Context) -> bool:
    """Whether variable `var` (a declaration) has one value across the copies the unrolled loops around
    `ctx` make: declared at namespace scope or static, in a function the path entered before the
    outermost unrolled loop, or in that loop's function outside the loop."""
    if ctx.unroll_depth is None or has_static_storage(var):
        return True
    fn = var.semantic_parent
    while fn is not None and fn.kind not in (K.FUNCTION_DECL, K.CXX_METHOD, K.FUNCTION_TEMPLATE):
        fn = fn.semantic_parent
    if fn is None:
        return True  # a field or a namespace-scope declaration
    depth = max((k + 1 for k, name in enumerate(ctx.path) if name == fn.spelling), default=None)
    if depth is None or depth > ctx.unroll_depth:
        return False
    if depth < ctx.unroll_depth:
        return True
    file, start, end = ctx.unroll_extent
    loc = var.extent.start
    return not ((loc.file.name if loc.file else "") == file and start <= loc.offset <= end)


def argument_of(param, bindings: tuple) -> tuple[object, tuple] | None:
    """(argument cursor, the caller's bindings) that a call's `bindings` (Context.bindings) give `param`."""
    key = _extent(param)
    for k, arg, outer in bindings:
        if k == key:
            return arg, outer
    return None
