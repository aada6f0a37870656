"""The core engine's block design, as TVM VTA's (hardware/xilinx/scripts/: each module synthesized as an
IP of its own, the shared BRAMs instantiated once in the block design and wired to the modules' `bram`
ports): the generated include/core_system.h and core_system.cpp declare each buffer once, with its
storage, and say which IP port drives each physical port of each buffer; where two IP ports share one
physical port, how the port is arbitrated.

    buffer     storage   port    drivers                      arbitration
    uop_buf    ram_s2p   write   core_load                    -
                         read    core_gemm                    -
    wgt_buf    ram_s2p   write   core_load                    -
                         read    core_gemm                    -
    inp_buf    ram_t2p   A       core_load (w), core_gemm (r) 2:1 mux, owned by the l2g / g2l tokens
                         B       core_gemm (r)                -
    acc_buf    ram_s2p   write   core_gemm                    -
                         read    core_gemm, core_store        2:1 mux, owned by the g2s / s2g tokens
    param_buf  ram_s2p   write   core_load                    -
                         read    core_store                   -

A shared port's mux is selected by ownership, not by a per-cycle arbiter: the layer compiler pairs every
pop of a dependence token with a push (VTA's rule), and a module touches a shared buffer only between
the pop that hands it the buffer and the push that hands it back, so at any cycle one module drives the
port and the other's requests never collide with it (no stall, no arbitration cycle to charge).

Also generated here: the hooks the IPs call (include/core_hooks.h: empty in the synthesis view, the
C-simulation header include/core_csim.h otherwise) and the C-simulation unit core_csim.cpp (the dispatch
of one instruction to its IP through the dependence queues, the test entries, the trip counters). The
C-simulation scheduler itself is codax/codegen/core_sim.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codax.codegen import hls_reader as R

SYSTEM_UNIT = "core_system.cpp"
SYSTEM_HEADER = "core_system.h"
HOOKS_HEADER = "core_hooks.h"
CSIM_HEADER = "core_csim.h"
CSIM_UNIT = "core_csim.cpp"
BLOCK_DESIGN = "core_block_design"
TRIP_IPS = ("load", "gemm", "store")  # the order codax_core_trips reports
TOKENS = {"l2g": ("core_load", "core_gemm"), "g2l": ("core_gemm", "core_load"),
          "g2s": ("core_gemm", "core_store"), "s2g": ("core_store", "core_gemm")}  # fmt: skip


@dataclass(frozen=True)
class Port:
    """One physical port of a buffer: the IP ports on it ((top, 'w' | 'r')) and, for several, how they
    share it."""

    name: str
    drivers: tuple[tuple[str, str], ...]
    arbitration: str = ""


@dataclass(frozen=True)
class Buffer:
    name: str
    decl: str  # the C++ declarator
    storage: str  # BIND_STORAGE type
    reshape: tuple[int, ...]  # the dims reshaped completely (one address, one word)
    ports: tuple[Port, ...]


def _mux(tokens: str) -> str:
    a, b = tokens.split("/")
    return (
        f"2:1 mux selected by ownership: {TOKENS[a][0]} drives it between the pop and the push of the {b} "
        f"token, {TOKENS[a][1]} between those of {a} (the compiler pairs them)"
    )


def buffers(full: bool) -> tuple[Buffer, ...]:
    """The buffers of the block design; `full`: the load and store IPs exist (else the GEMM alone,
    whose buffers C-simulation fills)."""
    load = (("core_load", "w"),) if full else ()
    out = [
        Buffer("uop_buf", "uop_buf[UOP_DEPTH]", "ram_s2p", (),
               (Port("write", load), Port("read", (("core_gemm", "r"),)))),
        Buffer("wgt_buf", "wgt_buf[WGT_WORDS][ROWS]", "ram_s2p", (2,),
               (Port("write", load), Port("read", (("core_gemm", "r"),)))),
        Buffer("inp_buf", "inp_buf[INP_WORDS][ROWS]", "ram_t2p", (2,),
               (Port("A", (*load, ("core_gemm", "r")), _mux("g2l/l2g") if full else ""),
                Port("B", (("core_gemm", "r"),)))),
        Buffer("acc_buf", "acc_buf[ACC_WORDS][ROWS][COLS]", "ram_s2p", (2, 3),
               (Port("write", (("core_gemm", "w"),)),
                Port("read", (("core_gemm", "r"), *((("core_store", "r"),) if full else ())),
                     _mux("s2g/g2s") if full else ""))),
    ]  # fmt: skip
    if full:
        out.append(
            Buffer("param_buf", "param_buf[PARAM_DEPTH]", "ram_s2p", (),
                   (Port("write", load), Port("read", (("core_store", "r"),))))
        )  # fmt: skip
    return tuple(out)


def _types(name: str) -> str:
    return {"uop_buf": "uop_t", "wgt_buf": "col_vec_t", "inp_buf": "col_vec_t", "acc_buf": "acc_t",
            "param_buf": "param_t"}[name]  # fmt: skip


def system_header(full: bool) -> str:
    bufs = buffers(full)
    externs = "\n".join(f"extern {_types(b.name)} {b.decl};" for b in bufs)
    rows = []
    for b in bufs:
        for p in b.ports:
            drivers = " ".join(f"{t}:{d}" for t, d in p.drivers)
            rows.append(f'    {{"{b.name}", "{p.name}", "{drivers}",\n     "{p.arbitration}"}},')
    table = "\n".join(rows)
    return f"""\
