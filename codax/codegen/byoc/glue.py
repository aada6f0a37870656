"""TVM BYOC codegen ``relax.ext.codax``: offloaded Relax functions become C-simulated kernels.

Flow. A partition pass (``FuseOpsByPattern(..., annotate_codegen=True)`` or ``MergeCompositeFunctions``)
leaves functions with ``Codegen="codax"`` whose bodies call *composite* functions (one per accelerator
layer, ``Composite="codax.<kind>"``). ``relax.transform.RunCodegen`` hands them to :func:`_codegen`, which
for each offloaded function

1. asks a *kernel factory* for the C++ of every layer (:class:`LayerSpec` in, :class:`KernelSource` out);
2. writes a glue translation unit that exports ``__tvm_ffi_<global_symbol>`` with the TVM FFI
   packed-function ABI: it checks the ``DLTensor`` arguments (device, dtype, shape, compactness),
   allocates intermediates and calls the layers in order;
3. compiles every unit with g++ to one relocatable object (``g++ -r``), cached by content hash, and
   returns it as ``tvm.runtime.load_static_library(obj, [symbol])``.

``RunCodegen`` rewrites the calls into ``R.call_dps_packed("<symbol>", ...)`` and records the modules
under the IRModule attribute ``external_mods``; ``tvm.compile`` links them with the LLVM host code. A
static-library module is not runnable as is: ``relax.VirtualMachine(ex, dev)`` calls ``ex.jit()``,
which exports and reloads a shared library; ``ex.export_library("x.so")`` links the object into the
``.so``, loadable in a fresh process with ``tvm.runtime.load_module`` (no codax import needed).

Layer ABI (what a factory's C++ must define)::

    extern "C" int <spec.c_name>(const T0* p0, ..., const Tn* pn, To* out);   // 0 on success

one pointer per parameter of the composite function, in order, then the output; ``T`` is the C type
of the dtype (``float``, ``int8_t``, ``int32_t``, ... see :data:`C_TYPES`), buffers are dense
row-major in the Relax layout. Weights the partitioner bound into the composite body
(``bind_constants=True``) are in ``spec.constants``: the kernel bakes them (:func:`c_array`). With
``bind_constants=False`` they are parameters like any other and arrive as pointers at run time (the
VM stores them in the executable). The glue declares the prototype above in the layer's unit, so a
mismatching definition is a compile error rather than a wrong result.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from codax.codegen.csim import compile_cached
from codax.errors import CodaxError, UnsupportedError

CODEGEN = "codax"

#: Relax dtype -> C type used in kernel signatures and baked arrays.
C_TYPES = {
    "float32": "float",
    "float64": "double",
    "int8": "int8_t",
    "uint8": "uint8_t",
    "int16": "int16_t",
    "uint16": "uint16_t",
    "int32": "int32_t",
    "int64": "int64_t",
}
_DL_CODE = {"int": 0, "uint": 1, "float": 2}


@dataclass(frozen=True)
class TensorInfo:
    """A static-shape tensor operand of a kernel."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def ctype(self) -> str:
        if self.dtype not in C_TYPES:
            raise UnsupportedError(
                f"{self.name}: dtype {self.dtype} has no codax kernel type; supported: {', '.join(C_TYPES)}"
            )
        return C_TYPES[self.dtype]

    @property
    def size(self) -> int:
        return prod(self.shape)


@dataclass
class LayerSpec:
    """One accelerator layer: a composite function and what the factory needs to emit its kernel.

    ``attrs`` merges the offloaded function's attributes with the composite's (the composite wins), so
    ``attrs.get("codax.layer")`` or a mapping annotation is found wherever the passes put it.
    ``constants`` maps each ``tvm.ir.Constant`` bound in ``func`` to a C identifier and its value.
    """

    c_name: str
    composite: str
    func: relax.Function
    params: list[TensorInfo]
    output: TensorInfo
    attrs: dict[str, object] = field(default_factory=dict)
    constants: dict[tvm.ir.Constant, tuple[str, np.ndarray]] = field(default_factory=dict)

    @property
    def layer(self) -> str | None:
        value = self.attrs.get("codax.layer")
        return None if value is None else str(value)

    def prototype(self) -> str:
        args = [f"const {p.ctype}* p{i}" for i, p in enumerate(self.params)]
        return f'extern "C" int {self.c_name}({", ".join([*args, f"{self.output.ctype}* out"])})'


