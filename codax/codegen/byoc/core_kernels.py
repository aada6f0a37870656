"""``relax.ext.codax`` on the GEMM core: every offloaded layer is one program of LOAD / GEMM / STORE
instructions, run by the core's C-simulation inside the executable.

:class:`CoreKernelFactory` is the BYOC kernel factory (codax.codegen.byoc.glue) for the core
(docs/engine_core.md), the counterpart of :class:`~codax.codegen.byoc.engine_kernels.EngineKernelFactory`.
For each offloaded layer it compiles the layer's core program (codax.codegen.core_compile.compile_layer:
the instruction words and the DRAM image of weights, parameters and micro-ops, with the input, residual
and output regions) and writes a small ``extern "C"`` adapter with the BYOC layer ABI that holds them and,
per call, copies the image, writes the input (and residual) into their regions in the core's blocked
layout, runs the instructions on the core and reads the output region back into the layer's layout. All
of it is C++: the executable never calls back into Python.

The core itself -- the same C-simulation sources codax.codegen.core_sim loads (the IPs, the block
design's buffers, the dispatch of one instruction) -- plus :data:`RUNTIME_UNIT` (the blocked layout and
the token scheduler core_sim.Engine runs, in C++) is compiled once per core shape into one object every
offloaded function links (:func:`core_object`)::

    mod = codax.passes.pipeline(accel)(import_onnx("net.onnx"))
    ex = build_core_executable(mod, accel)
    vm = tvm.relax.VirtualMachine(ex, tvm.cpu())

Every offloaded function links its own copy of that object, so the core's buffers and DRAM (global in
its sources) are made local to the object (and its COMDAT groups plain sections), and only the three
runtime entries stay global: weak and hidden, so the copies' entries resolve to one at link time and
nothing is exported from the executable.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tvm

from codax.codegen import core_isa
from codax.codegen.byoc.composite import layer_operands, layer_params
from codax.codegen.byoc.engine_kernels import EngineKernelFactory, build_executable
from codax.codegen.byoc.glue import KernelSource, LayerSpec, embed_bytes
from codax.codegen.core import CoreShape
from codax.codegen.core_compile import CoreLayer, CoreProgram, compile_layer
from codax.codegen.core_load import vector_beats
from codax.codegen.csim import CsimError, compile_cached
from codax.codegen.params import LayerParams
from codax.errors import CodaxError, ModelError, UnsupportedError
from codax.ir import Accelerator, Layer
from codax.passes import attrs as A

#: marks a unit as a core call (tests and users can grep the generated sources for it)
MARKER = "// codax-core-call:"
RUNTIME_UNIT = "core_byoc_runtime.cpp"
ENTRIES = ("codax_core_byoc_put", "codax_core_byoc_run", "codax_core_byoc_get")

#: The runtime entries the adapters call. The tensors are [C, H, W] integers of `elem` bytes (negative:
#: signed); a region holds them channel-blocked -- vectors [ceil(C / COLS)][H][W] of COLS lanes at `bits`
#: each, lane i at bit i * bits, least significant first, each vector padded to `vec_bytes` -- as
#: core_compile.blocked / unblocked lay them out. The scheduler is core_sim.Engine.run's (without the
#: timing): the first module, load before gemm before store, whose next instruction's tokens are there.
_DECL = 'extern "C" __attribute__((visibility("hidden"), weak))'
_USE = 'extern "C" __attribute__((visibility("hidden")))'  # an adapter's declaration: a strong reference
#: how a shared library of the runtime exports the entries instead (for ctypes)
EXPORTED = '-DCODAX_CORE_BYOC_ENTRY=extern "C"'
RUNTIME = f"""
// C-simulation only: the BYOC adapters' entries into the core (codax/codegen/byoc/core_kernels.py).
#ifndef CODAX_CORE_BYOC_ENTRY
#define CODAX_CORE_BYOC_ENTRY {_DECL}
#endif
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>
#include "codax_core.h"

