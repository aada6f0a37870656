"""C-simulation: the accelerator's engine compiled with g++ against Xilinx's ap_types headers, run on
numpy data from a program of descriptors.

One toolchain for every C++ codax builds (`compile_cached`): the csim shared libraries here and the
objects the TVM BYOC codegen links (`codax.codegen.byoc`), cached by a content hash of the sources,
flags and compiler under $CODAX_CACHE (default ~/.cache/codax). The engine is compiled once per
accelerator, never per layer. Instrumented builds (-DCODAX_COUNT) export the transfer counters.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codax.codegen.engine import engine_sources
from codax.codegen.golden import with_weight
from codax.codegen.nest import plan
from codax.codegen.packing import pack_tensor, packed_bytes, unpack
from codax.codegen.params import LayerParams
from codax.codegen.program import Widths, single_layer_call
from codax.errors import CodaxError, UnsupportedError
from codax.ir import OPERANDS, Accelerator, Layer, Mapping, validate_mapping

CXXFLAGS = ("-O2", "-std=c++14", "-fPIC", "-ffp-contract=off", "-w")
# a shared library binds its own symbols to its own definitions: two accelerators' engines declare the
# same names (codax_core::acc_buf, ...) at different sizes, and one loaded first must not serve the other
SHARED_LDFLAGS = ("-shared", "-Wl,-Bsymbolic")
MAX_LEVELS = 8

COUNTERS_CPP = """// csim only: the engine's transfer and MAC counters for ctypes.
#include "codax_engine.h"
extern "C" {
void codax_counts_reset(void) { codax::counts_reset(); }
void codax_counts_get(unsigned long long *dst) {
  const codax::Counts &c = codax::counts();
  for (int h = 0; h < CODAX_MAX_LEVELS; ++h)
    for (int x = 0; x < 3; ++x) {
      dst[h * 3 + x] = c.in[h][x];
      dst[CODAX_MAX_LEVELS * 3 + h * 3 + x] = c.out[h][x];
    }
  dst[CODAX_MAX_LEVELS * 6] = c.macs;
  dst[CODAX_MAX_LEVELS * 6 + 1] = c.beats;
  for (int h = 0; h < CODAX_MAX_LEVELS; ++h) dst[CODAX_MAX_LEVELS * 6 + 2 + h] = c.ps_peak[h];
}
double codax_cycles_get(void) { return codax::cycles_total(); }
double codax_fetch_get(void) { return codax::last_fetch_cycles(); }
void codax_schedule_seed(unsigned seed) { codax::schedule_seed() = seed; }
}
"""


class CsimError(CodaxError):
    """Generated C++ did not compile (a codegen bug or a missing compiler)."""


@functools.cache
def ap_types_dir() -> Path:
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or spec.origin is None:
        raise CsimError("C-simulation needs the ap_types headers shipped by hls4ml: pip install hls4ml")
    d = Path(spec.origin).parent / "templates" / "vivado" / "ap_types"
    if not (d / "ap_int.h").exists():
        raise CsimError(f"hls4ml is installed but {d}/ap_int.h is missing")
    return d


def cache_dir() -> Path:
    return Path(os.environ.get("CODAX_CACHE", Path.home() / ".cache" / "codax"))


@functools.cache
def _compiler_id(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise CsimError(f"C-simulation needs a C++ compiler ({cxx}): {e}") from None


def compile_cached(
    sources: dict[str, str],
    *,
    kind: str = "shared",
    flags: tuple[str, ...] = (),
    include_dirs: tuple[str, ...] = (),
    objects: tuple[Path, ...] = (),
    cxx: str | None = None,
    cache: str | Path | None = None,
) -> Path:
    """Compile {relative path: text} (every .cpp/.cc is a translation unit, compiled in parallel;
    headers are includable from the source root and its include/) plus prebuilt `objects` into a
    cached shared library (kind="shared") or one relocatable object (kind="object"); returns its
    path. `cache` overrides the cache directory ($CODAX_CACHE, default ~/.cache/codax)."""
    cxx = cxx or os.environ.get("CXX") or "g++"
    all_flags = [*CXXFLAGS, f"-DCODAX_MAX_LEVELS={MAX_LEVELS}", *flags]
    h = hashlib.sha256()
    link = " ".join(SHARED_LDFLAGS) if kind == "shared" else ""
    for part in [_compiler_id(cxx), kind, " ".join(all_flags), link, " ".join(include_dirs)]:
        h.update(part.encode() + b"\0")
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    for o in objects:
        h.update(Path(o).read_bytes())
    root_cache = Path(cache) if cache else cache_dir()
    out = root_cache / "build" / f"{h.hexdigest()[:24]}.{'so' if kind == 'shared' else 'o'}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="codax-build-") as tmp:
        root = Path(tmp)
        for name, text in sources.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        units = [str(root / n) for n in sorted(sources) if n.endswith((".cpp", ".cc"))]
        inc = ["-I", str(root), "-I", str(root / "include"), "-I", str(ap_types_dir())]
        for d in include_dirs:
            inc += ["-I", d]
        objs = [u + ".o" for u in units]
        with ThreadPoolExecutor(max_workers=max(1, min(len(units), os.cpu_count() or 1))) as pool:
            list(
                pool.map(lambda uo: _run([cxx, *all_flags, *inc, "-c", uo[0], "-o", uo[1]]), zip(units, objs))
            )
        product = root / "product"
        if kind == "shared":
            _run([cxx, *all_flags, *SHARED_LDFLAGS, *objs, *map(str, objects), "-o", str(product)])
        else:
            _run([cxx, "-r", "-nostdlib", "-o", str(product), *objs, *map(str, objects)])
        fd, staged = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
        os.close(fd)
        Path(staged).write_bytes(product.read_bytes())
        os.replace(staged, out)  # atomic: concurrent builds of the same key are harmless
    return out


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise CsimError(f"g++ failed on generated code ({' '.join(cmd)}):\n{r.stderr[-4000:]}")


@dataclass
class Counts:
    """Words moved per level (by name) and operand, and MACs, as counted by an instrumented csim."""

    words_in: dict[str, dict[str, int]]
    words_out: dict[str, dict[str, int]]
    macs: int
    cycles: float = 0.0  # the engine's accounted cycles (codax_engine.h, "cycle accounting")
    dram_beats: int = 0  # beats its DRAM port moved, the descriptors' fetch and prefetch included
    ps_peak: dict[str, int] | None = None  # per output level: most partial-sum tokens outstanding at once
    fetch_cycles: float = 0.0  # of `cycles`, the last call's wait for its descriptor (exposed fetch)


def _ptr(b) -> ctypes.c_void_p | None:
    if b is None:
        return None
    return (
        ctypes.c_void_p(ctypes.addressof(b))
        if isinstance(b, ctypes.Array)
        else b.ctypes.data_as(ctypes.c_void_p)
    )


class EngineSim:
    """The accelerator's engine(s) compiled once for C-simulation; runs descriptors on byte buffers."""

    def __init__(self, accel: Accelerator, count: bool = False) -> None:
        self.accel, self.count = accel, count
        self.source = engine_sources(accel)
        files = {k: v for k, v in self.source.files.items() if k != "top.cpp"}
        files["csim_counters.cpp"] = COUNTERS_CPP
        self.path = compile_cached(files, flags=("-DCODAX_COUNT",) if count else ())
        self.lib = ctypes.CDLL(str(self.path))
        self.entries = {}
        for name, sym in self.source.entries.items():
            fn = getattr(self.lib, sym)
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 6
            fn.restype = None
            self.entries[name] = fn
        if count:
            self.lib.codax_cycles_get.restype = ctypes.c_double
            self.lib.codax_fetch_get.restype = ctypes.c_double

    def run(
        self, engine: str, program: np.ndarray, wblob, x, y, r=None, ps=None, wt=None, call: int = 0
    ) -> None:
        """Run call `call` of `program` ([calls, DESC_WORDS] descriptors, or one descriptor: a program of
        one call). The engine prefetches call + 1 while the call runs: the next call of the same
        program finds its descriptor on chip."""
        d = np.ascontiguousarray(program, dtype=np.int32)
        calls = 1 if d.ndim == 1 else d.shape[0]
        if d.ndim > 2 or not 0 <= call < calls:
            raise ValueError(
                f"call {call} is not a call of a program of {calls} descriptor(s) (shape {d.shape})"
            )
        self.entries[engine](_ptr(d), calls, call, _ptr(wblob), _ptr(x), _ptr(y), _ptr(r), _ptr(ps), _ptr(wt))

    def counts_reset(self) -> None:
        self.lib.codax_counts_reset()

    def schedule(self, seed: int) -> None:
        """The order C-simulation runs the engine's tasks in: 0 (the default) sweeps them in turn; any
        other seed runs one ready instruction at a time, the task picked pseudo-randomly. The data and
        the counts do not depend on it (the tokens are the only synchronisation)."""
        self.lib.codax_schedule_seed(ctypes.c_uint(seed))

    def counts(self, engine: str) -> Counts:
        raw = (ctypes.c_ulonglong * (MAX_LEVELS * 7 + 2))()
        self.lib.codax_counts_get(raw)
        names = self.accel.engine(engine).level_names
        w_in = {lv: {op: int(raw[h * 3 + x]) for x, op in enumerate(OPERANDS)} for h, lv in enumerate(names)}
        w_out = {
            lv: {op: int(raw[MAX_LEVELS * 3 + h * 3 + x]) for x, op in enumerate(OPERANDS)}
            for h, lv in enumerate(names)
        }
        cycles = float(self.lib.codax_cycles_get())
        ps_peak = {lv: int(raw[MAX_LEVELS * 6 + 2 + h]) for h, lv in enumerate(names)}
        beats = int(raw[MAX_LEVELS * 6 + 1])
        fetch = float(self.lib.codax_fetch_get())
        return Counts(w_in, w_out, int(raw[MAX_LEVELS * 6]), cycles, beats, ps_peak, fetch)


