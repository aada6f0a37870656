"""Resources read from HLS sources: BRAM18 from every array the synthesis tops hold,
DSPs from the multiply sites they instantiate, FIFOs from the streams they declare.

The sources are read by codax.codegen.hls_reader in the synthesis view. Per engine (a group of tops
that share their memories), the arrays are:
- port memories: a top's array (or struct) parameter on a `bram` / `ap_memory` interface (as its
  INTERFACE pragma says: the generated sources declare every port's) is a port onto a memory outside
  it; the memory is the declaration the C-simulation driver binds to that
  parameter (read in the simulation view: the engine's namespace-scope buffers, or a field of the
  driver's state such as the tiles' headers), one per engine however many tops have a port on it;
- system memories (a system description given: `system`): a top's array parameter on a `bram`
  interface is its port onto a buffer the system unit declares at namespace scope and passes to it (its
  calls of the tops, the block design); the buffer is counted once, with the system's own ARRAY_RESHAPE
  / ARRAY_PARTITION / BIND_STORAGE pragmas (those of the functions it defines: the storage it binds,
  simple dual-port where it says ram_s2p), and no top holds block RAM for its ports (a port the system
  binds to no buffer of its own is not counted); a top whose port layout differs is flagged (`note`);
- static state: a variable of static storage a top reaches (namespace scope or `static`), one copy per
  top that reaches it (each top is synthesized on its own, so each gets its own copy);
- locals: an array declared in a function a top reaches, one copy per inlined call and per copy of
  the unrolled loops around it.
A struct-typed memory is read field by field (each array field its own memory), whatever the
AGGREGATE / DISAGGREGATE pragmas say: neither is read (the generated sources write neither). UG1399's
defaults differ: a struct on a top's interface is aggregated into one packed word per element, and an
array of structs inside a top is kept as one memory of packed words -- both change the word width and
so the BRAM18 figure of such memories. Scalars are registers and not listed.

Rules (UG1399 "Arrays" / "ARRAY_PARTITION" / "ARRAY_RESHAPE" / "BIND_STORAGE" / "BIND_OP"; UG473
7 Series block RAM, UG573 UltraScale block RAM: the same RAMB18 shapes; UG479 / UG579 DSP48E1 / E2):
- element width: the C type's bits (bool one bit, ap_int<N> / ap_uint<N> N bits, a struct the sum of
  its fields, packed), times the reshape factor;
- ARRAY_PARTITION type=cyclic|block factor=F dim=D splits dimension D into F banks (complete: one
  bank per element of D; dim=0: every dimension); ARRAY_RESHAPE packs F elements (or all of D) into
  one wider word instead; a pragma names the variable it applies to (`variable=`), in the function
  that declares it (the innermost scope's variable of that name), in the top whose port it is, or in
  any function that refers to a namespace-scope array; `off=true` switches it off; a factor or dim
  given by name is evaluated by clang (a const variable, an enumerator, a macro), else HlsReadError;
  tops that partition one shared memory differently are flagged (`note`) and the first top's layout
  counted;
- storage of one bank: BIND_STORAGE impl=... when the sources give one; else a register when the bank
  holds one word, LUTRAM when it holds at most 1 Kbit (the cost model's threshold,
  codax.hw.resources.LUTRAM_MAX_BITS: Vivado's ram_style=auto makes its own choice), else block RAM;
  an array of pointers is no memory (storage `pointer`, not counted); a URAM bank takes URAM288s of
  4K x 72 (UG573), totalled apart (`uram`);
- BRAM18 of one block-RAM bank of W-bit words and depth D: the fewest blocks over the RAMB18 aspect
  ratios of its port mode, ceil(W / width) x ceil(D / depth): true dual-port (two read/write ports, and
  single-port) 16K x 1, 8K x 2, 4K x 4, 2K x 9, 1K x 18; simple dual-port (one write-only and one
  read-only port) also 512 x 36. A port memory is true dual-port (each top's `bram` port reads and
  writes it, beside the driver's); an array inside a top is read as true dual-port too unless
  BIND_STORAGE type=ram_s2p says otherwise (its accesses are not analysed: an upper bound where HLS
  would choose simple dual-port);
- DSPs: a multiply site is one multiplier per copy the unrolled loops around it make (a PIPELINE
  pragma on a loop or a function unrolls the loops below it). An integer a x b multiply (the narrowest
  width each operand passes through, with that type's signedness) is split over the signed multiplier
  ports, A = 25 bits on a DSP48E1 and 27 on a DSP48E2, B = 18: an unsigned operand takes one bit more
  (two's complement), and a wider one is cut into a signed top piece and unsigned lower pieces of A - 1
  (B - 1) bits; one DSP per pair of pieces whose weight is below the product's width (an int x int
  keeping 32 bits builds no high x high partial product: 3 DSP48s), over the cheaper orientation. A
  constant factor costs nothing when it is 0 or +-2^k (a shift); any other constant -- an unrolled
  loop's index takes one value per copy -- is a multiply at the constant's two's-complement width.
  BIND_OP op=mul impl=fabric makes a site's multiplies LUTs (no DSP), impl=dsp as the rule; without a
  BIND_OP (nor a config_op, which the generated configurations do not set) HLS's `auto` choice is
  assumed to put every multiply in DSPs (HLS may put small or constant ones in fabric: an upper bound).
  A float multiply takes 3 DSPs (fp32; 11 fp64), a float add 2 (fp32; 3 fp64), as the Floating-Point
  Operator's full-DSP cores use. No packing of two multiplies into one DSP is counted: the sources
  write none. ASIC targets have no DSP figure (dsp_kind None): the sites are listed without one;
- FIFOs: an hls::stream declared in the sources is a FIFO of its STREAM pragma's depth (default 2;
  a depth given by name evaluated by clang); a stream parameter of a top (an axis interface) is a
  FIFO outside it, whose depth the sources do not declare: listed with depth None and no storage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codax.codegen import hls_reader as R
from codax.codegen import hls_types as HT
from codax.hw.resources import LUTRAM_MAX_BITS

# RAMB18 aspect ratios (depth, width): true dual-port (and single-port) mode up to 1K x 18, simple
# dual-port mode (one write-only and one read-only port) also 512 x 36 (UG473 for 7-series, UG573 for
# UltraScale: the same shapes)
RAMB18_TDP_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18))
RAMB18_SDP_SHAPES = (*RAMB18_TDP_SHAPES, (512, 36))
SIMPLE_DUAL_PORT = ("ram_s2p",)  # the BIND_STORAGE types that are simple dual-port
DSP_A_PORT = {"dsp48e1": 25, "dsp48e2": 27}  # the multiplier's signed input ports (UG479 / UG579)
DSP_B_PORT = 18
FLOAT_DSP = {("mul", 32): 3, ("mul", 64): 11, ("add", 32): 2, ("add", 64): 3}
STREAM_DEFAULT_DEPTH = 2
MEMORY_INTERFACES = ("bram", "ap_memory")
LAYOUT_DIRECTIVES = ("ARRAY_PARTITION", "ARRAY_RESHAPE", "BIND_STORAGE")


def bram18_per_bank(bits: int, depth: int, simple_dual_port: bool = False) -> int:
    """Block RAM18s for one bank of `depth` words of `bits` bits: the fewest over the RAMB18 shapes of
    its port mode (512 x 36 only in simple dual-port mode)."""
    if bits <= 0 or depth <= 0:
        return 0
    shapes = RAMB18_SDP_SHAPES if simple_dual_port else RAMB18_TDP_SHAPES
    return min(math.ceil(bits / w) * math.ceil(depth / d) for d, w in shapes)


def uram_per_bank(bits: int, depth: int) -> int:
    """URAM288 blocks for one bank: 4K x 72 each (UG573), side by side and stacked."""
    if bits <= 0 or depth <= 0:
        return 0
    return math.ceil(bits / 72) * math.ceil(depth / 4096)


def _pieces(bits: int, port: int) -> list[int]:
    """The offsets of the pieces a two's-complement operand of `bits` bits is split into for a signed
    `port`-bit multiplier input: the top piece signed (up to `port` bits), each lower one unsigned
    (`port` - 1 bits)."""
    offsets = [0]
    while bits - offsets[-1] > port:
        offsets.append(offsets[-1] + port - 1)
    return offsets


def dsp_per_multiply(
    a_bits: int,
    b_bits: int,
    dsp_kind: str,
    a_signed: bool = True,
    b_signed: bool = True,
    result_bits: int | None = None,
) -> int:
    """DSPs of one a x b integer multiplier on `dsp_kind` (see the module docstring): each operand as
    two's complement (an unsigned one a bit wider), split into pieces for the A and B ports, one DSP per
    partial product whose weight is below the result's width; the cheaper of the two orientations."""
    if dsp_kind not in DSP_A_PORT:
        raise ValueError(f"unknown DSP kind {dsp_kind!r}: expected one of {', '.join(DSP_A_PORT)}")
    a = a_bits + (0 if a_signed else 1)
    b = b_bits + (0 if b_signed else 1)
    if result_bits:  # bits above the result's width do not reach it
        a, b = min(a, result_bits), min(b, result_bits)
    limit = result_bits or a + b
    best = None
    for x, y in ((a, b), (b, a)):
        n = sum(
            1 for oa in _pieces(x, DSP_A_PORT[dsp_kind]) for ob in _pieces(y, DSP_B_PORT) if oa + ob < limit
        )
        best = n if best is None else min(best, n)
    return best