extern "C" void codax_core_dram_put(const unsigned char *bytes, long beats);
extern "C" void codax_core_dram_get(unsigned char *bytes, long first, long beats);
extern "C" void codax_core_exec(unsigned long long lo, unsigned long long hi);

static long long codax_byoc_elem(const void *src, long i, int elem) {{
  switch (elem) {{
    case 1: return ((const unsigned char *)src)[i];
    case -1: return ((const signed char *)src)[i];
    case 2: return ((const unsigned short *)src)[i];
    case -2: return ((const short *)src)[i];
    case 4: return ((const unsigned int *)src)[i];
    case -4: return ((const int *)src)[i];
  }}
  throw std::runtime_error("tensor element of " + std::to_string(elem) + " bytes");
}}

CODAX_CORE_BYOC_ENTRY void codax_core_byoc_put(unsigned char *region, const void *src, int elem, long c,
                                                long h, long w, int bits, int cols, long vec_bytes) {{
  const long blocks = (c + cols - 1) / cols;
  const unsigned long long mask = (1ULL << bits) - 1;
  for (long b = 0; b < blocks; ++b)
    for (long p = 0; p < h * w; ++p) {{
      unsigned char *vec = region + (b * h * w + p) * vec_bytes;
      for (long i = 0; i < vec_bytes; ++i) vec[i] = 0;
      for (int lane = 0; lane < cols && b * cols + lane < c; ++lane) {{
        const unsigned long long v = (unsigned long long)codax_byoc_elem(src, (b * cols + lane) * h * w + p,
                                                                         elem) & mask;
        for (int k = 0; k < bits; ++k)
          if ((v >> k) & 1) vec[(lane * bits + k) >> 3] |= (unsigned char)(1u << ((lane * bits + k) & 7));
      }}
    }}
}}

CODAX_CORE_BYOC_ENTRY void codax_core_byoc_get(const unsigned char *region, void *dst, int elem, long c,
                                                long h, long w, int bits, int is_signed, int cols,
                                                long vec_bytes) {{
  for (long ch = 0; ch < c; ++ch)
    for (long p = 0; p < h * w; ++p) {{
      const unsigned char *vec = region + ((ch / cols) * h * w + p) * vec_bytes;
      const int lane = (int)(ch % cols);
      unsigned long long v = 0;
      for (int k = 0; k < bits; ++k)
        v |= (unsigned long long)((vec[(lane * bits + k) >> 3] >> ((lane * bits + k) & 7)) & 1) << k;
      const bool neg = is_signed && ((v >> (bits - 1)) & 1);
      const long long s = neg ? (long long)v - (1LL << bits) : (long long)v;
      const long at = ch * h * w + p;
      switch (elem < 0 ? -elem : elem) {{
        case 1: ((unsigned char *)dst)[at] = (unsigned char)s; break;
        case 2: ((unsigned short *)dst)[at] = (unsigned short)s; break;
        case 4: ((unsigned int *)dst)[at] = (unsigned int)s; break;
        default: throw std::runtime_error("tensor element of " + std::to_string(elem) + " bytes");
      }}
    }}
}}

