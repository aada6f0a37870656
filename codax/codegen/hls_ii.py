"""Initiation intervals read from HLS sources: each pipelined loop's II from the port pressure of one
iteration on the memories it touches.

UG1399 "Pipelining Loops" / "Resolving Memory Port Limitations": a pipelined loop starts an iteration
every II cycles, and an iteration cannot make more accesses to one memory bank than the bank has
ports in those II cycles. So, for each loop a PIPELINE pragma pipelines (read by
codax.codegen.hls_reader, which follows the calls as inlined and counts the copies the unrolled loops
below it make), the II the sources allow is
    max over banks b of ceil(accesses(b) / ports(b)),
at least the pragma's II= target. Loop-carried dependences (a read of what the previous iteration
writes) can raise it further and are not analysed here.

What one iteration accesses: every subscript (a[i], a[i][j]; pointer subscripts too) in the loop body,
once per copy the unrolled loops around it make, with the unrolled loops' induction variables bound
to each copy's constant. Two reads of one address in the same iteration are one access (HLS shares
the load); every write counts. A subscript that assigns with op= (or ++ / --) reads and writes.

Which bank: the array's ARRAY_PARTITION / ARRAY_RESHAPE pragmas (as hls_resources reads them) split
dimensions into banks (cyclic: index mod F, block: index div ceil(n / F), complete: the index);
reshape widens the word instead (a `bram` port's too: its pragmas in the top whose parameter it is;
a decayed array parameter keeps the dimensions after its first); a namespace-scope array's pragmas
are those of the top that refers to it (as codax.codegen.hls_resources reads them). An access whose
index on a partitioned dimension is a compile-time constant in its copy goes to a known bank. One whose
index is a run-time value may go to any bank: HLS must assume the worst, so it is charged to the
busiest bank (VTA's idiom avoids this: one address of a reshaped array returns the whole vector a step
needs).

Ports per bank: a bank of one word (an array partitioned completely, or a scalar) is registers: no
limit; so is a local (non-static) array that the iteration indexes with constants only (HLS scalarises
it once the loops around are unrolled, as VTA's per-step tensors are). An array inside the sources: 2 (a
true dual-port block RAM or LUTRAM; BIND_STORAGE type=ram_1p makes it 1). A top's array argument on a
`bram` / `ap_memory` interface: 1 unless its INTERFACE or BIND_STORAGE pragma says ram_2p / ram_t2p /
ram_s2p (UG1399 "Port-Level I/O: Memory Interface Protocol": a single-port RAM interface by default). A
pointer (an m_axi port, or any pointer whose memory the sources do not name): reads and writes are
counted apart, one of each per cycle (an AXI read channel and a write channel), every subscript a
separate access.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from codax.codegen import hls_reader as R
from codax.codegen import hls_types as HT
from codax.codegen.hls_resources import declaring_pragmas, dimension_splits, names_variable

K = R.K
DUAL_PORT_TYPES = ("ram_2p", "ram_t2p", "ram_s2p")


@dataclass(frozen=True)
class MemoryPressure:
    """Accesses of one iteration to one memory."""

    memory: str
    ports: int | None  # per bank (None: registers, no limit)
    accesses: int  # distinct accesses in one iteration
    busiest_bank: int  # accesses to the busiest known bank
    unknown_bank: int  # accesses whose bank is a run-time value
    ii: int


@dataclass(frozen=True)
class LoopII:
    """A pipelined loop and the II its memory accesses allow."""

    top: str
    function: str
    file: str
    line: int
    label: str | None
    target: int  # the PIPELINE pragma's II= (1 when it gives none)
    ii: int  # max(target, max over memories of their II)
    limiting: str | None  # the memory that sets the II (None: the target does)
    memories: tuple[MemoryPressure, ...] = field(default=())

    def to_dict(self) -> dict:
        return {
            "top": self.top,
            "function": self.function,
            "file": self.file,
            "line": self.line,
            "label": self.label,
            "target": self.target,
            "ii": self.ii,
            "limiting": self.limiting,
            "memories": [m.__dict__ for m in self.memories],
        }


@dataclass(frozen=True)
class _Partition:
    dim: int  # 0-based
    kind: str  # cyclic | block | complete
    factor: int | None  # banks along the dimension (None: complete over an unknown extent)
    extent: int | None


@dataclass
class _Memory:
    name: str
    ports: int | None
    split_rw: bool  # a pointer: reads and writes on separate channels
    partitions: tuple[_Partition, ...]
    reshapes: tuple[_Partition, ...] = ()
    local: bool = False  # a non-static array declared in a function: registers when constant-indexed


def loop_iis(sources: R.Sources, tu, tops) -> list[LoopII]:
    """The II of every pipelined loop the synthesis tops reach (module docstring)."""
    out = []
    for top in tops:
        walker = R.Walker(sources, tu, top)
        loops: dict[tuple[str, int], R.Loop] = {}
        accesses: dict[tuple[str, int], list[R.Event]] = defaultdict(list)
        for ev in walker.events():
            if ev.kind == "loop" and ev.loop.pipeline and ev.ctx.pipeline is None:
                loops[(ev.loop.function, ev.loop.line)] = ev.loop
            elif ev.kind == "index" and ev.ctx.pipeline is not None:
                accesses[ev.ctx.pipeline].append(ev)
        for key, loop in loops.items():
            out.append(_loop_ii(walker, top, loop, accesses.get(key, [])))
    return out


def _loop_ii(walker: R.Walker, top: str, loop: R.Loop, events: list[R.Event]) -> LoopII:
    target = 1
    for p in loop.pragmas:
        if p.directive == "PIPELINE" and not R.is_off(p):
            target = R.pragma_int(walker.tu, p, "ii", 1) or 1
    memories: dict[str, _Memory] = {}
    reads: dict[str, set] = defaultdict(set)
    writes: dict[str, set] = defaultdict(set)
    for ev in events:
        mem, indices = _memory(walker, top, ev.cursor, ev.ctx.bindings, memories)
        for key, bank in _copies(ev, indices, mem):
            if ev.target in ("r", "rw"):
                reads[mem.name].add((key, bank))
            if ev.target in ("w", "rw"):
                writes[mem.name].add((key, bank))
    pressures = []
    for name, mem in memories.items():
        r, w = list(reads[name]), list(writes[name])
        if mem.split_rw:  # a read channel and a write channel, one access each per cycle
            ii = max(len(r), len(w))
            pressures.append(MemoryPressure(name, 1, len(r) + len(w), max(len(r), len(w)), 0, ii))
            continue
        both = r + w
        if mem.local and all(isinstance(k, tuple) and all(isinstance(v, int) for v in k) for k, _ in both):
            pressures.append(MemoryPressure(name, None, len(both), 0, 0, 1))  # scalarised: registers
            continue
        known = Counter(b for _, b in both if b is not None)
        unknown = sum(1 for _, b in both if b is None)
        busiest = max(known.values(), default=0)
        ii = 1 if mem.ports is None else math.ceil((busiest + unknown) / mem.ports)
        pressures.append(MemoryPressure(name, mem.ports, len(both), busiest, unknown, max(ii, 1)))
    worst = max(pressures, key=lambda m: m.ii, default=None)
    ii = max(target, worst.ii if worst else 1)
    limiting = worst.memory if worst is not None and worst.ii > target else None
    pressures.sort(key=lambda m: (-m.ii, m.memory))
    file = loop.file.rsplit("/", 1)[-1]
    return LoopII(top, loop.function, file, loop.line, loop.label, target, ii, limiting, tuple(pressures))


# ---- what a subscript reaches -------------------------------------------------------------------------
def _memory(walker: R.Walker, top: str, cursor, bindings: tuple, memories: dict) -> tuple[_Memory, list]:
    """The memory a subscript chain reads and its index cursors (each with the bindings it is read
    under), first dimension first. A parameter of a function the top calls is followed to the argument
    its call passes (the function is inlined: the argument's memory is the one accessed)."""
    indices = []
    c = cursor
    while c.kind == K.ARRAY_SUBSCRIPT_EXPR:
        base, index = list(c.get_children())[:2]
        indices.append((index, bindings))
        c = R.strip_casts(base)
    indices.reverse()
    decl = c.referenced if c.kind in (K.DECL_REF_EXPR, K.MEMBER_REF_EXPR) else None
    if decl is not None and decl.kind == K.PARM_DECL and c.kind == K.DECL_REF_EXPR:
        arg = R.argument_of(decl, bindings)
        if arg is not None:
            inner, outer = arg
            inner = R.strip_casts(inner)
            if inner.kind in (K.ARRAY_SUBSCRIPT_EXPR, K.DECL_REF_EXPR, K.MEMBER_REF_EXPR):
                mem, prefix = _memory(walker, top, inner, outer, memories)
                return mem, prefix + indices
    if decl is None:  # pointer arithmetic, a call's result: a memory the sources do not name
        name = _text(c) or "?"
        mem = _Memory(f"pointer {name}", 1, True, ())
        return memories.setdefault(mem.name, mem), indices
    owner = decl.semantic_parent.spelling if decl.kind == K.FIELD_DECL and decl.semantic_parent else ""
    name = f"{owner}::{decl.spelling}" if owner else decl.spelling
    if name in memories:
        return memories[name], indices
    t = decl.type.get_canonical()
    if decl.kind == K.PARM_DECL and _port_memory(walker, top, decl):
        dims = _port_dims(t)
        mem = _Memory(
            name,
            _port_ports(walker, decl),
            False,
            _partitions(walker, decl, len(indices), dims),
            _partitions(walker, decl, len(indices), dims, None, "ARRAY_RESHAPE"),
        )
    elif decl.kind == K.PARM_DECL or HT.is_pointer(t) or t.kind == HT.T.INCOMPLETEARRAY:
        mem = _Memory(f"pointer {name}", 1, True, ())
    else:
        dims, _ = HT.array_shape(t)
        pragmas = declaring_pragmas(walker, decl) if decl.kind == K.VAR_DECL else []
        if decl.kind == K.VAR_DECL and not pragmas and _namespace_scope(decl):
            # a namespace-scope array: its pragmas are in the top that refers to it (hls_resources)
            top_fn = R.find_function(walker.tu, top)
            pragmas = [p for p in walker.function_pragmas(top_fn) if names_variable(p, decl.spelling)]
        parts = _partitions(walker, decl, len(dims), dims, pragmas)
        reshapes = _partitions(walker, decl, len(dims), dims, pragmas, "ARRAY_RESHAPE")
        ports = 2
        for p in pragmas:
            if p.directive == "BIND_STORAGE" and (p.get("type") or "").lower() == "ram_1p":
                ports = 1
        banked_depth = math.prod(d for i, d in enumerate(dims) if not any(q.dim == i for q in parts))
        whole = all(q.kind == "complete" or (q.factor and q.extent and q.factor >= q.extent) for q in parts)
        if not dims or (whole and banked_depth <= 1):
            ports = None  # one word per bank: registers
        local = decl.kind == K.VAR_DECL and not R.has_static_storage(decl)
        mem = _Memory(name, ports, False, parts, reshapes, local)
    memories[mem.name] = mem
    return mem, indices


def _port_dims(t) -> tuple:
    """The dimensions of a memory port's array type: a C array parameter decays to a pointer to its rows,
    whose first dimension the type no longer gives (0: unknown)."""
    if t.kind == HT.T.CONSTANTARRAY:
        return tuple(HT.array_shape(t)[0])
    if t.kind == HT.T.POINTER:
        inner = t.get_pointee().get_canonical()
        return (0, *(HT.array_shape(inner)[0] if inner.kind == HT.T.CONSTANTARRAY else ()))
    return ()


def _namespace_scope(decl) -> bool:
    parent = decl.semantic_parent
    return parent is not None and parent.kind in (K.TRANSLATION_UNIT, K.NAMESPACE)


def _port_memory(walker: R.Walker, top: str, decl) -> bool:
    """Whether a parameter of `top` is a memory port (a `bram` / `ap_memory` interface)."""
    fn = R.find_function(walker.tu, top)
    for p in walker.function_pragmas(fn):
        if p.directive == "INTERFACE" and (p.get("port") or "") == decl.spelling:
            return R.interface_mode(p) in ("bram", "ap_memory")
    return False


def _port_ports(walker: R.Walker, decl) -> int:
    fn = decl.semantic_parent
    for p in walker.function_pragmas(fn):
        if (
            p.directive in ("INTERFACE", "BIND_STORAGE")
            and (p.get("port") or p.get("variable")) == decl.spelling
        ):
            if (p.get("storage_type") or p.get("type") or "").lower() in DUAL_PORT_TYPES:
                return 2
    return 1


def _partitions(
    walker: R.Walker, decl, rank: int, dims: tuple, pragmas=None, directive: str = "ARRAY_PARTITION"
) -> tuple[_Partition, ...]:
    """The dimensions `directive` (ARRAY_PARTITION: into banks; ARRAY_RESHAPE: into wider words) splits."""
    if pragmas is None:
        fn = decl.semantic_parent
        pragmas = [p for p in walker.function_pragmas(fn) if (p.get("variable") or "") == decl.spelling]
    out = []
    for x in dimension_splits(walker.tu, pragmas, rank):
        if x.directive == directive:
            extent = dims[x.dim] if x.dim < len(dims) else None
            out.append(_Partition(x.dim, x.kind, extent if x.factor is None else x.factor, extent))
    return tuple(out)


# ---- the copies of one subscript ----------------------------------------------------------------------
def _copies(ev: R.Event, indices: list, mem: _Memory):
    """(address key, bank or None) of each copy of the subscript the unrolled loops make; `indices`
    (cursor, bindings) per dimension."""
    bound = dict(ev.ctx.constants)
    used = sorted({d.get_usr() for ix in indices for d in _refs(*ix)} & set(bound))
    combos = list(itertools.product(*(bound[u] for u in used))) or [()]
    per = max(1, ev.ctx.copies // len(combos))
    out = []
    for combo in combos:
        env = dict(zip(used, combo))
        values = [_value(c, env, b) for c, b in indices]
        words = _words(mem, values)
        bank = _bank(mem, values, indices, env)
        if all(v is not None for v in words):
            # one access per word: copies that differ only in loops the subscript does not use, and
            # the lanes of one reshaped word, read (or write) the same word
            out.append((tuple(words), bank))
            continue
        # a run-time address: the same for every copy when the variables it reads are copy-invariant
        # (declared outside the unrolled loops), else one address per copy (an inlined function's
        # locals take each copy's values)
        unknown = [ix for ix, w in zip(indices, words) if w is None]
        free = {d.get_usr() for ix in unknown for d in _refs(*ix)}
        key = (
            tuple(w if w is not None else _text(ix[0]) for w, ix in zip(words, indices)),
            tuple(sorted((u, v) for u, v in env.items() if u in free)),
        )
        if all(R.copy_invariant(d, ev.ctx) for ix in unknown for d in _refs(*ix)):
            out.append((key, bank))
        else:
            out.extend(((key, _where(ev.cursor), k), bank) for k in range(per))
    return out


def _where(c) -> tuple:
    loc = c.location
    return (loc.file.name if loc.file else "", loc.line, loc.column)


def _words(mem: _Memory, values: list) -> list:
    """The index of the word each dimension addresses once ARRAY_RESHAPE has packed it (UG1399: cyclic
    packs F consecutive elements into one word, block the elements one block apart, complete all)."""
    out = list(values)
    for q in mem.reshapes:
        v = out[q.dim] if q.dim < len(out) else None
        if q.kind == "complete":
            out[q.dim] = 0
        elif v is not None and q.factor:
            out[q.dim] = (
                v // q.factor if q.kind == "cyclic" else v % math.ceil((q.extent or q.factor) / q.factor)
            )
    return out


def _bank(mem: _Memory, values: list, indices: list, env: dict) -> tuple | None:
    if not mem.partitions:
        return ()
    bank = []
    for q in mem.partitions:
        v = values[q.dim] if q.dim < len(values) else None
        if v is None and q.kind == "cyclic" and q.factor and q.dim < len(indices):
            v = _mod(*indices[q.dim], env, q.factor)  # e.g. a[i * F + k]: bank k whatever i is
        if v is None or q.factor is None:
            return None
        if q.kind == "cyclic":
            bank.append(v % q.factor)
        elif q.kind == "block":
            bank.append(v // math.ceil((q.extent or q.factor) / q.factor))
        else:
            bank.append(v)
    return tuple(bank)


def _text(c) -> str:
    return "".join(t.spelling for t in c.get_tokens())


def _refs(c, bindings: tuple) -> list:
    """The variables (declarations) an expression reads, a parameter followed to its call's argument."""
    out = []
    for k in c.walk_preorder():
        d = k.referenced if k.kind == K.DECL_REF_EXPR else None
        if d is None or d.kind not in (K.VAR_DECL, K.PARM_DECL):
            continue
        arg = R.argument_of(d, bindings) if d.kind == K.PARM_DECL else None
        out.extend(_refs(*arg) if arg is not None else [d])
    return out


_OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: int(a / b) if b else None,
    "%": lambda a, b: a - b * int(a / b) if b else None,
    "<<": lambda a, b: a << b,
    ">>": lambda a, b: a >> b,
    "&": lambda a, b: a & b,
    "|": lambda a, b: a | b,
}
_CASTS = (K.CSTYLE_CAST_EXPR, K.CXX_FUNCTIONAL_CAST_EXPR, K.CXX_STATIC_CAST_EXPR)


def _value(c, env: dict, bindings: tuple) -> int | None:
    """The integer value of an index expression with the unrolled loops' variables bound (`env`: USR ->
    value) and parameters followed to their arguments; None when it depends on a run-time value."""
    c = R.strip_casts(c)
    const = R.evaluate(c)
    if const is not None:
        return const
    kind = c.kind
    if kind in _CASTS:
        return _value(list(c.get_children())[-1], env, bindings)
    if kind == K.DECL_REF_EXPR and c.referenced is not None:
        d = c.referenced
        arg = R.argument_of(d, bindings) if d.kind == K.PARM_DECL else None
        return _value(arg[0], env, arg[1]) if arg is not None else env.get(d.get_usr())
    if kind == K.BINARY_OPERATOR:
        a, b = list(c.get_children())
        fa, fb = _value(a, env, bindings), _value(b, env, bindings)
        op = _OPS.get(R.binary_op(c))
        return op(fa, fb) if op is not None and fa is not None and fb is not None else None
    return None


def _mod(c, bindings: tuple, env: dict, m: int) -> int | None:
    """The expression's value modulo m where only that is known: sums and products of known residues,
    a product with a factor that is 0 modulo m is 0 whatever the other factor is."""
    v = _value(c, env, bindings)
    if v is not None:
        return v % m
    c = R.strip_casts(c)
    if c.kind in _CASTS:
        return _mod(list(c.get_children())[-1], bindings, env, m)
    if c.kind == K.DECL_REF_EXPR and c.referenced is not None and c.referenced.kind == K.PARM_DECL:
        arg = R.argument_of(c.referenced, bindings)
        return _mod(arg[0], arg[1], env, m) if arg is not None else None
    if c.kind != K.BINARY_OPERATOR:
        return None
    op = R.binary_op(c)
    a, b = list(c.get_children())
    ra, rb = _mod(a, bindings, env, m), _mod(b, bindings, env, m)
    if op == "*":
        if ra == 0 or rb == 0:
            return 0
        return ra * rb % m if ra is not None and rb is not None else None
    if op in ("+", "-") and ra is not None and rb is not None:
        return (ra + rb if op == "+" else ra - rb) % m
    if op == "<<":
        shift = _value(b, env, bindings)
        if shift is not None and (1 << shift) % m == 0:
            return 0
        return ra * (1 << shift) % m if ra is not None and shift is not None else None
    return None


def summary(iis: list[LoopII]) -> dict:
    """The largest II over the loops, and the loops above their target."""
    worst = max(iis, key=lambda x: x.ii, default=None)
    return {
        "max_ii": worst.ii if worst else None,
        "loops": len(iis),
        "loops_above_target": sum(1 for x in iis if x.ii > x.target),
        "worst": worst.to_dict() if worst else None,
    }