def free_constant(value: int) -> bool:
    """A constant factor that costs no multiplier: 0, or +-2^k (1 included): a shift (and a negation)."""
    v = abs(value)
    return v == 0 or v & (v - 1) == 0


@dataclass
class ArrayEntry:
    name: str
    element_bits: int  # one element of the C array
    depth: int  # elements of one instance, all dimensions
    banks: int  # physical memories per instance after partitioning
    bank_bits: int  # the word of one bank (element bits x reshape factor)
    bank_depth: int
    instances: int
    storage: str  # bram | lutram | register | uram | pointer (not a memory HLS builds) | ...
    bram18: int  # all instances and banks
    kind: str  # port memory | system memory | static | local
    declared_at: str
    tops: list[str] = field(default_factory=list)
    ram_mode: str = "true dual-port"  # or "simple dual-port" (BIND_STORAGE type=ram_s2p)
    note: str = ""  # e.g. tops that partition one memory differently
    uram: int = 0  # URAM288 blocks (BIND_STORAGE impl=uram), all instances and banks


@dataclass
class MultiplySite:
    function: str
    line: int
    file: str
    op: str  # "int mul", "float mul" or "float add"
    operand_bits: list[int]
    copies: int  # multipliers instantiated, over all tops (constant factors that are shifts not counted)
    dsp: int | None  # None: no DSP figure (an ASIC target)
    signed: list[bool] = field(default_factory=list)
    result_bits: int | None = None
    impl: str = "auto"  # BIND_OP impl= of the site (auto: every multiply a DSP multiplier)