// core_system.h -- the core engine's block design (generated by codax/codegen/core_system.py): each
// buffer declared once (core_system.cpp), and which IP port drives each of its physical ports.
#pragma once
#include "codax_core.h"

namespace codax_core {{

{externs}

// Per physical port of a buffer (simple dual-port: write / read; true dual-port: A / B), the IP ports
// on it ("top:w" writes, "top:r" reads) and, where several share it, how it is arbitrated.
struct BufferPort {{
  const char *buffer;
  const char *port;
  const char *drivers;
  const char *arbitration;
}};
const BufferPort BUFFER_PORTS[] = {{
{table}
}};

}}  // namespace codax_core
"""


WIRING_FULL = """\
void core_block_design(ap_uint<32> insn_count, const beat_t *insns, const beat_t *dram, beat_t *out,
                       const beat_t *res) {
{pragmas}
  // the instruction queues and the dependence queues between the modules (VTA's depths)
  hls::stream<insn_t> load_queue, gemm_queue, store_queue;
  hls::stream<bool> l2g_dep_queue, g2l_dep_queue, g2s_dep_queue, s2g_dep_queue;
#pragma HLS STREAM variable=load_queue depth=512
#pragma HLS STREAM variable=gemm_queue depth=512
#pragma HLS STREAM variable=store_queue depth=512
#pragma HLS STREAM variable=l2g_dep_queue depth=32
#pragma HLS STREAM variable=g2l_dep_queue depth=32
#pragma HLS STREAM variable=g2s_dep_queue depth=32
#pragma HLS STREAM variable=s2g_dep_queue depth=32
  core_fetch(insn_count, insns, load_queue, gemm_queue, store_queue);
  core_load(load_queue, dram, g2l_dep_queue, l2g_dep_queue, uop_buf, wgt_buf, inp_buf, param_buf);
  core_gemm(gemm_queue, l2g_dep_queue, s2g_dep_queue, g2l_dep_queue, g2s_dep_queue, uop_buf, wgt_buf, inp_buf,
            acc_buf);
  core_store(store_queue, g2s_dep_queue, s2g_dep_queue, out, res, acc_buf, param_buf);
}
"""

WIRING_GEMM = """\
void core_block_design(hls::stream<insn_t> &gemm_queue) {
{pragmas}
  hls::stream<bool> l2g_dep_queue, g2l_dep_queue, g2s_dep_queue, s2g_dep_queue;
  core_gemm(gemm_queue, l2g_dep_queue, s2g_dep_queue, g2l_dep_queue, g2s_dep_queue, uop_buf, wgt_buf, inp_buf,
            acc_buf);
}
"""


def system_unit(full: bool) -> str:
    """core_system.cpp: the buffers, each once, and the block design's wiring as a C++ function -- read
    (by the resource reader and the port check), not run: on the device the modules run concurrently,
    each on its own queue, and C-simulation runs them one instruction at a time (core_csim.cpp)."""
    bufs = buffers(full)
    defs = "\n".join(f"{_types(b.name)} {b.decl};" for b in bufs)
    pragmas = []
    for b in bufs:
        pragmas += [f"#pragma HLS ARRAY_RESHAPE variable={b.name} complete dim={d}" for d in b.reshape]
        pragmas.append(f"#pragma HLS BIND_STORAGE variable={b.name} type={b.storage} impl=bram")
    wiring = (WIRING_FULL if full else WIRING_GEMM).replace("{pragmas}", "\n".join(pragmas))
    return f"""\
