"""``relax.ext.codax`` on the accelerator's engine: every offloaded layer is one call of the engine.

:class:`EngineKernelFactory` is the BYOC kernel factory (codax.codegen.byoc.glue): for each offloaded
layer it writes a small ``extern "C"`` adapter with the BYOC layer ABI that holds the layer's
descriptor (codax.codegen.program) and its part of the weights blob, packs the input and residual to
the layer's widths, calls the engine entry and unpacks the output. The engine itself
(codax.codegen.engine, the same sources the Vitis project holds) is compiled once per accelerator
into an object every offloaded function links. ``tvm.compile`` then gives one executable whose
offloaded layers run on the engine in C-simulation and everything else on the CPU::

    mod = codax.passes.pipeline(accel)(import_onnx("net.onnx"))
    ex = build_executable(mod, accel)
    vm = tvm.relax.VirtualMachine(ex, tvm.cpu())

What the factory recovers for one ``LayerSpec``:
- ``Layer``: ``codax.layer_json`` on the offloaded function (written by ``MapLayers``), or the Layer
  of the mapped module passed in;
- ``Mapping``: ``mappings[layer.name]`` when the caller passes mappings (a dict, a mappings.yaml path
  or a mapped IRModule), else ``codax.mapping`` from the attributes;
- ``LayerParams``: ``params[layer.name]`` when the caller passes them (the compile flow passes the
  ONNX model's, which the golden model uses too), else read off the composite
  (codax.codegen.byoc.composite).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm

from codax.codegen.byoc import glue
from codax.codegen.byoc.composite import layer_operands, layer_params
from codax.codegen.byoc.glue import KernelSource, LayerSpec, c_array, embed_bytes
from codax.codegen.csim import compile_cached
from codax.codegen.engine import INCLUDE_DIR, engine_sources
from codax.codegen.nest import plan
from codax.codegen.params import LayerParams
from codax.codegen.program import Widths, single_layer_call
from codax.errors import CodaxError, ModelError, UnsupportedError
from codax.ir import Accelerator, Layer, Mapping, load_mappings, validate_mapping
from codax.passes import attrs as A

#: marks a unit as an engine call (tests and users can grep the generated sources for it)
MARKER = "// codax-engine-call:"
ADAPTER_HEADER = "codax_byoc_adapter.h"


@dataclass
class EngineCall:
    """What the factory made for one layer (kept on the factory for inspection)."""

    c_name: str
    layer: Layer
    mapping: Mapping
    params: LayerParams
    descriptor: np.ndarray
    source: KernelSource


class EngineKernelFactory:
    """A BYOC kernel factory running every offloaded layer on ``accel``'s engine.

    ``mappings``: optional override of the mapping (and, for a module, the layer) per layer name -- a
    ``{name: Mapping}`` dict, a mappings.yaml path or an IRModule after ``MapLayers``. ``params``:
    optional ``{layer name: LayerParams}`` (e.g. from the ONNX model). Every call made is recorded in
    :attr:`calls` (by ``spec.c_name``)."""

    def __init__(
        self, accel: Accelerator, mappings=None, params: dict[str, LayerParams] | None = None
    ) -> None:
        self.accel = accel
        self.layers: dict[str, Layer] = {}
        self.mappings: dict[str, Mapping] = {}
        self.params = dict(params or {})
        if isinstance(mappings, tvm.IRModule):
            for name, off in A.offloaded_layers(mappings).items():
                self.layers[name] = off.layer
                if off.mapping is not None:
                    self.mappings[name] = off.mapping
        elif isinstance(mappings, (str, Path)):
            self.mappings = load_mappings(mappings)
        elif mappings is not None:
            self.mappings = dict(mappings)
        self.calls: dict[str, EngineCall] = {}
        self._engine_object: Path | None = None
        self._registered = False

    @property
    def engine_object(self) -> Path:
        """The engine compiled once for this accelerator (cached by its sources' content hash)."""
        if self._engine_object is None:
            files = {k: v for k, v in engine_sources(self.accel).files.items() if k != "top.cpp"}
            self._engine_object = compile_cached(files, kind="object")
        return self._engine_object

    def _layer_mapping(self, spec: LayerSpec) -> tuple[Layer, Mapping]:
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
            missing = "codax.layer_json" if layer is None else "codax.mapping"
            raise CodaxError(
                f"{spec.composite} (layer {name}): no {missing} on the offloaded function; run "
                "codax.passes.pipeline(accel) (MapLayers) before building, or pass the mappings"
            )
        return layer, mapping

    def __call__(self, spec: LayerSpec) -> KernelSource:
        layer, mapping = self._layer_mapping(spec)
        validate_mapping(layer, self.accel, mapping)
        data, res, wt = layer_operands(spec)
        params = self.params.get(layer.name) or layer_params(spec, layer)
        src, desc = self._unit(spec, layer, mapping, params, data, res, wt)
        self.calls[spec.c_name] = EngineCall(spec.c_name, layer, mapping, params, desc, src)
        return src

    def _unit(
        self, spec, layer, mapping, params, data: int, res: int | None, wt: int | None
    ) -> tuple[KernelSource, np.ndarray]:
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
        n_w = layer.operand_size("W")
        if bool(layer.runtime_weight) != (wt is not None):
            kind = "a run-time tensor" if layer.runtime_weight else "constant"
            raise ModelError(
                f"layer {layer.name}: the layer's weight is {kind} but the composite's is not; "
                "re-run the pipeline"
            )
        if wt is not None and spec.params[wt].size != n_w:
            raise ModelError(
                f"layer {layer.name}: run-time weight of shape {spec.params[wt].shape}, need {n_w}"
            )
        used = {data} | ({res} if res is not None else set()) | ({wt} if wt is not None else set())
        extra = [i for i in range(len(spec.params)) if i not in used]
        if extra:
            raise UnsupportedError(f"layer {layer.name}: composite parameters {extra} are not data/residual")
        wd = Widths.of(layer, params)
        floats = [spec.params[data].dtype, spec.output.dtype] + (
            [spec.params[res].dtype] if res is not None else []
        )
        if any(t.startswith("float") for t in floats) != wd.is_float:
            raise UnsupportedError(
                f"layer {layer.name}: Relax dtypes {floats} do not match the layer's "
                f"{'float' if wd.is_float else 'integer'} precision"
            )
        blob, desc = single_layer_call(plan(layer, self.accel, mapping), self.accel, params, wd)
        c = spec.c_name
        sym = engine_sources(self.accel).entries[mapping.engine]
        r_ptr = f"p{res}" if res is not None else f"({spec.output.ctype} *)0"
        w_arg = f"p{wt}, {n_w}L, {wd.w}" if wt is not None else "(const int8_t *)0, 0L, 8"
        code = "\n".join(
            [
                f"{MARKER} layer {_comment(layer.name)} on engine {_comment(mapping.engine)} of "
                f"{_comment(self.accel.name)}",
                f'#include "{ADAPTER_HEADER}"',
                f'extern "C" void {sym}(const int32_t *, int, int, const uint8_t *, const uint8_t *, '
                "uint8_t *, const uint8_t *, uint8_t *, const uint8_t *);",
                c_array(f"{c}_desc", desc, "int32"),
                embed_bytes(f"{c}_blob", blob),
                f"{spec.prototype()} {{",
                f"  return codax_byoc::call({sym}, {c}_desc, {c}_blob, p{data}, {n_in}L, {wd.x}, {r_ptr}, "
                f"{wd.r}, out, {n_out}L, {wd.y}, {str(wd.y_signed).lower()}, {4 * n_out}L, {w_arg});",
                "}",
                "",
            ]
        )
        return (
            KernelSource(code, [str(INCLUDE_DIR)], [], [self.engine_object]),
            desc,
        )

    # -- activation
    def register(self) -> EngineKernelFactory:
        if not self._registered:
            glue.register(self)
            self._registered = True
        return self

    def close(self) -> None:
        glue.unregister(self)
        self._registered = False

    def __enter__(self) -> EngineKernelFactory:
        return self.register()

    def __exit__(self, *exc) -> None:
        self.close()


def build_executable(
    mod: tvm.IRModule,
    accel: Accelerator,
    target="llvm",
    *,
    mappings=None,
    params: dict[str, LayerParams] | None = None,
    options: dict | None = None,
    factory: EngineKernelFactory | None = None,
    **compile_kwargs,
):
    """A ``codax.passes.pipeline(accel)`` output -> ``tvm.runtime.Executable`` whose offloaded layers
    run on the accelerator's engine in C-simulation (RunCodegen with the engine factory, then
    ``tvm.compile``). Pass ``factory`` to inspect the calls it made afterwards."""
    factory = factory or EngineKernelFactory(accel, mappings, params)
    with factory:
        lowered = glue.run_codegen(mod, options)
    return tvm.compile(lowered, target=target, **compile_kwargs)


def _comment(s: str) -> str:
    return "".join(ch if ch.isprintable() and ch != "\\" else "?" for ch in str(s))[:120]