@dataclass
class Fifo:
    name: str
    element_bits: int
    count: int
    depth: int | None
    tops: list[str]


@dataclass
class SourceResources:
    arrays: list[ArrayEntry]
    multipliers: list[MultiplySite]
    fifos: list[Fifo]
    dsp_kind: str | None  # None: no DSP figure (an ASIC target)

    @property
    def bram18(self) -> int:
        return sum(a.bram18 for a in self.arrays)

    @property
    def uram(self) -> int:
        return sum(a.uram for a in self.arrays)

    @property
    def dsp(self) -> int | None:
        if self.dsp_kind is None:
            return None
        return sum(m.dsp for m in self.multipliers)

    @classmethod
    def from_dict(cls, d: dict) -> SourceResources:
        return cls(
            [ArrayEntry(**a) for a in d["arrays"]],
            [MultiplySite(**m) for m in d["multipliers"]],
            [Fifo(**f) for f in d["fifos"]],
            d["dsp_kind"],
        )

    def to_dict(self) -> dict:
        return {
            "bram18": self.bram18,
            "uram": self.uram,
            "dsp": self.dsp,
            "dsp_kind": self.dsp_kind,
            "arrays": [asdict(a) for a in self.arrays],
            "multipliers": [asdict(m) for m in self.multipliers],
            "fifos": [asdict(f) for f in self.fifos],
        }


# ---- arrays ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    banks: int
    bank_bits: int
    bank_depth: int
    impl: str | None  # BIND_STORAGE impl=, None when the sources give none
    ram_type: str | None  # BIND_STORAGE type= (ram_1p, ram_2p, ram_t2p, ram_s2p, ...)


@dataclass(frozen=True)
class DimSplit:
    """One dimension an ARRAY_PARTITION (into banks) or ARRAY_RESHAPE (into wider words) pragma splits."""

    directive: str
    kind: str  # cyclic | block | complete
    dim: int  # 0-based
    factor: int | None  # None: complete (the whole dimension)
    pragma: R.Pragma