// core_system.cpp -- the core engine's block design (generated by codax/codegen/core_system.py): the
// shared buffers, each instantiated once with its storage (reshaped: one address is one word), and the
// IPs' ports wired to them and to the instruction and dependence queues, as VTA's block design wires
// its modules. The port table (BUFFER_PORTS, core_system.h) says which IP port drives each buffer port.
#include "{SYSTEM_HEADER}"

namespace codax_core {{

{defs}

{wiring}
}}  // namespace codax_core
"""


def hooks_header() -> str:
    return f"""\
// core_hooks.h -- what the IPs call at C-simulation's points of interest (generated by
// codax/codegen/core_system.py): nothing in the synthesis view; the C-simulation header otherwise.
#pragma once
#define CODAX_TRIP_LOAD 0
#define CODAX_TRIP_GEMM 1
#define CODAX_TRIP_STORE 2
#if defined(__SYNTHESIS__) || defined(CODAX_SYNTHESIS_VIEW)
#define CODAX_CORE_TRIP(ip) ((void)0)
#else
#include "{CSIM_HEADER}"
#endif
"""


def csim_header(full: bool) -> str:
    dispatch = (
        "namespace codax_core {\n"
        "// one instruction through its IP, the tokens it pops pushed first and those it pushes drained\n"
        "void dispatch(insn_t w, const beat_t *dram, beat_t *out, const beat_t *res);\n"
        "}  // namespace codax_core\n"
        if full
        else ""
    )
    return f"""\
// core_csim.h -- C-simulation only (core_hooks.h includes it outside the synthesis view): each IP's
// pipelined-loop iterations counted, one hook call an iteration (order: load, gemm, store).
#pragma once
#include "codax_core.h"