_SIMS: dict[tuple[str, bool], EngineSim] = {}


def engine_sim(accel: Accelerator, count: bool = False) -> EngineSim:
    """One EngineSim per (engine sources, instrumentation): the library is loaded once per process."""
    key = (engine_sources(accel).key, count)
    if key not in _SIMS:
        _SIMS[key] = EngineSim(accel, count)
    return _SIMS[key]


def _buf(data: bytes | int) -> np.ndarray:
    """A writable byte buffer (with 8 bytes of slack for the bit-packed accessors)."""
    if isinstance(data, int):
        return np.zeros(data + 8, np.uint8)
    b = np.zeros(len(data) + 8, np.uint8)
    b[: len(data)] = np.frombuffer(data, np.uint8)
    return b


class LayerKernel:
    """One layer on the accelerator's engine in C-simulation, callable on numpy arrays. The engine is
    compiled once per accelerator; each call builds the layer's descriptor and weights from the
    parameters it is given."""

    def __init__(
        self,
        layer: Layer,
        accel: Accelerator,
        mapping: Mapping,
        count: bool = False,
    ) -> None:
        validate_mapping(layer, accel, mapping)
        if layer.precision.kind == "float" and not accel.float_ok:
            raise UnsupportedError(
                f"layer {layer.name} is float but accelerator {accel.name} has no fp32 MAC; use one with "
                "precision.float: true (e.g. zcu102-mixed) or quantize the layer"
            )
        self.plan = plan(layer, accel, mapping)  # refuses nests the engine and the model do not share
        self.layer, self.accel, self.mapping, self.count = layer, accel, mapping, count
        self.engine = engine_sim(accel, count)

    def __call__(
        self,
        params: LayerParams,
        x: np.ndarray,
        residual: np.ndarray | None = None,
        weight: np.ndarray | None = None,
        program: np.ndarray | None = None,
        call: int = 0,
    ):
        """Run the layer on tensors in its layouts (codax.codegen.golden): returns (y, Counts or None).
        `weight`: the run-time weight tensor of a layer that has one. `program` ([calls, DESC_WORDS]):
        run the layer as call `call` of that program, whose row `call` must be this layer's descriptor
        (`descriptor`); the engine then prefetches the program's next descriptor while it runs, and a
        call the call before prefetched finds its descriptor on chip. By default the layer is a program
        of one call."""
        lay = self.layer
        wd = Widths.of(lay, params)
        with_weight(lay, params, weight)  # refuses a missing run-time weight
        blob, desc = single_layer_call(self.plan, self.accel, params, wd)
        if program is None:
            program, call = desc, 0
        elif not (0 <= call < len(program) and np.array_equal(np.asarray(program)[call], desc)):
            raise ValueError(
                f"layer {lay.name}: program row {call} is not this layer's descriptor; build the program "
                "from each call's LayerKernel.descriptor(params), in call order"
            )
        xb = _buf(pack_tensor(np.asarray(x).reshape(-1), wd.x, wd.is_float))
        wt = None
        if lay.runtime_weight:
            wt = _buf(pack_tensor(np.asarray(weight).reshape(-1), wd.w, wd.is_float))
        n_out = lay.N * lay.G * lay.K * lay.P * lay.Q
        y = _buf(packed_bytes(n_out, wd.y))
        ps = _buf(4 * n_out)
        rb = None
        if lay.epilogue.residual:
            if residual is None:
                raise ValueError(f"layer {lay.name} fuses a residual add: pass `residual`")
            rb = _buf(pack_tensor(np.asarray(residual).reshape(-1), wd.r, wd.is_float))
        if self.count:
            self.engine.counts_reset()
        self.engine.run(self.mapping.engine, program, _buf(blob), xb, y, rb, ps, wt, call=call)
        counts = self.engine.counts(self.mapping.engine) if self.count else None
        out = unpack(y, n_out, wd.y, wd.y_signed, dtype=params.y_dtype)
        if lay.op == "matmul":  # [G, N, K] as the engine wrote it
            out = out.reshape(lay.N, lay.K) if lay.G == 1 else out.reshape(lay.G, lay.N, lay.K)
        else:
            out = out.reshape(lay.N, lay.G * lay.K, lay.P, lay.Q)
        return out, counts

    def descriptor(self, params: LayerParams) -> np.ndarray:
        """The layer's descriptor for these parameters ([DESC_WORDS] int32): a row of a program."""
        return single_layer_call(self.plan, self.accel, params, Widths.of(self.layer, params))[1]


def run_layer(
    layer: Layer,
    accel: Accelerator,
    mapping: Mapping,
    params: LayerParams,
    x: np.ndarray,
    residual: np.ndarray | None = None,
    count: bool = False,
):
    """Run one layer on the engine in C-simulation: (y, Counts or None)."""
    k = LayerKernel(layer, accel, mapping, count=count)
    return k(params, x, residual)