def dimension_splits(tu, pragmas: list[R.Pragma], rank: int) -> list[DimSplit]:
    """The dimensions of a rank-`rank` array each ARRAY_PARTITION / ARRAY_RESHAPE pragma splits, in the
    pragmas' order (a pragma switched off -- off=true -- ignored; dim=0: every dimension; a factor or
    dim given by name evaluated by clang)."""
    out = []
    for p in pragmas:
        if R.is_off(p) or p.directive not in ("ARRAY_PARTITION", "ARRAY_RESHAPE"):
            continue
        kind = p.get("type") or next((f for f in p.flags if f in ("cyclic", "block", "complete")), "complete")
        dim = R.pragma_int(tu, p, "dim", 1)
        factor = None if kind == "complete" else R.pragma_int(tu, p, "factor", 1)
        out.extend(
            DimSplit(p.directive, kind, d, factor, p) for d in (range(rank) if dim == 0 else [dim - 1])
        )
    return [x for x in out if x.dim < rank]


def _layout(tu, dims: tuple[int, ...], bits: int, pragmas: list[R.Pragma]) -> _Layout:
    """The banks, bank word and depth and storage of an array under its pragmas (a pragma switched off
    -- off=true -- ignored; a factor or dim given by name evaluated by clang)."""
    dims = list(dims) or [1]
    banks, width, impl, ram_type = 1, bits, None, None
    for p in pragmas:
        if p.directive == "BIND_STORAGE" and not R.is_off(p):
            impl = (p.get("impl") or "").lower() or None
            ram_type = (p.get("type") or "").lower() or None
    for x in dimension_splits(tu, pragmas, len(dims)):
        f = dims[x.dim] if x.factor is None else min(x.factor, dims[x.dim])
        if f <= 0:
            raise R.HlsReadError(
                f"{Path(x.pragma.file).name}:{x.pragma.line}: {x.directive} factor {f}: not a bank count"
            )
        if x.directive == "ARRAY_PARTITION":
            banks *= f
        else:
            width *= f
        dims[x.dim] = math.ceil(dims[x.dim] / f)
    return _Layout(banks, width, math.prod(dims), impl, ram_type)


def _storage(bank_bits: int, bank_depth: int, impl: str | None) -> str:
    if impl in ("block", "bram18", "bram36"):
        return "bram"
    if impl in ("distributed", "lut"):
        return "lutram"
    if impl and impl != "auto":
        return impl  # BIND_STORAGE impl=bram | lutram | uram | srl | register
    if bank_depth <= 1:
        return "register"
    return "lutram" if bank_bits * bank_depth <= LUTRAM_MAX_BITS else "bram"


def _entries(tu, name, t, pragmas, instances, kind, declared_at, tops, note="") -> list[ArrayEntry]:
    """The array entries of one declared object of type `t` (itself, or its array fields)."""
    out = []
    for path in HT.contains(
        t, lambda u: u.kind == HT.T.CONSTANTARRAY and not HT.is_stream(HT.array_shape(u)[1])
    ):
        sub = _at(t, path)
        dims, elem = HT.array_shape(sub)
        bits = HT.type_bits(elem)
        field_path = path.replace("[]", "").lstrip(".")  # `variable=x.f` names field f of x
        own = [p for p in pragmas if (p.get("variable") or "").partition(".")[2] == field_path]
        lay = _layout(tu, dims, bits, own)
        if HT.is_pointer(elem):  # an array of pointers: no memory HLS builds (UG1399 "Pointer Limitations")
            storage = "pointer"
        else:
            storage = _storage(lay.bank_bits, lay.bank_depth, lay.impl)
        # a port memory is shared with the driver and read and written through each top's port: true
        # dual-port; an array inside a top the same unless BIND_STORAGE makes it simple dual-port
        sdp = kind != "port memory" and lay.ram_type in SIMPLE_DUAL_PORT
        per_bank = bram18_per_bank(lay.bank_bits, lay.bank_depth, sdp) if storage == "bram" else 0
        uram = (
            uram_per_bank(lay.bank_bits, lay.bank_depth) * lay.banks * instances if storage == "uram" else 0
        )
        out.append(
            ArrayEntry(name + path.replace("[]", "[*]"), bits, math.prod(dims), lay.banks, lay.bank_bits,
                       lay.bank_depth, instances, storage, per_bank * lay.banks * instances, kind,
                       declared_at, sorted(tops), "simple dual-port" if sdp else "true dual-port", note, uram)
        )  # fmt: skip
    return out