// The program (`count` words of 16 bytes, little-endian) on the DRAM image `dram` (`beats` beats, read
// back into it): each instruction through its IP in the order core_sim.Engine.run's scheduler takes.
CODAX_CORE_BYOC_ENTRY void codax_core_byoc_run(unsigned char *dram, long beats, const unsigned char *program,
                                                long count) {{
  using namespace codax_core;
  static std::mutex lock;  // one core: its buffers and DRAM are global to the C-simulation
  std::lock_guard<std::mutex> guard(lock);
  std::vector<unsigned long long> lo(count), hi(count);
  std::vector<long> queues[3];
  for (long i = 0; i < count; ++i) {{
    lo[i] = hi[i] = 0;
    for (int k = 0; k < 8; ++k) {{
      lo[i] |= (unsigned long long)program[16 * i + k] << (8 * k);
      hi[i] |= (unsigned long long)program[16 * i + 8 + k] << (8 * k);
    }}
    const int op = decode_gemm((insn_t(hi[i]) << 64) | insn_t(lo[i])).opcode.to_int();
    if (op == OP_LOAD) queues[0].push_back(i);  // FINISH ends the program: no module runs it
    if (op == OP_GEMM) queues[1].push_back(i);
    if (op == OP_STORE) queues[2].push_back(i);
  }}
  codax_core_dram_put(dram, beats);
  long tokens[3][3] = {{{{0}}}};  // tokens[from][to] pushed and not yet popped
  long heads[3] = {{0, 0, 0}};
  while (heads[0] < (long)queues[0].size() || heads[1] < (long)queues[1].size() ||
         heads[2] < (long)queues[2].size()) {{
    bool ran = false;
    for (int m = 0; m < 3 && !ran; ++m) {{
      if (heads[m] >= (long)queues[m].size()) continue;
      const long i = queues[m][heads[m]];
      const GemmInsn f = decode_gemm((insn_t(hi[i]) << 64) | insn_t(lo[i]));
      const bool prev = m > 0 && f.pop_prev, next = m < 2 && f.pop_next;
      if ((prev && !tokens[m - 1][m]) || (next && !tokens[m + 1][m])) continue;
      if (prev) --tokens[m - 1][m];
      if (next) --tokens[m + 1][m];
      codax_core_exec(lo[i], hi[i]);
      if (m > 0 && f.push_prev) ++tokens[m][m - 1];
      if (m < 2 && f.push_next) ++tokens[m][m + 1];
      ++heads[m];
      ran = true;
    }}
    if (!ran)
      throw std::runtime_error("the core's program deadlocks: load at " + std::to_string(heads[0]) +
                               ", gemm at " + std::to_string(heads[1]) + ", store at " +
                               std::to_string(heads[2]));
  }}
  codax_core_dram_get(dram, 0, beats);
}}
"""


def core_object(shape: CoreShape) -> Path:
    """The core's C-simulation (codax.codegen.core_sim.engine_sources) and :data:`RUNTIME` as one
    relocatable object, compiled once per core shape (cached by content), its symbols local but the
    runtime entries'."""
    from codax.codegen.core_sim import engine_sources

    # no STB_GNU_UNIQUE symbols (inline functions' statics): objcopy could not make them local
    obj = compile_cached(
        {**engine_sources(shape), RUNTIME_UNIT: RUNTIME}, kind="object", flags=("-fno-gnu-unique",)
    )
    out = obj.with_name(f"{obj.stem}.byoc.o")
    if not out.exists():
        # every symbol local but the entries, and no COMDAT groups: a group another copy of the object
        # also has would be discarded at link time, leaving this copy's local references dangling
        keep = [f"--keep-global-symbol={e}" for e in ENTRIES] + ["--remove-section=.group"]
        fd, staged = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
        os.close(fd)
        r = subprocess.run(["objcopy", *keep, str(obj), staged], capture_output=True, text=True)
        if r.returncode != 0:
            Path(staged).unlink(missing_ok=True)
            raise CsimError(f"objcopy failed on the core's object {obj}: {r.stderr[-2000:]}")
        os.replace(staged, out)  # atomic: concurrent builds of the same key are harmless
    return out


@dataclass
class CoreCall:
    """What the factory made for one layer (kept on the factory for inspection)."""

    c_name: str
    layer: Layer
    params: LayerParams
    program: CoreProgram
    source: KernelSource