@dataclass
class KernelSource:
    """C++ source of one layer plus what compiling it needs."""

    code: str
    include_dirs: list[str] = field(default_factory=list)
    cflags: list[str] = field(default_factory=list)
    objects: list[Path] = field(default_factory=list)  # prebuilt objects to link in (e.g. the engine)


KernelFactory = Callable[[LayerSpec], "KernelSource | str | None"]
_FACTORIES: list[KernelFactory] = []


def register(factory: KernelFactory) -> KernelFactory:
    """Register a kernel factory (usable as a decorator). Later registrations are asked first; a
    factory returns ``None`` to decline a layer; a layer no factory takes is an UnsupportedError."""
    _FACTORIES.insert(0, factory)
    return factory


def unregister(factory: KernelFactory) -> None:
    """Remove a factory added with :func:`register` (no error if it is not registered)."""
    if factory in _FACTORIES:
        _FACTORIES.remove(factory)


# ----------------------------------------------------------------------------------------------
# helpers for kernel writers


def c_array(name: str, value: np.ndarray, dtype: str | None = None) -> str:
    """A ``static const`` C array holding ``value`` exactly (floats as hexadecimal literals)."""
    dtype = dtype or str(value.dtype)
    flat = np.ascontiguousarray(value).reshape(-1)
    if dtype.startswith("float"):
        suffix = "f" if dtype == "float32" else ""

        def fmt(x: float) -> str:  # hexadecimal literals are exact
            if np.isnan(x):
                return '__builtin_nan("")'
            if np.isinf(x):
                return ("-" if x < 0 else "") + "__builtin_inf()"
            return float.hex(x) + suffix

        items = [fmt(float(x)) for x in flat]
    else:
        items = [str(int(x)) for x in flat]
    rows = ",\n  ".join(", ".join(items[i : i + 16]) for i in range(0, len(items), 16))
    return f"static const {C_TYPES[dtype]} {name}[{max(len(items), 1)}] = {{\n  {rows}\n}};\n"


def embed_bytes(name: str, data: bytes) -> str:
    """``extern "C" const uint8_t <name>[]`` holding `data`, embedded by the assembler (``.incbin`` of a
    content-addressed file in the build cache): megabytes of weights cost no C++ parsing, and the
    file's hash in the source keeps the object cache exact."""
    from codax.codegen.csim import cache_dir

    key = hashlib.sha256(data).hexdigest()[:32]
    path = cache_dir() / "blobs" / f"{key}.bin"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return (
        f'__asm__(".section .rodata\\n.balign 64\\n.globl {name}\\n.hidden {name}\\n{name}:\\n'
        f'.incbin \\"{path}\\"\\n.byte 0\\n.previous");  // {len(data)} B, sha256 {key}\n'
        f'extern "C" const uint8_t {name}[];\n'
    )


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def _tensor_info(name: str, ty) -> TensorInfo:
    """TensorInfo of a Relax ``TensorType`` (this TVM's replacement of ``TensorStructInfo``)."""
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise UnsupportedError(f"{name}: codax kernels take tensors, got {ty}")
    try:
        shape = tuple(int(d) for d in ty.shape.values)
    except (TypeError, ValueError, AttributeError) as err:
        raise UnsupportedError(f"{name}: codax kernels need static shapes, got {ty.shape}") from err
    return TensorInfo(name, shape, str(ty.dtype))


def _is_tensor_const(expr) -> bool:
    """A tensor literal (``tvm.ir.GenericConst`` holding a runtime tensor), not an IntImm in a shape."""
    return isinstance(expr, tvm.ir.Constant) and isinstance(getattr(expr, "value", None), tvm.runtime.Tensor)


def _bindings(func: relax.Function) -> list:
    body = func.body
    if not isinstance(body, relax.SeqExpr):
        return []
    return [b for block in body.blocks for b in block.bindings]


# ----------------------------------------------------------------------------------------------
# codegen: offloaded function -> glue + layer sources -> object -> static-library module


@dataclass
class GeneratedFunction:
    """Sources generated for one offloaded function (``units[0]`` is the glue)."""

    symbol: str
    units: list[tuple[str, KernelSource]]
    layers: list[LayerSpec]


def _attrs(func: relax.Function) -> dict[str, object]:
    return {str(k): v for k, v in func.attrs.items()} if func.attrs is not None else {}


def _layer_source(spec: LayerSpec) -> KernelSource:
    for factory in _FACTORIES:
        src = factory(spec)
        if src is not None:
            return KernelSource(src) if isinstance(src, str) else src
    raise UnsupportedError(
        f"{spec.composite} (layer {spec.layer}): no kernel factory produced code for this layer; build with "
        "codax.codegen.byoc.build_executable(mod, accel), which runs every layer on the accelerator's engine"
    )