def _at(t, path: str):
    """The type at `path` (".field[]..." as contains() writes it) inside type `t`."""
    t = t.get_canonical()
    i = 0
    while i < len(path):
        if path.startswith("[]", i):
            t = t.element_type.get_canonical()
            i += 2
        else:
            j = i + 1
            while j < len(path) and path[j] not in ".[":
                j += 1
            name = path[i + 1 : j]
            t = next(f.type for f in t.get_fields() if f.spelling == name).get_canonical()
            i = j
    return t


def _where(cursor) -> str:
    loc = cursor.location
    return f"{loc.file.name.rsplit('/include/', 1)[-1].rsplit('/', 1)[-1] if loc.file else '?'}:{loc.line}"


def driver_bindings(sources: R.Sources, unit: str, tops: Sequence[str]) -> dict[tuple[str, int], object]:
    """(top, parameter index) -> the declaration C-simulation's driver passes to it (a namespace-scope
    variable or a field of the driver's state), read from the calls of each top in the simulation view."""
    tu = sources.unit(unit, R.SIMULATION_VIEW)
    wanted = set(tops)
    out = {}
    for decl in R.declarations(tu):
        for c in decl.walk_preorder():
            if c.kind != R.K.CALL_EXPR or c.spelling not in wanted:
                continue
            for i, a in enumerate(c.get_arguments()):
                s = R.strip_casts(a)
                ref = s.referenced
                if s.kind in (R.K.DECL_REF_EXPR, R.K.MEMBER_REF_EXPR) and ref is not None:
                    out[(c.spelling, i)] = ref
    return out


@dataclass
class _Memory:
    """One memory the tops hold, before it is split into its array entries."""

    name: str
    type: object  # the declared clang type
    kind: str  # port memory | static | local
    at: str
    pragmas: dict = field(default_factory=dict)  # top -> the pragmas that top (or its callees) gives it
    instances: int = 0
    tops: set = field(default_factory=set)
    system: list | None = None  # a system memory: the system description's pragmas for it

    def add(self, top: str, pragmas) -> None:
        own = self.pragmas.setdefault(top, [])
        for p in pragmas:
            if p not in own:
                own.append(p)