class CoreKernelFactory(EngineKernelFactory):
    """A BYOC kernel factory running every offloaded layer on ``accel``'s GEMM core.

    ``mappings`` (a mapped IRModule gives the layers) and ``params`` as for
    :class:`~codax.codegen.byoc.engine_kernels.EngineKernelFactory`; the core tiles a layer itself, so
    a mapping is not needed. Every call made is recorded in :attr:`calls` (by ``spec.c_name``)."""

    def __init__(
        self, accel: Accelerator, mappings=None, params: dict[str, LayerParams] | None = None
    ) -> None:
        from codax.codegen.core_project import shape_for

        super().__init__(accel, mappings, params)
        self.shape = shape_for(accel)  # an accelerator the core cannot be is refused, named, here
        self.calls: dict[str, CoreCall] = {}  # type: ignore[assignment]
        self._core_object: Path | None = None

    @property
    def engine_object(self) -> Path:
        """The core compiled once for this accelerator's shape (:func:`core_object`)."""
        if self._core_object is None:
            self._core_object = core_object(self.shape)
        return self._core_object

    def _layer(self, spec: LayerSpec) -> Layer:
        layer = self.layers.get(spec.layer) if spec.layer is not None else None
        lj = spec.attrs.get(A.LAYER_JSON)
        if layer is None and lj is not None:
            layer = Layer.from_dict(json.loads(str(lj)))
        if layer is None:
            raise CodaxError(
                f"{spec.composite} (layer {spec.layer}): no codax.layer_json on the offloaded function; run "
                "codax.passes.pipeline(accel) (MapLayers) before building, or pass the mapped module"
            )
        return layer

    def __call__(self, spec: LayerSpec) -> KernelSource:
        layer = self._layer(spec)
        data, res, wt = layer_operands(spec)
        if wt is not None or layer.runtime_weight:
            raise UnsupportedError(
                f"layer {layer.name}: a run-time weight tensor; the core loads constant weights "
                "(build with the descriptor engine: build_executable(mod, accel))"
            )
        params = self.params.get(layer.name) or layer_params(spec, layer)
        try:
            cl = CoreLayer.of(layer, params)
            prog = compile_layer(self.shape, cl)
        except UnsupportedError as e:
            msg = str(e)
            raise UnsupportedError(msg if layer.name in msg else f"layer {layer.name}: {msg}") from None
        src = self._unit(spec, layer, cl, prog, data, res)
        self.calls[spec.c_name] = CoreCall(spec.c_name, layer, params, prog, src)
        return src

    def _unit(self, spec, layer: Layer, cl: CoreLayer, prog: CoreProgram, data: int, res: int | None):
        shape = self.shape
        h, w = layer.in_hw
        n_in, n_out = cl.c * h * w, cl.k * layer.P * layer.Q
        if spec.params[data].size != n_in or spec.output.size != n_out:
            raise ModelError(
                f"layer {layer.name}: the composite has input {spec.params[data].shape} and output "
                f"{spec.output.shape} but the layer needs {n_in} and {n_out} elements; re-run the pipeline"
            )
        if cl.residual and res is None:
            raise ModelError(f"layer {layer.name}: the layer fuses a residual but the composite has none")
        if res is not None and (not cl.residual or spec.params[res].size != n_out):
            raise ModelError(f"layer {layer.name}: residual of shape {spec.params[res].shape}")
        used = {data} | ({res} if res is not None else set())
        extra = [i for i in range(len(spec.params)) if i not in used]
        if extra:
            raise UnsupportedError(f"layer {layer.name}: composite parameters {extra} are not data/residual")
        tensors = [spec.params[data], spec.output] + ([spec.params[res]] if res is not None else [])
        if any(not t.dtype.startswith(("int", "uint")) or t.dtype.endswith("64") for t in tensors):
            raise UnsupportedError(
                f"layer {layer.name}: Relax dtypes {[t.dtype for t in tensors]}; the core runs integer "
                "tensors of 8, 16 or 32 bits"
            )
        c = spec.c_name
        bb = shape.beat_bits // 8
        out_hw = (layer.P, layer.Q)
        vec = {b: vector_beats(shape, b) * bb for b in (cl.x_bits, cl.y_bits, cl.r_bits)}
        lines = [
            f"{MARKER} layer {_comment(layer.name)} on the core of {_comment(self.accel.name)} "
            f"({len(prog.insns)} instructions, {len(prog.dram)} B of DRAM)",
            "#include <stdexcept>",
            "#include <string>",
            "#include <vector>",
            f"{_USE} void codax_core_byoc_put(unsigned char *, const void *, int, long, long, long, int, "
            "int, long);",
            f"{_USE} void codax_core_byoc_get(const unsigned char *, void *, int, long, long, long, int, "
            "int, int, long);",
            f"{_USE} void codax_core_byoc_run(unsigned char *, long, const unsigned char *, long);",
            embed_bytes(f"{c}_image", bytes(prog.dram)),
            embed_bytes(f"{c}_program", core_isa.program_bytes(prog.insns)),
            f"{spec.prototype()} {{",
            "  try {",
            f"    std::vector<unsigned char> {c}_dram({c}_image, {c}_image + {len(prog.dram)}L);",
            _put_call(c, prog, bb, "input", f"p{data}", spec.params[data], cl.c, (h, w), cl.x_bits,
                      shape.cols, vec[cl.x_bits]),
        ]  # fmt: skip
        if res is not None:
            lines.append(_put_call(c, prog, bb, "residual", f"p{res}", spec.params[res], cl.k, out_hw,
                                   cl.r_bits, shape.cols, vec[cl.r_bits]))  # fmt: skip
        first = prog.regions["output"][0]
        lines += [
            f"    codax_core_byoc_run({c}_dram.data(), {len(prog.dram) // bb}L, {c}_program, "
            f"{len(prog.insns)}L);",
            f"    codax_core_byoc_get({c}_dram.data() + {first * bb}L, out, {_elem(spec.output)}, {cl.k}L, "
            f"{layer.P}L, {layer.Q}L, {cl.y_bits}, {int(cl.y_signed)}, {shape.cols}, {vec[cl.y_bits]}L);",
            "  } catch (const std::exception &e) {",
            f'    throw std::runtime_error(std::string("layer {_comment(layer.name)} on the core: ") + '
            "e.what());",
            "  }",
            "  return 0;",
            "}",
            "",
        ]
        return KernelSource("\n".join(lines), [], [], [self.engine_object])