_GLUE_HEAD = r"""#include <tvm/ffi/c_api.h>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

static int codax_fail(const std::string& msg) {
  TVMFFIErrorSetRaisedFromCStr("ValueError", msg.c_str());
  return -1;
}

// Fetch argument i as a CPU DLTensor of the expected dtype and shape, dense row-major.
static int codax_tensor(const TVMFFIAny* args, int i, const char* sym, uint8_t code, uint8_t bits,
                        int ndim, const int64_t* shape, void** data) {
  const TVMFFIAny* a = &args[i];
  DLTensor* t = nullptr;
  if (a->type_index == kTVMFFIDLTensorPtr) t = static_cast<DLTensor*>(a->v_ptr);
  else if (a->type_index == kTVMFFITensor) t = TVMFFITensorGetDLTensorPtr(a->v_obj);
  std::string where = std::string(sym) + ": argument " + std::to_string(i);
  if (t == nullptr) return codax_fail(where + " is not a tensor");
  if (t->device.device_type != kDLCPU) return codax_fail(where + " is not on the CPU");
  if (t->dtype.code != code || t->dtype.bits != bits || t->dtype.lanes != 1)
    return codax_fail(where + " has the wrong dtype");
  bool same = t->ndim == ndim;
  for (int d = 0; same && d < ndim; ++d) same = t->shape[d] == shape[d];
  if (!same) {
    std::string got, want;
    for (int d = 0; d < t->ndim; ++d) got += std::to_string(t->shape[d]) + (d + 1 < t->ndim ? "," : "");
    for (int d = 0; d < ndim; ++d) want += std::to_string(shape[d]) + (d + 1 < ndim ? "," : "");
    return codax_fail(where + " has shape (" + got + "), expected (" + want + ")");
  }
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (t->strides != nullptr && t->shape[d] != 1 && t->strides[d] != stride)
      return codax_fail(where + " is not compact row-major");
    stride *= shape[d];
  }
  *data = static_cast<char*>(t->data) + t->byte_offset;
  return 0;
}
"""