class _Reading:
    """What the walks of the tops find: memories by identity, multiply sites, FIFOs."""

    def __init__(self, sources: R.Sources, tu, bound: dict, dsp_kind: str | None, system=None):
        self.sources, self.tu, self.bound, self.dsp_kind = sources, tu, bound, dsp_kind
        self.system = system  # the system description's translation unit (None: no system)
        self.system_pragmas = _definition_pragmas(system) if system is not None else []
        self.memories: dict[str, _Memory] = {}
        self.muls: dict[tuple, MultiplySite] = {}
        self.fifos: dict[str, Fifo] = {}

    def memory(self, key: str, **kw) -> _Memory:
        return self.memories.setdefault(key, _Memory(**kw))

    def fifo(self, key: str, t, count: int, depth: int | None, top: str) -> None:
        f = self.fifos.setdefault(key, Fifo(key, HT.type_bits(HT.stream_element(t)), count, depth, []))
        f.tops.append(top)

    def top(self, engine: str, walker: R.Walker) -> None:
        top = walker.top
        pragmas = walker.function_pragmas(walker.fn)
        interfaces = {p.get("port"): p for p in pragmas if p.directive == "INTERFACE" and p.get("port")}
        params = [c for c in walker.fn.get_children() if c.kind == R.K.PARM_DECL]
        seen: set[str] = set()  # static variables already counted for this top
        for ev in walker.events():
            c = ev.cursor
            if ev.kind == "decl" and c.kind == R.K.PARM_DECL and ev.ctx.path == (top,):
                self._port(engine, top, params.index(c), c, interfaces.get(c.spelling), pragmas)
            elif ev.kind == "decl" and c.kind == R.K.VAR_DECL:
                self._variable(walker, ev, seen)
            elif ev.kind == "ref" and R.has_static_storage(ev.callee):
                self._static_ref(top, ev.callee, pragmas, ev.pragmas, seen)
            elif ev.kind in ("mul", "fadd"):
                _site(self.muls, ev, self.dsp_kind)

    def _port(self, engine, top, index, param, interface, pragmas) -> None:
        target = self.bound.get((top, index))
        key = _identity(engine, top, param, target)
        stream = _stream_type(param.type)
        if stream is not None:  # an axis port: a FIFO outside the top, its depth not in the sources
            self.fifo(key, stream, _count(param.type), None, top)
            return
        if interface is None or R.interface_mode(interface) not in MEMORY_INTERFACES:
            return
        own = [p for p in pragmas if names_variable(p, param.spelling)]
        if self.system is not None:
            # a system: a port is the IP's view of a buffer the system declares -- counted once, as the
            # system declares and binds it, however many IPs have ports on it; a port the system binds
            # to no buffer of its own (a parameter passed on) is no block RAM of the IP either
            if target is None or not R.has_static_storage(target) or not self.sources.is_generated(target):
                return
            name = R.qualified_name(target)
            m = self.memory(name, name=name, type=target.type, kind="system memory", at=_where(target),
                            instances=1)  # fmt: skip
            m.tops.add(top)
            m.add(top, own)
            m.system = [p for p in self.system_pragmas if names_variable(p, target.spelling)]
            return
        decl = target if target is not None else param
        m = self.memory(key, name=key, type=decl.type, kind="port memory", at=_where(decl), instances=1)
        m.tops.add(top)
        m.add(top, own)

    def _variable(self, walker: R.Walker, ev: R.Event, seen: set[str]) -> None:
        var, top = ev.cursor, walker.top
        name = R.qualified_name(var)
        stream = _stream_type(var.type)
        if stream is not None:
            self.fifo(f"{top}/{name}", stream, _count(var.type), _stream_depth(walker, var), top)
            return
        static = R.has_static_storage(var)
        key = name if static else f"{name}@{_where(var)}"
        if static and key in seen:
            return
        if static:
            seen.add(key)
        m = self.memory(key, name=name, type=var.type, at=_where(var), kind="static" if static else "local")
        m.add(top, declaring_pragmas(walker, var))
        m.instances += 1 if static else ev.ctx.copies
        m.tops.add(top)

    def _static_ref(self, top: str, var, top_pragmas, scope_pragmas, seen: set[str]) -> None:
        parent = var.semantic_parent
        name = R.qualified_name(var)
        if parent is not None and parent.kind in (R.K.FUNCTION_DECL, R.K.CXX_METHOD, R.K.FUNCTION_TEMPLATE):
            return  # a static local: counted at its declaration
        if not self.sources.is_generated(var):
            return
        if any(R.same(var, b) for b in self.bound.values()):
            return  # a port memory's storage, counted as the port
        # namespace scope or a static data member: the top's pragmas and those of the function that
        # refers to it (a callee's ARRAY_PARTITION on a global applies to it as well)
        own = [p for p in (*top_pragmas, *scope_pragmas) if names_variable(p, var.spelling)]
        m = self.memory(name, name=name, type=var.type, kind="static", at=_where(var))
        m.add(top, own)
        if name in seen:
            return
        seen.add(name)
        m.instances += 1
        m.tops.add(top)

    def result(self) -> SourceResources:
        arrays = []
        for m in self.memories.values():
            layouts = {t: _signature(ps) for t, ps in sorted(m.pragmas.items())}
            first = next(iter(sorted(m.pragmas)), None)
            note = ""
            if len(set(layouts.values())) > 1:  # each top synthesizes its own view of a shared memory
                note = (
                    "inconsistent: the tops " + ", ".join(layouts) + " partition it differently; "
                    f"{first}'s layout counted"
                )
            pragmas = m.pragmas.get(first, []) if m.kind == "port memory" else _union(m.pragmas.values())
            if m.kind == "system memory":
                # the storage the system binds; the IPs' port pragmas must agree with its layout
                pragmas = m.system or []
                system_layout = _signature(p for p in pragmas if p.directive != "BIND_STORAGE")
                ports = {t: _signature(p for p in ps if p.directive != "BIND_STORAGE")
                         for t, ps in sorted(m.pragmas.items())}  # fmt: skip
                odd = [t for t, sig in ports.items() if sig != system_layout]
                note = f"inconsistent: the ports of {', '.join(odd)} reshape it otherwise" if odd else ""
            arrays += _entries(self.tu, m.name, m.type, pragmas, m.instances, m.kind, m.at, m.tops, note)
        arrays.sort(key=lambda a: (-a.bram18, a.name))
        sites = sorted(self.muls.values(), key=lambda s: (-(s.dsp or 0), -s.copies, s.function, s.line))
        return SourceResources(arrays, sites, list(self.fifos.values()), self.dsp_kind)


def _signature(pragmas) -> frozenset:
    return frozenset(
        (p.directive, p.flags, p.options)
        for p in pragmas
        if p.directive in LAYOUT_DIRECTIVES and not R.is_off(p)
    )


def _union(groups) -> list:
    out = []
    for ps in groups:
        out += [p for p in ps if p not in out]
    return out