def _elem(t) -> int:
    """A tensor's element for put / get: its bytes, negative when signed."""
    bits = int(t.dtype.removeprefix("u").removeprefix("int"))
    return bits // 8 * (1 if t.dtype.startswith("u") else -1)


def _put_call(c, prog, bb, region, ptr, t, channels, hw, bits, cols, vec_bytes) -> str:
    return (
        f"    codax_core_byoc_put({c}_dram.data() + {prog.regions[region][0] * bb}L, {ptr}, {_elem(t)}, "
        f"{channels}L, {hw[0]}L, {hw[1]}L, {bits}, {cols}, {vec_bytes}L);"
    )


def build_core_executable(
    mod: tvm.IRModule,
    accel: Accelerator,
    target="llvm",
    *,
    mappings=None,
    params: dict[str, LayerParams] | None = None,
    options: dict | None = None,
    factory: CoreKernelFactory | None = None,
    **compile_kwargs,
):
    """A ``codax.passes.pipeline(accel)`` output -> ``tvm.runtime.Executable`` whose offloaded layers run
    on the accelerator's GEMM core in C-simulation (RunCodegen with the core factory, then
    ``tvm.compile``). Pass ``factory`` to inspect the calls it made afterwards."""
    factory = factory or CoreKernelFactory(accel, mappings, params)
    return build_executable(mod, accel, target, options=options, factory=factory, **compile_kwargs)


def _comment(s: str) -> str:
    return "".join(ch if ch.isprintable() and ch not in '\\"' else "?" for ch in str(s))[:120]