def generate(func: relax.Function) -> GeneratedFunction:
    """Generate the glue and layer sources of one ``Codegen="codax"`` function (no compilation)."""
    fattrs = _attrs(func)
    symbol = str(fattrs.get("global_symbol", ""))
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", symbol):
        raise UnsupportedError(f"offloaded function symbol {symbol!r} is not a C identifier")
    params = [_tensor_info(p.name, p.ty) for p in func.params]
    ptr: list[tuple[object, str, TensorInfo]] = [
        (p, f"d{k}", i) for k, (p, i) in enumerate(zip(func.params, params))
    ]

    ret = func.body.body if isinstance(func.body, relax.SeqExpr) else func.body
    ret_fields = list(ret.fields) if isinstance(ret, relax.Tuple) else [ret]
    outs = [_tensor_info(f"output {k}", f.ty) for k, f in enumerate(ret_fields)]
    nin = len(params)

    def lookup(expr) -> tuple[str, TensorInfo] | None:
        for key, ref, info in ptr:
            if key.same_as(expr):
                return ref, info
        return None

    local_funcs: list[tuple[object, relax.Function]] = []
    layers: list[LayerSpec] = []
    calls: list[str] = []
    glue_consts: list[str] = []
    temps: list[str] = []
    for b in _bindings(func):
        value = b.value
        if isinstance(value, relax.Function):
            local_funcs.append((b.var, value))
            continue
        comp = None
        if isinstance(value, relax.Call):
            if isinstance(value.op, relax.Function):
                comp = value.op
            else:
                comp = next((f for v, f in local_funcs if v.same_as(value.op)), None)
        if comp is None or "Composite" not in _attrs(comp):
            raise UnsupportedError(
                f"{symbol}: binding {b.var.name} is not a call to a codax composite "
                "function; offloaded functions may only chain composite layers"
            )
        cattrs = _attrs(comp)
        c_name = f"codax_{symbol}_l{len(layers)}"
        consts: dict = {}  # constants bound in the composite, in post order: the factory bakes them

        def visit(e, consts=consts, c_name=c_name):
            if _is_tensor_const(e) and not any(e.same_as(k) for k in consts):
                consts[e] = (f"{c_name}_w{len(consts)}", e.value.numpy())

        relax.analysis.post_order_visit(comp.body, visit)
        args: list[str] = []
        for a in value.args:
            found = lookup(a)
            if found is None and _is_tensor_const(a):
                cname = f"g_const{len(glue_consts)}"
                info = _tensor_info(cname, a.ty)
                glue_consts.append(c_array(cname, a.value.numpy(), info.dtype))
                ptr.append((a, cname, info))
                found = (cname, info)
            if found is None:
                raise UnsupportedError(
                    f"{symbol}: argument {a} of {b.var.name} is not a parameter, a "
                    "constant or an earlier layer's result"
                )
            args.append(f"(const {found[1].ctype}*){found[0]}")
        spec = LayerSpec(
            c_name=c_name,
            composite=str(cattrs["Composite"]),
            func=comp,
            params=[_tensor_info(p.name, p.ty) for p in comp.params],
            output=_tensor_info(b.var.name, b.var.ty),
            attrs={**fattrs, **cattrs},
            constants=consts,
        )
        out_idx = next((k for k, f in enumerate(ret_fields) if f.same_as(b.var)), None)
        if out_idx is not None:
            dst = f"({spec.output.ctype}*)d{nin + out_idx}"
        else:
            dst = f"t{len(temps)}.data()"
            temps.append(f"    std::vector<{spec.output.ctype}> t{len(temps)}({spec.output.size});")
        ptr.append((b.var, dst, spec.output))
        calls.append(
            f"    if ({c_name}({', '.join([*args, dst])}) != 0)\n"
            f'      return codax_fail(std::string(kSym) + ": kernel {c_name} ({spec.composite}) failed");'
        )
        layers.append(spec)
    if not layers:
        raise UnsupportedError(f"{symbol}: offloaded function has no codax layer")
    for k, f in enumerate(ret_fields):  # each output must be written by exactly one layer call
        produced = lookup(f) is not None and not any(f.same_as(q) for q in func.params)
        if not produced or sum(f.same_as(other) for other in ret_fields) > 1:
            raise UnsupportedError(f"{symbol}: output {k} is not a distinct result of a codax layer")

    units: list[tuple[str, KernelSource]] = []
    sources = [_layer_source(spec) for spec in layers]
    for spec, src in zip(layers, sources):
        units.append(
            (
                f"{spec.c_name}.cc",
                KernelSource(
                    f"#include <cstdint>\n{spec.prototype()};\n\n{src.code}",
                    src.include_dirs,
                    src.cflags,
                    src.objects,
                ),
            )
        )

    tensors = [*params, *outs]
    fetch = []
    for k, t in enumerate(tensors):
        base, bits = re.fullmatch(r"([a-z]+?)(\d+)", t.dtype).groups()
        shape = ", ".join(str(d) for d in t.shape) or "0"
        fetch.append(
            f"    static const int64_t s{k}[] = {{{shape}}};\n    void* d{k} = nullptr;\n"
            f"    if (codax_tensor(args, {k}, kSym, {_DL_CODE[base]}, {bits}, {len(t.shape)}, s{k}, &d{k}))"
            " return -1;"
        )
    glue = "\n".join(
        [
            _GLUE_HEAD,
            *(spec.prototype() + ";" for spec in layers),
            "",
            *glue_consts,
            f'extern "C" TVM_FFI_DLL_EXPORT int __tvm_ffi_{symbol}(void*, const TVMFFIAny* args, '
            "int32_t num_args, TVMFFIAny*) {",
            f'  static const char* kSym = "{symbol}";',
            f"  if (num_args != {len(tensors)})",
            f'    return codax_fail(std::string(kSym) + ": expects {len(tensors)} tensors");',
            "  try {",
            *fetch,
            *temps,
            *calls,
            "  } catch (const std::exception& e) {",
            '    return codax_fail(std::string(kSym) + ": " + e.what());',
            "  }",
            "  return 0;",
            "}",
            "",
        ]
    )
    return GeneratedFunction(symbol, [(f"{symbol}_glue.cc", KernelSource(glue)), *units], layers)


