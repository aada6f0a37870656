"""The engine's IPs as synthesis sees them. Without a vendor tool, g++ compiles engine.cpp in the
synthesis view (-DCODAX_SYNTHESIS_VIEW: what __SYNTHESIS__ selects) against an hls::stream with no
allocation, and the call graph of the assembly shows what the IPs reach: every IP is a top of its own
(an external function), and nothing reachable from one allocates memory, prints, aborts or belongs to
C-simulation (the scheduler, the accounting clocks). The ap_int / ap_uint operators are not followed:
synthesis replaces their C-simulation model (which allocates for some widths) by operators in hardware."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from codax.codegen.csim import ap_types_dir
from codax.codegen.engine import engine_sources
from codax.hw import load_accelerator

STUB = Path(__file__).parent / "synthesis_view"
# synthesizable: memcpy / memset (UG1399: on arrays, and bursts on m_axi), and math.h's rintf (the
# requantization's round half to even), which synthesis takes from its math library (hls_math)
# (compiled with -fno-exceptions: hardware has none)
ALLOWED_EXTERNAL = {"memcpy", "memset", "rintf"}
AP_TYPES = re.compile(
    r"\bap_(private|int_base|int|uint|range_ref|bit_ref|concat_ref|fixed_base)\b|_AP_ROOT|ssdm_"
)
CSIM_ONLY = ("codax::sim()", "codax::clock()", "run_tasks", "run_layer", "schedule_seed", "queues_drain")


def call_graph(files: dict[str, str], tmp: Path, header_edit=None):
    """(functions defined, {caller: callees}) of engine.cpp in the synthesis view, names demangled."""
    for name, text in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(
            header_edit(text) if header_edit and name.endswith("codax_engine.h") else text
        )
    asm = tmp / "engine.s"
    inc = ["-I", str(STUB), "-I", str(tmp / "include"), "-I", str(ap_types_dir())]
    cmd = [
        os.environ.get("CXX", "g++"),
        "-std=c++14",
        "-O0",
        "-fno-exceptions",
        "-DCODAX_SYNTHESIS_VIEW",
        *inc,
        "-S",
    ]
    r = subprocess.run([*cmd, str(tmp / "engine.cpp"), "-o", str(asm)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    calls: dict[str, set[str]] = {}
    external: set[str] = set()
    cur = None
    for line in asm.read_text().splitlines():
        if m := re.match(r"^([A-Za-z_.$][\w.$]*):", line):
            cur = m.group(1) if not m.group(1).startswith(".L") else cur
            calls.setdefault(cur, set())
        elif m := re.match(r"^\s+(?:call|jmp)\s+([A-Za-z_][\w.$]*)(@PLT)?\s*$", line):
            calls.setdefault(cur, set()).add(m.group(1))
    for callees in calls.values():
        external |= {c for c in callees if c not in calls}
    names = sorted(set(calls) | external)
    demangled = subprocess.run(
        ["c++filt"], input="\n".join(names), capture_output=True, text=True
    ).stdout.split("\n")
    dm = dict(zip(names, demangled))
    return {dm[k]: {dm[c] for c in v} for k, v in calls.items()}, {dm[e] for e in external}


def reachable(graph, external, roots):
    """External symbols and functions reached from `roots`, not descending into the ap types."""
    seen, ext, todo = set(), set(), list(roots)
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for c in graph.get(f, ()):
            if AP_TYPES.search(c):
                continue
            if c in external:
                ext.add(c)
            else:
                todo.append(c)
    return seen, ext


def ip_roots(graph, ips):
    roots = {}
    for ip in ips:
        found = [f for f in graph if f.startswith(f"{ip}(")]
        assert len(found) == 1, f"IP {ip} is not one function in the synthesis view: {found}"
        roots[ip] = found[0]
    return roots


@pytest.mark.parametrize("accel_name", ["zc706-int8", "zcu102-mixed", "eyeriss-like", "shidiannao-like"])
def test_ips_reach_no_csim_code(tmp_path, accel_name):
    src = engine_sources(load_accelerator(accel_name))
    graph, external = call_graph(src.files, tmp_path)
    roots = ip_roots(graph, src.ips)
    assert {ip.rsplit("_", 1)[-1] for ip in src.ips} >= {"decode", "compute", "0"}
    for ip, root in roots.items():
        seen, ext = reachable(graph, external, [root])
        assert ext <= ALLOWED_EXTERNAL, f"{ip} reaches {sorted(ext - ALLOWED_EXTERNAL)}"
        for f in seen:
            assert not any(name in f for name in CSIM_ONLY), f"{ip} reaches C-simulation's {f}"


def test_a_csim_only_call_in_an_ip_is_caught(tmp_path):
    """The check can fail: an IP whose step prints (C-simulation-only I/O) reaches printf."""
    src = engine_sources(load_accelerator("zc706-int8"))
    marker = "  load_task(ip.c, full, free, ps, ip.i);\n"
    assert marker in src.files["include/codax_engine.h"]
    graph, external = call_graph(
        src.files, tmp_path, lambda h: h.replace(marker, marker + '  printf("%d\\n", 1);\n')
    )
    roots = ip_roots(graph, src.ips)
    _, ext = reachable(graph, external, [roots["codax_e0_load_0"]])
    assert "printf" in ext
    _, ext = reachable(graph, external, [roots["codax_e0_compute"]])
    assert "printf" not in ext