def read_resources(
    files: Mapping[str, str],
    tops: Mapping[str, Sequence[str]],
    dsp_kind: str | None,
    unit: str = "engine.cpp",
    system: str | None = None,
) -> SourceResources:
    """Resources of the sources {relative path: text} whose synthesis tops are `tops` ({engine: [top
    function names]}), under the rules of the module docstring; `dsp_kind` None: no DSP figure (the
    multiply sites listed all the same); `system`: the unit of the system description that declares
    the buffers the tops' `bram` ports reach and wires them (each counted once, as it declares it).
    Raises HlsReadError when the sources cannot be read."""
    if dsp_kind is not None and dsp_kind not in DSP_A_PORT:
        raise ValueError(f"unknown DSP kind {dsp_kind!r}: expected one of {', '.join(DSP_A_PORT)}")
    sources = R.parse(dict(files), (unit, system) if system else (unit,))
    tu = sources.unit(unit, R.SYNTHESIS_VIEW)
    bound = driver_bindings(sources, system or unit, [t for group in tops.values() for t in group])
    sys_tu = sources.unit(system, R.SYNTHESIS_VIEW) if system else None
    reading = _Reading(sources, tu, bound, dsp_kind, sys_tu)
    for engine, group in tops.items():
        for top in group:
            reading.top(engine, R.Walker(sources, tu, top))
    return reading.result()


def _definition_pragmas(tu) -> list[R.Pragma]:
    """The pragmas of every function the unit's own file defines (the system description's)."""
    out = []
    for d in R.declarations(tu):
        if d.kind in (R.K.FUNCTION_DECL, R.K.CXX_METHOD) and d.is_definition():
            out += R.pragmas_in(tu, d)
    return out


def _identity(engine: str, top: str, param, target) -> str:
    if target is None:
        return f"{top}/{param.spelling}"  # no driver binds it: the top's own
    if target.kind == R.K.VAR_DECL and R.has_static_storage(target):
        return R.qualified_name(target)
    return f"{engine}/{target.spelling}"


def _stream_type(t):
    """The hls::stream type of a stream or an array of streams (None otherwise)."""
    t = t.get_canonical()
    while t.kind in (HT.T.CONSTANTARRAY, HT.T.POINTER, HT.T.LVALUEREFERENCE, HT.T.INCOMPLETEARRAY):
        t = (
            t.element_type if t.kind in (HT.T.CONSTANTARRAY, HT.T.INCOMPLETEARRAY) else t.get_pointee()
        ).get_canonical()
    return t if t.kind == HT.T.RECORD and HT.is_stream(t) else None


def _count(t) -> int:
    """How many objects a (possibly array, or decayed array) parameter or variable type holds."""
    t = t.get_canonical()
    n = 1
    while t.kind == HT.T.CONSTANTARRAY:
        n *= t.element_count
        t = t.element_type.get_canonical()
    return n


def declaring_pragmas(walker: R.Walker, var) -> list[R.Pragma]:
    """The pragmas naming `var` in the function that declares it; with several variables of that name in
    the function (in different scopes), a pragma belongs to the one declared in the innermost scope
    around the pragma (C++'s name lookup, which UG1399 follows)."""
    fn = var.semantic_parent
    while fn is not None and fn.kind not in (R.K.FUNCTION_DECL, R.K.CXX_METHOD, R.K.FUNCTION_TEMPLATE):
        fn = fn.semantic_parent
    if fn is None:
        return []
    found = [p for p in walker.function_pragmas(fn) if names_variable(p, var.spelling)]
    if not found:
        return []
    scopes = _scopes(fn, var.spelling)
    if len(scopes) <= 1:
        return found
    out = []
    for p in found:
        around = [(ext, d) for d, ext in scopes if ext[0] <= p.line <= ext[1]]
        if around and R.same(min(around, key=lambda x: x[0][1] - x[0][0])[1], var):
            out.append(p)
    return out


def _scopes(fn, name: str) -> list[tuple[object, tuple[int, int]]]:
    """(declaration, (first line, last line) of its innermost scope) of each local `name` in `fn`."""
    out = []

    def visit(c, scope):
        if c.kind in (R.K.COMPOUND_STMT, R.K.FOR_STMT, R.K.WHILE_STMT, R.K.IF_STMT):
            scope = (c.extent.start.line, c.extent.end.line)
        if c.kind == R.K.VAR_DECL and c.spelling == name:
            out.append((c, scope))
        for k in c.get_children():
            visit(k, scope)

    visit(fn, (fn.extent.start.line, fn.extent.end.line))
    return out


