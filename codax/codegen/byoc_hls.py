"""``relax.ext.codax`` with the accelerator's HLS kernels: offloaded layers run as C-simulated HLS code.

:mod:`codax.codegen.byoc` compiles every offloaded layer with a pluggable *kernel factory*; its
default is a plain C++ reference kernel. :class:`HLSKernelFactory` replaces it by the kernel that the
HLS emitter (:func:`codax.codegen.hls.emit.emit_kernel`) generates for the layer's ``Mapping`` on the
given accelerator -- the same code :mod:`codax.codegen.csim` runs and Vitis HLS would synthesize --
plus a small ``extern "C"`` adapter with the byoc layer ABI. ``tvm.compile`` then gives one
executable in which offloaded layers run in C-simulation and the rest on the CPU (LLVM)::

    mod = codax.passes.pipeline(accel)(import_onnx("net.onnx"))
    ex = build_hls_executable(mod, accel)                    # or:
    with use_hls_kernels(accel):
        ex = codax.codegen.byoc.build(mod)

What the factory recovers for one ``LayerSpec`` (one composite function):

- ``Layer``: ``codax.layer_json`` (written by ``MapLayers`` on the offloaded function; ``spec.attrs``
  merges it in), or the ``Layer`` of an ``offloaded_layers(mod)`` entry when a module is given.
- ``Mapping``: ``mappings[layer.name]`` when the caller passes mappings (a dict, a mappings.yaml path
  or a mapped IRModule), else ``codax.mapping`` from the attributes. The accelerator always comes
  from the caller (a module does not carry it).
- ``LayerParams``, read off the composite's Relax body (the passes' canonical form):
  float  ``conv2d|matmul(x, W) [+ b] [+ residual] [relu|clip]``: ``W`` OIHW is already
  ``[G*K, C, R, S]``; a matmul weight ``[C, K]`` is transposed to ``[K, C, 1, 1]``; ``b`` flattened.
  int (``LowerQDQ``) ``astype(xq) [- zx] -> conv2d|matmul(., Wq, int32) [+ bq] -> astype * s
  [relu|clip] -> quantize(., sy, zy)``: ``s = s_x * s_w`` (per channel) becomes the kernel's
  ``w_scale`` with ``x_scale = 1``, so the requantization multiplier is ``float32(s / sy)``; ``zx``,
  ``zy``, the signedness (from the dtypes) and the int32 bias are taken as they are.

The adapter bakes weights, bias and multipliers as ``static const`` arrays, allocates the kernel's
partial-sum scratch, converts operands whose memory type differs from the Relax dtype and calls the
kernel with the output clamp of :attr:`LayerParams.clamp`. The data, residual and output tensors are
dense NCHW (dense layers ``[N, C]``), which is the kernel's DRAM layout, so no layout change is made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from codax.codegen import byoc
from codax.codegen.byoc import KernelSource, LayerSpec, c_array
from codax.codegen.csim import INCLUDE_DIR, MAX_LEVELS, ap_types_dir
from codax.codegen.hls import emit as hls_emit
from codax.codegen.hls.types import KernelTypes
from codax.codegen.params import LayerParams
from codax.errors import CodaxError, ModelError, UnsupportedError
from codax.ir import Accelerator, Layer, Mapping, load_mappings, validate_mapping
from codax.passes import attrs as A
from codax.passes.relax_util import const_value, is_constant, op_name

__all__ = ["HLSKernel", "HLSKernelFactory", "build_hls_executable", "layer_params", "use_hls_kernels"]

#: what marks a unit as an HLS kernel (tests and users can grep the generated sources for it)
MARKER = "// codax-byoc-hls:"


@dataclass
class HLSKernel:
    """What the factory made for one layer (kept on the factory for inspection)."""

    c_name: str
    layer: Layer
    mapping: Mapping
    params: LayerParams
    types: KernelTypes
    kernel: hls_emit.KernelSource  # the emitter's header/source
    source: KernelSource  # the unit handed to byoc (adapter + inlined kernel)


# ----------------------------------------------------------------------------------------------
# reading the composite


def _bindings(func: relax.Function) -> list:
    body = func.body
    return [b for blk in body.blocks for b in blk.bindings] if isinstance(body, relax.SeqExpr) else []


def _const(spec: LayerSpec, e) -> np.ndarray | None:
    for k, (_, value) in spec.constants.items():
        if k.same_as(e):
            return value
    return const_value(e) if is_constant(e) else None


def _param_index(spec: LayerSpec, e) -> int | None:
    return next((i for i, p in enumerate(spec.func.params) if p.same_as(e)), None)


@dataclass
class _Body:
    core: relax.Call
    data: int  # composite parameter index of the layer input (xq for integer layers)
    weight: np.ndarray  # as in Relax: OIHW or [C, K]
    bias: np.ndarray | None
    residual: int | None
    integer: bool
    x_zero_point: int = 0
    scale: np.ndarray | None = None  # s_x * s_w (integer layers)
    y_scale: float = 1.0
    y_zero_point: int = 0
    y_dtype: str = "float32"


def _read_body(spec: LayerSpec) -> _Body:  # noqa: C901 - one linear walk over the chain
    binds = _bindings(spec.func)
    values = {}
    for b in binds:
        values[b.var] = b.value

    def val(e):
        for k, v in values.items():
            if k.same_as(e):
                return v
        return e

    def fail(what: str):
        return UnsupportedError(
            f"{spec.composite} (layer {spec.layer}): {what}; the HLS kernel factory reads the codax "
            "partitioner's composite form (conv2d|matmul [+bias] [+residual] [act] or its QDQ-lowered form)"
        )

    core_i = next(
        (i for i, b in enumerate(binds) if op_name(b.value) in ("relax.nn.conv2d", "relax.matmul")), None
    )
    if core_i is None:
        raise fail("no conv2d/matmul in the composite")
    core = binds[core_i].value
    if op_name(core) == "relax.nn.conv2d":
        a = core.attrs
        layouts = (str(a.data_layout), str(a.kernel_layout), str(a.out_layout))
        if layouts != ("NCHW", "OIHW", "NCHW"):
            raise fail(f"conv2d layouts {layouts} (need NCHW/OIHW/NCHW)")
    # data: param, or astype(param) [- zx] for integer layers
    x = val(core.args[0])
    integer, zx = False, 0
    if op_name(x) == "relax.subtract":
        z = _const(spec, x.args[1])
        if z is None or z.size != 1:
            raise fail("input zero point is not a scalar constant")
        zx, x = int(z.reshape(())), val(x.args[0])
        integer = True
    if op_name(x) == "relax.astype":
        x, integer = x.args[0], True
    data = _param_index(spec, x)
    if data is None:
        raise fail("the layer input is not a parameter of the composite")
    w = _const(spec, core.args[1])
    if w is None:
        raise fail("the weight is not a bound constant (partition with bind_constants=True)")
    body = _Body(core, data, w, None, None, integer, x_zero_point=zx)
    prev = binds[core_i].var
    for b in binds[core_i + 1 :]:
        v, name = b.value, op_name(b.value)
        args = list(v.args) if isinstance(v, relax.Call) else []
        if not any(a.same_as(prev) for a in args):
            raise fail(f"binding {b.var.name_hint} does not consume the previous result")
        others = [a for a in args if not a.same_as(prev)]
        if name == "relax.add":
            c = _const(spec, others[0])
            if c is not None:
                body.bias = c.reshape(-1)
            elif _param_index(spec, others[0]) is not None:
                body.residual = _param_index(spec, others[0])
            else:
                raise fail("an add whose operand is neither a constant nor a parameter")
        elif name == "relax.multiply":
            s = _const(spec, others[0])
            if s is None:
                raise fail("a requantization scale that is not a constant")
            body.scale = s.reshape(-1).astype(np.float32)
        elif name == "relax.quantize":
            sy, zy = _const(spec, args[1]), _const(spec, args[2])
            if sy is None or zy is None or sy.size != 1 or zy.size != 1:
                raise fail("quantize with a non-scalar or non-constant scale/zero point")
            body.y_scale, body.y_zero_point = float(sy.reshape(())), int(zy.reshape(()))
            body.y_dtype = str(v.attrs.out_dtype)
        elif name not in ("relax.astype", "relax.nn.relu", "relax.clip"):
            raise fail(f"unexpected {name} in the epilogue")
        prev = b.var
    if body.integer and body.scale is None:
        raise fail("an integer layer without requantization")
    return body


def layer_params(spec: LayerSpec, layer: Layer) -> tuple[LayerParams, int, int | None]:
    """(LayerParams, data parameter index, residual parameter index) of a composite, checked against
    the layer's shape."""
    b = _read_body(spec)
    ch = layer.G * layer.K
    w = b.weight
    if layer.op == "matmul":
        if w.ndim != 2:
            raise UnsupportedError(f"layer {layer.name}: matmul weight of shape {w.shape}, need [C, K]")
        w = np.ascontiguousarray(w.T).reshape(w.shape[1], w.shape[0], 1, 1)
    expect = (ch, layer.C, layer.R, layer.S)
    if tuple(w.shape) != expect:
        raise ModelError(
            f"layer {layer.name}: the composite's weight has shape {tuple(w.shape)} but codax.layer_json "
            f"needs {expect}; re-run the codax pipeline on this module"
        )
    ep = layer.epilogue
    common = dict(activation=ep.activation, clip_min=ep.clip_min, clip_max=ep.clip_max)
    if not b.integer:
        bias = None if b.bias is None else np.broadcast_to(b.bias.astype(np.float32), (ch,)).copy()
        return LayerParams("float", w.astype(np.float32), bias, **common), b.data, b.residual
    x_dtype = spec.params[b.data].dtype
    bias = None if b.bias is None else np.broadcast_to(b.bias.astype(np.int32), (ch,)).copy()
    p = LayerParams(
        "int",
        w,
        bias,
        w_scale=np.broadcast_to(b.scale, (ch,)).astype(np.float32),
        w_zero_point=0,
        x_scale=1.0,
        x_zero_point=b.x_zero_point,
        y_scale=b.y_scale,
        y_zero_point=b.y_zero_point,
        w_signed=w.dtype.kind == "i",
        x_signed=not x_dtype.startswith("uint"),
        y_signed=not b.y_dtype.startswith("uint"),
        y_bits=np.dtype(b.y_dtype).itemsize * 8,
        **common,
    )
    return p, b.data, b.residual