def compile_function(gen: GeneratedFunction, options: dict | None = None) -> Path:
    """Compile a generated function (its units and the prebuilt objects they name) to one relocatable
    object with codax's one toolchain and cache (codax.codegen.csim.compile_cached)."""
    options = options or {}
    units = [src for _, src in gen.units]
    include_dirs = [tvm_ffi.libinfo.find_include_path(), tvm_ffi.libinfo.find_dlpack_include_path()]
    include_dirs += [d for src in units for d in src.include_dirs]
    flags = ["-std=c++17", *[str(f) for f in options.get("cflags", ["-O2"])]]
    flags += [f for src in units for f in src.cflags]
    if options.get("source_dir"):
        keep = Path(options["source_dir"])
        keep.mkdir(parents=True, exist_ok=True)
        for name, src in gen.units:
            (keep / name).write_text(src.code)
    return compile_cached(
        {name: src.code for name, src in gen.units},
        kind="object",
        flags=tuple(dict.fromkeys(flags)),
        include_dirs=tuple(dict.fromkeys(str(d) for d in include_dirs)),
        objects=tuple(dict.fromkeys(o for src in units for o in src.objects)),
        cxx=options.get("cxx"),
        cache=options.get("cache_dir"),
    )


def _plain(options) -> dict:
    """RunCodegen options arrive as FFI maps/arrays: make them Python."""
    out = {}
    for k, v in dict(options or {}).items():
        out[str(k)] = [str(x) for x in v] if isinstance(v, list | tuple | tvm_ffi.Array) else v
    return out


_last_error: list[CodaxError] = []
_last_symbols: list[str] = []


@tvm.register_global_func(f"relax.ext.{CODEGEN}", override=True)
def _codegen(funcs, options, constant_names):
    """``relax.ext.codax``: one static-library runtime module per offloaded function.

    ``constant_names`` is unused: constants bound in a function are baked into its object, and
    unbound ones are ordinary call arguments."""
    del constant_names
    options = _plain(options)
    mods = []
    _last_error.clear()
    _last_symbols.clear()
    try:
        gens = [generate(func) for func in funcs]
        _last_symbols.extend(g.symbol for g in gens)
        # functions compile independently: in parallel (each one's units in parallel too)
        with ThreadPoolExecutor(max_workers=max(1, min(len(gens), os.cpu_count() or 1))) as pool:
            objs = list(pool.map(lambda g: compile_function(g, options), gens))
        for gen, obj in zip(gens, objs):
            mods.append(tvm.runtime.load_static_library(str(obj), [gen.symbol]))
    except CodaxError as err:  # the FFI turns it into a RuntimeError: keep it for run_codegen
        _last_error.append(err)
        raise
    return mods


# ----------------------------------------------------------------------------------------------
# user entry points


def offloaded_calls(mod: tvm.IRModule, func: str = "main") -> list[str]:
    """Symbols of the ``call_dps_packed`` calls in ``mod[func]`` (after ``RunCodegen``)."""
    found: list[str] = []
    call_dps = tvm.ir.Op.get("relax.call_dps_packed")

    def visit(e):
        if isinstance(e, relax.Call) and e.op.same_as(call_dps) and isinstance(e.args[0], relax.ExternFunc):
            found.append(str(e.args[0].global_symbol))

    relax.analysis.post_order_visit(mod[func], visit)
    return found


def run_codegen(mod: tvm.IRModule, options: dict | None = None) -> tvm.IRModule:
    """``RunCodegen`` with codax options (``cflags``, ``cxx``, ``cache_dir``, ``source_dir``); a
    :class:`CodaxError` raised by the codegen is re-raised as itself, not as the FFI's RuntimeError."""
    try:
        mod = relax.transform.RunCodegen({CODEGEN: options or {}})(mod)
    except Exception as err:
        if _last_error:
            raise _last_error.pop() from err
        raise
    # RunCodegen also records the offloaded functions' constants under "const_name_to_constant"
    # ("<symbol>_codax_const_<i>"), which VMLink would store a second time in a const_loader module.
    # Ours are baked into the objects already: drop them.
    consts = (
        dict(mod.attrs["const_name_to_constant"])
        if mod.attrs and "const_name_to_constant" in mod.attrs
        else {}
    )
    prefixes = tuple(f"{sym}_{CODEGEN}_const_" for sym in _last_symbols)
    kept = {k: v for k, v in consts.items() if not str(k).startswith(prefixes)}
    if len(kept) != len(consts):
        mod = (
            mod.with_attr("const_name_to_constant", kept)
            if kept
            else mod.without_attr("const_name_to_constant")
        )
    return mod


def build(mod: tvm.IRModule, target="llvm", options: dict | None = None, **compile_kwargs):
    """Partitioned IRModule -> ``tvm.runtime.Executable`` with codax functions running in csim."""
    return tvm.compile(run_codegen(mod, options), target=target, **compile_kwargs)