def names_variable(pragma: R.Pragma, variable: str) -> bool:
    """Whether `pragma` applies to `variable` (or to one of its fields: variable=x.f)."""
    return (pragma.get("variable") or "").split(".")[0].rsplit("::", 1)[-1] == variable


def _stream_depth(walker: R.Walker, var) -> int:
    for p in declaring_pragmas(walker, var):
        if p.directive == "STREAM" and not R.is_off(p):
            return R.pragma_int(walker.tu, p, "depth", STREAM_DEFAULT_DEPTH)
    return STREAM_DEFAULT_DEPTH


# ---- multipliers -------------------------------------------------------------------------------------
def _bind_impl(ev: R.Event) -> str:
    """BIND_OP impl= for the site (op=mul on the variable the statement assigns), else auto."""
    for p in ev.pragmas:
        if p.directive == "BIND_OP" and ev.target and p.get("variable") == ev.target:
            if (p.get("op") or "mul").lower() == "mul":
                return (p.get("impl") or "auto").lower()
    return "auto"


def _site(muls: dict, ev: R.Event, dsp_kind: str | None) -> None:
    ops = [o for o in ev.operands if o.kind not in (R.K.TYPE_REF, R.K.TEMPLATE_REF)]
    impl = "auto"
    result_bits = None
    if ev.kind == "fadd":
        bits = HT.type_bits(ev.cursor.type)
        op, widths, signs = "float", [bits, bits], [True, True]
        per_copy = [(ev.ctx.copies, FLOAT_DSP.get(("add", bits), 0))]
    else:
        if len(ops) != 2:
            return
        if any(HT.is_float(o.type) for o in ops) or HT.is_float(ev.cursor.type):
            bits = max(HT.type_bits(o.type) for o in ops)
            op, widths, signs = "float", [bits, bits], [True, True]
            per_copy = [(ev.ctx.copies, FLOAT_DSP.get(("mul", bits), 0))]
        else:
            a, b = (R.operand_bits(o, ev.ctx.constants) for o in ops)
            if a.values is not None and b.values is not None:
                return  # constant x constant: folded
            impl = _bind_impl(ev)
            result_bits = HT.type_bits(ev.cursor.type) or None
            op = "int"
            per_copy = _int_copies(a, b, ev.ctx.copies, dsp_kind, result_bits, impl)
            if not per_copy:
                return  # every copy a shift
            const = a if a.values is not None else (b if b.values is not None else None)
            widths, signs = [a.bits, b.bits], [a.signed, b.signed]
            if const is not None:  # the constant's width: the widest value a copy multiplies by
                cbits = max(_const_bits(v) for v in const.values if not free_constant(v))
                widths[0 if const is a else 1] = cbits
                signs[0 if const is a else 1] = True
    kind = "add" if ev.kind == "fadd" else "mul"
    key = (ev.ctx.function, ev.file, ev.line, kind, tuple(widths))
    s = muls.get(key)
    if s is None:
        s = muls[key] = MultiplySite(
            ev.ctx.function, ev.line, ev.file.rsplit("/", 1)[-1], f"{op} {kind}", widths, 0,
            0 if dsp_kind else None, signs, result_bits, impl,
        )  # fmt: skip
    for copies, per in per_copy:
        s.copies += copies
        if s.dsp is not None:
            s.dsp += copies * per


def _const_bits(v: int) -> int:
    return v.bit_length() + 1  # two's complement


def _int_copies(a, b, copies: int, dsp_kind, result_bits, impl) -> list[tuple[int, int]]:
    """[(copies, DSPs per copy)] of an integer multiply site: per value of a constant operand (an
    unrolled index takes one value per copy) the free ones (0, +-2^k) dropped; BIND_OP impl=fabric: no
    DSP."""

    def cost(x_bits, x_signed, y_bits, y_signed) -> int:
        if dsp_kind is None or impl == "fabric":
            return 0
        return dsp_per_multiply(x_bits, y_bits, dsp_kind, x_signed, y_signed, result_bits)

    const = a if a.values is not None else (b if b.values is not None else None)
    if const is None:
        return [(copies, cost(a.bits, a.signed, b.bits, b.signed))]
    other = b if const is a else a
    each = max(1, copies // len(const.values))  # an unrolled index: its loop's copies split over its values
    return [
        (each, cost(_const_bits(v), True, other.bits, other.signed))
        for v in const.values
        if not free_constant(v)
    ]
