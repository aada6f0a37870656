"""C-simulation: compile generated kernels with g++ against Xilinx's ap_types headers, run them on numpy.

Build products are cached by a content hash of the sources, headers, flags and compiler, under
$CODAX_CACHE (default ~/.cache/codax)/csim, so running a layer again does not recompile. The
library is loaded with ctypes; each kernel is exported as `extern "C" <ident>_c` with the kernel ABI
(codax.codegen.hls.emit). Instrumented builds (-DCODAX_COUNT) also export the transfer counters.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codax.codegen.golden import as_nchw
from codax.codegen.hls.emit import KernelSource, emit_kernel
from codax.codegen.hls.types import KernelTypes
from codax.codegen.params import LayerParams
from codax.errors import CodaxError
from codax.ir import OPERANDS, Accelerator, Layer, Mapping, validate_mapping

INCLUDE_DIR = Path(__file__).parent / "include"
CXXFLAGS = ("-O2", "-std=c++14", "-fPIC", "-shared", "-ffp-contract=off", "-w")
MAX_LEVELS = 8


class CsimError(CodaxError):
    """The generated C++ did not compile (a codegen bug or a missing compiler)."""


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
    return Path(os.environ.get("CODAX_CACHE", Path.home() / ".cache" / "codax")) / "csim"


@functools.cache
def _compiler_id(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise CsimError(f"C-simulation needs a C++ compiler ({cxx}): {e}") from None


def build_library(sources: dict[str, str], count: bool = False, cxx: str = "g++") -> Path:
    """Compile {file name: text} (the .cpp files are compiled, .h files made includable) into a cached
    shared library and return its path."""
    flags = list(CXXFLAGS) + (["-DCODAX_COUNT"] if count else []) + [f"-DCODAX_MAX_LEVELS={MAX_LEVELS}"]
    h = hashlib.sha256()
    for part in [_compiler_id(cxx), " ".join(flags), (INCLUDE_DIR / "codax_hls.h").read_text()]:
        h.update(part.encode())
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    key = h.hexdigest()[:24]
    out = cache_dir() / f"{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="codax-csim-") as tmp:
        for name, text in sources.items():
            (Path(tmp) / name).write_text(text)
        cpps = [str(Path(tmp) / n) for n in sorted(sources) if n.endswith(".cpp")]
        so_tmp = Path(tmp) / "lib.so"
        cmd = [
            cxx,
            *flags,
            "-I",
            tmp,
            "-I",
            str(INCLUDE_DIR),
            "-I",
            str(ap_types_dir()),
            *cpps,
            "-o",
            str(so_tmp),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise CsimError(f"g++ failed on generated code ({' '.join(cmd)}):\n{r.stderr[-4000:]}")
        fd, staged = tempfile.mkstemp(dir=out.parent, suffix=".so.tmp")
        os.close(fd)
        Path(staged).write_bytes(so_tmp.read_bytes())
        os.replace(staged, out)  # atomic: concurrent builds of the same key are harmless
    return out


def csim_wrapper(kernels: list[KernelSource]) -> str:
    """extern "C" entry points for ctypes: one per kernel, plus the counters."""
    lines = ['#include "codax_hls.h"']
    for k in kernels:
        lines.append(f'#include "{k.ident}.h"')
    lines.append('extern "C" {')
    for k in kernels:
        proto = next(ln for ln in k.header.splitlines() if ln.startswith("void ")).rstrip(";")
        args = proto[proto.index("(") + 1 : -1]
        names = [a.strip().split()[-1].lstrip("*") for a in args.split(",")]
        lines.append(
            f"{proto.replace(k.ident + '(', k.ident + '_c(', 1)} {{ {k.ident}({', '.join(names)}); }}"
        )
    lines += [
        "void codax_counts_reset(void) { codax::counts_reset(); }",
        "void codax_counts_get(unsigned long long *dst) {",
        "  const codax::Counts &c = codax::counts();",
        "  for (int h = 0; h < CODAX_MAX_LEVELS; ++h)",
        "    for (int x = 0; x < 3; ++x) {",
        "      dst[h * 3 + x] = c.in[h][x];",
        "      dst[CODAX_MAX_LEVELS * 3 + h * 3 + x] = c.out[h][x];",
        "    }",
        "  dst[CODAX_MAX_LEVELS * 6] = c.macs;",
        "}",
        "}",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Counts:
    """Words moved per level (by name) and operand, and MACs, as counted by an instrumented csim."""

    words_in: dict[str, dict[str, int]]
    words_out: dict[str, dict[str, int]]
    macs: int


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


class LayerKernel:
    """One layer's kernel, compiled (or fetched from the cache) and callable on numpy arrays."""

    def __init__(
        self,
        layer: Layer,
        accel: Accelerator,
        mapping: Mapping,
        types: KernelTypes | None = None,
        count: bool = False,
        ident: str = "codax_kernel",
    ) -> None:
        validate_mapping(layer, accel, mapping)
        self.layer, self.accel, self.mapping, self.count = layer, accel, mapping, count
        self.src = emit_kernel(layer, accel, mapping, ident, types)
        self.types = self.src.types
        sources = {
            f"{ident}.h": self.src.header,
            f"{ident}.cpp": self.src.source,
            "csim_entry.cpp": csim_wrapper([self.src]),
        }
        self.path = build_library(sources, count=count)
        self.lib = ctypes.CDLL(str(self.path))
        self.fn = getattr(self.lib, f"{ident}_c")
        vp, f32, i32 = ctypes.c_void_p, ctypes.c_float, ctypes.c_int
        self.fn.argtypes = [vp] * 7 + [f32, i32, i32, i32, i32, f32, f32]
        self.fn.restype = None

    def __call__(self, params: LayerParams, x: np.ndarray, residual: np.ndarray | None = None):
        """Run the layer: returns (y [N, G*K, P, Q] or [N, K], Counts or None)."""
        lay, t = self.layer, self.types
        xw = np.ascontiguousarray(as_nchw(lay, x), dtype=t.dtype("I"))
        w = np.ascontiguousarray(params.weight, dtype=t.dtype("W"))
        out_shape = (lay.N, lay.G * lay.K, lay.P, lay.Q)
        y = np.zeros(out_shape, dtype=t.dtype("Y"))
        psum = np.zeros(out_shape, dtype=t.dtype("ACC"))
        bias = None
        if lay.epilogue.bias:
            b = params.bias if params.bias is not None else np.zeros(lay.G * lay.K)
            bias = np.ascontiguousarray(b, dtype=t.dtype("ACC"))
        res = None
        if lay.epilogue.residual:
            if residual is None:
                raise ValueError(f"layer {lay.name} fuses a residual add: pass `residual`")
            res = np.ascontiguousarray(np.asarray(residual).reshape(out_shape), dtype=t.dtype("R"))
        m = np.ascontiguousarray(params.multiplier if t.kind == "int" else np.ones(1), dtype=np.float32)
        lo, hi = params.clamp
        if self.count:
            self.lib.codax_counts_reset()
        self.fn(
            _ptr(w), _ptr(xw), _ptr(y), _ptr(psum), _ptr(bias), _ptr(res), _ptr(m),
            float(params.r_multiplier) if t.kind == "int" else 1.0,
            int(params.w_zero_point), int(params.x_zero_point), int(params.r_zero_point),
            int(params.y_zero_point), float(lo), float(hi),
        )  # fmt: skip
        counts = self._counts() if self.count else None
        if lay.op == "matmul":
            y = y.reshape(lay.N, lay.K)
        return y, counts

    def _counts(self) -> Counts:
        raw = (ctypes.c_ulonglong * (MAX_LEVELS * 6 + 1))()
        self.lib.codax_counts_get(raw)
        names = self.accel.engine(self.mapping.engine).level_names
        w_in = {lv: {op: int(raw[h * 3 + x]) for x, op in enumerate(OPERANDS)} for h, lv in enumerate(names)}
        w_out = {
            lv: {op: int(raw[MAX_LEVELS * 3 + h * 3 + x]) for x, op in enumerate(OPERANDS)}
            for h, lv in enumerate(names)
        }
        return Counts(w_in, w_out, int(raw[MAX_LEVELS * 6]))


def run_layer(
    layer: Layer,
    accel: Accelerator,
    mapping: Mapping,
    params: LayerParams,
    x: np.ndarray,
    residual: np.ndarray | None = None,
    count: bool = False,
):
    """Compile (cached) and run one layer in C-simulation: (y, Counts or None)."""
    k = LayerKernel(layer, accel, mapping, KernelTypes.for_layer(layer, params), count=count)
    return k(params, x, residual)