extern long long codax_core_trip_count[{len(TRIP_IPS)}];
#define CODAX_CORE_TRIP(ip) (++codax_core_trip_count[(ip)])
{dispatch}"""


DISPATCH = """
namespace codax_core {
static hls::stream<insn_t> sim_load_queue, sim_gemm_queue, sim_store_queue;
static hls::stream<bool> sim_l2g, sim_g2l, sim_g2s, sim_s2g;

// the scheduler (core_sim.py) has granted the tokens the instruction pops: they go into the queues it
// reads; the ones it pushes are taken out again (the scheduler keeps its own count)
static void drain(hls::stream<bool> &q) {
  if (!q.empty()) q.read();
}

void dispatch(insn_t w, const beat_t *dram, beat_t *out, const beat_t *res) {
  const GemmInsn head = decode_gemm(w);  // the head (opcode and flags) is common to every kind
  const int op = head.opcode.to_int();
  if (op == OP_LOAD) {
    if (head.pop_next) sim_g2l.write(true);
    sim_load_queue.write(w);
    core_load(sim_load_queue, dram, sim_g2l, sim_l2g, uop_buf, wgt_buf, inp_buf, param_buf);
    if (head.push_next) drain(sim_l2g);
  } else if (op == OP_GEMM) {
    if (head.pop_prev) sim_l2g.write(true);
    if (head.pop_next) sim_s2g.write(true);
    sim_gemm_queue.write(w);
    core_gemm(sim_gemm_queue, sim_l2g, sim_s2g, sim_g2l, sim_g2s, uop_buf, wgt_buf, inp_buf, acc_buf);
    if (head.push_prev) drain(sim_g2l);
    if (head.push_next) drain(sim_g2s);
  } else if (op == OP_STORE) {
    if (head.pop_prev) sim_g2s.write(true);
    sim_store_queue.write(w);
    core_store(sim_store_queue, sim_g2s, sim_s2g, out, res, acc_buf, param_buf);
    if (head.push_prev) drain(sim_s2g);
  }
}
}  // namespace codax_core
"""

GEMM_ONLY = """
namespace codax_core {
static hls::stream<insn_t> sim_gemm_queue;
static hls::stream<bool> sim_l2g, sim_g2l, sim_g2s, sim_s2g;
}  // namespace codax_core
"""

RUN_FULL = """\
void codax_core_run(unsigned long long lo, unsigned long long hi) {
  using namespace codax_core;
  dispatch((insn_t(hi) << 64) | insn_t(lo), 0, 0, 0);
}
"""

RUN_GEMM = """\
void codax_core_run(unsigned long long lo, unsigned long long hi) {
  using namespace codax_core;
  sim_gemm_queue.write((insn_t(hi) << 64) | insn_t(lo));
  core_gemm(sim_gemm_queue, sim_l2g, sim_s2g, sim_g2l, sim_g2s, uop_buf, wgt_buf, inp_buf, acc_buf);
}
"""

TRIPS = """\
// each IP's pipelined-loop iterations since the last call (load, gemm, store), and the counts reset
void codax_core_trips(long long *out) {
  for (int i = 0; i < 3; ++i) {
    out[i] = codax_core_trip_count[i];
    codax_core_trip_count[i] = 0;
  }
}
"""


def csim_unit(full: bool, entries: str) -> str:
    """core_csim.cpp: the trip counters, the dispatch (full engine) and the ctypes entries `entries`
    (each `extern "C"` function body using namespace codax_core)."""
    return (
        "// core_csim.cpp -- C-simulation only (generated by codax/codegen/core_system.py): no synthesis\n"
        "// top reaches it. The IPs run one instruction at a time on the block design's buffers.\n"
        f'#include "{SYSTEM_HEADER}"\n#include "{CSIM_HEADER}"\n\n'
        f"long long codax_core_trip_count[{len(TRIP_IPS)}];\n"
        + (DISPATCH if full else GEMM_ONLY)
        + '\nextern "C" {\n'
        + (RUN_FULL if full else RUN_GEMM)
        + TRIPS
        + entries
        + '}  // extern "C"\n'
    )


# ---- the port check: the sources read, not a table ------------------------------------------------------
@dataclass(frozen=True)
class PortUse:
    buffer: str
    port: str
    drivers: frozenset  # {(top, 'w' | 'r')}
    arbitration: str


def stated_ports(files: dict[str, str]) -> list[PortUse]:
    """The block design's port table, BUFFER_PORTS of core_system.h, read with libclang."""
    src = R.parse(files, (SYSTEM_UNIT,), (R.SYNTHESIS_VIEW,))
    tu = src.unit(SYSTEM_UNIT, R.SYNTHESIS_VIEW)
    table = next(
        c for c in tu.cursor.walk_preorder()
        if c.kind == R.K.VAR_DECL and c.spelling == "BUFFER_PORTS" and c.location.file is not None
        and Path(c.location.file.name).name == SYSTEM_HEADER
    )  # fmt: skip
    out = []
    for row in (c for c in table.walk_preorder() if c.kind == R.K.INIT_LIST_EXPR and c != table):
        if any(k.kind == R.K.INIT_LIST_EXPR for k in row.get_children()):
            continue  # the array's own list
        text = ["".join(t.spelling.strip('"') for t in k.get_tokens()) for k in row.get_children()]
        buffer, port, drivers, arbitration = text
        pairs = frozenset(tuple(d.split(":")) for d in drivers.split())
        out.append(PortUse(buffer, port, pairs, arbitration))
    return out


def ip_accesses(files: dict[str, str], tops: list[str], unit: str = "core.cpp") -> dict[str, set]:
    """{buffer: {(top, 'w' | 'r')}}: what each top does to each array it is handed on a `bram` port,
    read from its code (every subscript, written or read) and mapped to the buffer the block design
    passes to that port (the calls in core_system.cpp)."""
    from codax.codegen.hls_resources import driver_bindings

    src = R.parse(files, (unit, SYSTEM_UNIT))
    tu = src.unit(unit, R.SYNTHESIS_VIEW)
    bound = driver_bindings(src, SYSTEM_UNIT, tops)
    out: dict[str, set] = {}
    for top in tops:
        walker = R.Walker(src, tu, top)
        params = [c for c in walker.fn.get_children() if c.kind == R.K.PARM_DECL]
        for ev in walker.events():
            if ev.kind != "index":
                continue
            base = R.strip_casts(ev.cursor)
            while base.kind == R.K.ARRAY_SUBSCRIPT_EXPR:
                base = R.strip_casts(next(base.get_children()))
            ref = base.referenced if base.kind == R.K.DECL_REF_EXPR else None
            if ref is None or ref.kind != R.K.PARM_DECL or ref not in params:
                continue
            target = bound.get((top, params.index(ref)))
            if target is None or not R.has_static_storage(target):
                continue  # a DRAM port (a pointer the block design passes on), not a buffer
            for mode in ev.target or "r":
                out.setdefault(R.qualified_name(target).rsplit("::", 1)[-1], set()).add((top, mode))
    return out