# ----------------------------------------------------------------------------------------------
# the factory


def _flit(v: float) -> str:
    if np.isinf(v):
        return ("-" if v < 0 else "") + "__builtin_inff()"
    return float.hex(float(np.float32(v))) + "f"


@dataclass(frozen=True)
class _Deps:
    include_dirs: tuple[str, ...]
    cflags: tuple[str, ...]
    stamp: str  # content hash of the headers: byoc's object cache keys on the code, not on includes


def _deps() -> _Deps:
    hdr = (INCLUDE_DIR / "codax_hls.h").read_bytes()
    ap = ap_types_dir()
    h = hashlib.sha256(hdr)
    for f in sorted(ap.glob("*.h")):
        h.update(f.name.encode() + f.read_bytes())
    # -std=gnu++14 overrides byoc's -std=c++17: csim builds the ap_types headers as C++14, and the GNU
    # dialect accepts the hexadecimal float literals of byoc.c_array (standard only from C++17)
    flags = ("-std=gnu++14", "-ffp-contract=off", "-w", f"-DCODAX_MAX_LEVELS={MAX_LEVELS}")
    return _Deps((str(INCLUDE_DIR), str(ap)), flags, h.hexdigest()[:16])


class HLSKernelFactory:
    """A byoc kernel factory: the accelerator's HLS kernel for every offloaded layer.

    ``accel``: the accelerator the module was mapped for. ``mappings``: optional override of the
    mapping (and, for a module, the layer) per layer name -- a ``{name: Mapping}`` dict, a
    mappings.yaml path or an IRModule after ``MapLayers``. ``strict``: a layer without a Layer or
    Mapping raises (default); with ``strict=False`` it is declined and gets byoc's reference kernel.
    Every kernel made is recorded in :attr:`kernels` (by ``spec.c_name``).
    """

    def __init__(self, accel: Accelerator, mappings=None, *, strict: bool = True) -> None:
        self.accel = accel
        self.strict = strict
        self.layers: dict[str, Layer] = {}
        self.mappings: dict[str, Mapping] = {}
        if isinstance(mappings, tvm.IRModule):
            for name, off in A.offloaded_layers(mappings).items():
                self.layers[name] = off.layer
                if off.mapping is not None:
                    self.mappings[name] = off.mapping
        elif isinstance(mappings, (str, Path)):
            self.mappings = load_mappings(mappings)
        elif mappings is not None:
            self.mappings = dict(mappings)
        self.kernels: dict[str, HLSKernel] = {}
        self._deps: _Deps | None = None
        self._registered = False

    # -- recovering Layer and Mapping
    def _layer_mapping(self, spec: LayerSpec) -> tuple[Layer, Mapping] | None:
        name = spec.layer
        lj = spec.attrs.get(A.LAYER_JSON)
        layer = self.layers.get(name) if name is not None else None
        if layer is None and lj is not None:
            layer = Layer.from_dict(json.loads(str(lj)))
        mapping = self.mappings.get(layer.name if layer is not None else name)
        mj = spec.attrs.get(A.MAPPING)
        if mapping is None and mj is not None:
            mapping = Mapping.from_dict(json.loads(str(mj)))
        if layer is None or mapping is None:
            if not self.strict:
                return None
            missing = "codax.layer_json" if layer is None else "codax.mapping"
            raise CodaxError(
                f"{spec.composite} (layer {name}): no {missing} on the offloaded function; run "
                "codax.passes.pipeline(accel) (MapLayers) before building with HLS kernels, or pass "
                "the mappings to use_hls_kernels"
            )
        return layer, mapping

    def __call__(self, spec: LayerSpec) -> KernelSource | None:
        lm = self._layer_mapping(spec)
        if lm is None:
            return None
        layer, mapping = lm
        validate_mapping(layer, self.accel, mapping)
        params, data, res = layer_params(spec, layer)
        types = KernelTypes.for_layer(layer, params)
        ident = f"{spec.c_name}_hls"
        kernel = hls_emit.emit_kernel(layer, self.accel, mapping, ident, types)
        src = self._unit(spec, layer, params, types, kernel, data, res)
        self.kernels[spec.c_name] = HLSKernel(spec.c_name, layer, mapping, params, types, kernel, src)
        return src

    # -- the translation unit: kernel (header inlined) + adapter
    def _unit(self, spec, layer, params, types, kernel, data: int, res: int | None) -> KernelSource:
        if self._deps is None:
            self._deps = _deps()
        deps = self._deps
        h, w = layer.in_hw
        n_in = layer.N * layer.G * layer.C * h * w
        n_out = layer.N * layer.G * layer.K * layer.P * layer.Q
        if spec.params[data].size != n_in or spec.output.size != n_out:
            raise ModelError(
                f"layer {layer.name}: the composite has input {spec.params[data].shape} and output "
                f"{spec.output.shape} but the layer needs {n_in} and {n_out} elements; re-run the pipeline"
            )
        if layer.epilogue.residual and res is None:
            raise ModelError(f"layer {layer.name}: the layer fuses a residual but the composite has none")
        if res is not None and spec.params[res].size != n_out:
            raise ModelError(f"layer {layer.name}: residual of shape {spec.params[res].shape}")
        used = {data} | ({res} if res is not None else set())
        extra = [i for i in range(len(spec.params)) if i not in used]
        if extra:
            raise UnsupportedError(f"layer {layer.name}: composite parameters {extra} are not data/residual")

        c = spec.c_name
        lines: list[str] = []
        body: list[str] = []

        def operand(i: int, mem: str) -> str:
            """The kernel pointer for composite parameter i, converted when the C types differ."""
            info = spec.params[i]
            if info.ctype == mem:
                return f"p{i}"
            body.append(f"  std::vector<{mem}> cv{i}(p{i}, p{i} + {info.size});")
            return f"cv{i}.data()"

        # a float kernel does not saturate to the output's integer type: only same-kind conversions
        def same_kind(a: str, b: str) -> bool:
            return (a in ("float", "double")) == (b in ("float", "double"))

        if not same_kind(spec.params[data].ctype, types.mem("I")) or not same_kind(
            spec.output.ctype, types.mem("Y")
        ):
            raise UnsupportedError(
                f"layer {layer.name}: Relax dtypes {spec.params[data].dtype} -> {spec.output.dtype} do not "
                f"match the {types.kind} kernel ({types.mem('I')} -> {types.mem('Y')})"
            )
        lines.append(c_array(f"{c}_W", params.weight, str(types.dtype("W"))))
        acc_dt = str(types.dtype("ACC"))
        bias_ptr = "nullptr"
        if layer.epilogue.bias:
            b = params.bias if params.bias is not None else np.zeros(layer.G * layer.K)
            lines.append(c_array(f"{c}_B", np.asarray(b).astype(acc_dt), acc_dt))
            bias_ptr = f"{c}_B"
        mult = params.multiplier if types.kind == "int" else np.ones(1, np.float32)
        lines.append(c_array(f"{c}_M", mult.astype(np.float32), "float32"))
        x_ptr = operand(data, types.mem("I"))
        r_ptr = operand(res, types.mem("R")) if res is not None else "nullptr"
        y_mem = types.mem("Y")
        if spec.output.ctype == y_mem:
            y_ptr, copy_back = "out", []
        else:
            body.append(f"  std::vector<{y_mem}> yv({n_out});")
            y_ptr = "yv.data()"
            copy_back = [f"  for (long i = 0; i < {n_out}; ++i) out[i] = ({spec.output.ctype})yv[i];"]
        lo, hi = params.clamp
        m_res = float(params.r_multiplier) if types.kind == "int" else 1.0
        ints = (params.w_zero_point, params.x_zero_point, params.r_zero_point, params.y_zero_point)
        kcall = (
            f"  {kernel.ident}({c}_W, {x_ptr}, {y_ptr}, psum.data(), {bias_ptr}, {r_ptr}, {c}_M, "
            f"{_flit(m_res)}, {', '.join(str(int(z)) for z in ints)}, {_flit(lo)}, {_flit(hi)});"
        )
        header = "\n".join(ln for ln in kernel.header.splitlines() if ln.strip() != "#pragma once")
        source = kernel.source.replace(f'#include "{kernel.ident}.h"', header, 1)
        code = "\n".join(
            [
                f"{MARKER} layer {hls_emit._comment(layer.name)} on {hls_emit._comment(self.accel.name)}, "
                f"headers {deps.stamp}",
                "#include <vector>",
                source,
                "// ---- byoc adapter: the relax.ext.codax layer ABI -> the HLS kernel ABI",
                *lines,
                f"{spec.prototype()} {{",
                *body,
                f"  std::vector<{types.mem('ACC')}> psum({n_out});",
                kcall,
                *copy_back,
                "  return 0;",
                "}",
                "",
            ]
        )
        return KernelSource(code, list(deps.include_dirs), list(deps.cflags))

    # -- activation
    def register(self) -> HLSKernelFactory:
        if not self._registered:
            byoc.register(self)
            self._registered = True
        return self

    def close(self) -> None:
        byoc.unregister(self)
        self._registered = False

    def __enter__(self) -> HLSKernelFactory:
        return self.register()

    def __exit__(self, *exc) -> None:
        self.close()


def use_hls_kernels(accel: Accelerator, mappings_or_mod=None, *, strict: bool = True) -> HLSKernelFactory:
    """Register an :class:`HLSKernelFactory` for ``accel`` now and return it; use it as a context
    manager (``with use_hls_kernels(accel): ...``) or call ``.close()`` to unregister it."""
    return HLSKernelFactory(accel, mappings_or_mod, strict=strict).register()


def build_hls_executable(
    mod: tvm.IRModule,
    accel: Accelerator,
    target="llvm",
    *,
    mappings=None,
    options: dict | None = None,
    factory: HLSKernelFactory | None = None,
    **compile_kwargs,
):
    """A ``codax.passes.pipeline(accel)`` output -> ``tvm.runtime.Executable`` whose offloaded layers
    run the accelerator's HLS kernels in C-simulation (RunCodegen with the HLS factory, then
    ``tvm.compile``). Pass ``factory`` to inspect the kernels it made afterwards."""
    factory = factory or HLSKernelFactory(accel, mappings)
    with factory:
        lowered = byoc.run_codegen(mod, options)
    return tvm.compile(lowered, target=target, **compile_kwargs)
