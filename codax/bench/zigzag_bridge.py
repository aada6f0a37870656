"""Bridge to ZigZag's own cost model and LOMA temporal mapper, one layer at a time.

This module lets codax ask ZigZag (``zigzag-dse``, import name ``zigzag``) two questions about a single
conv / dense layer, with plain-Python inputs and outputs:

* :func:`evaluate_fixed` -- what does ZigZag's cost model say about *this* spatial mapping and *this*
  temporal loop ordering?  Exactly one ``CostModelEvaluation``, no search of any kind.
* :func:`search_loma` -- what is the best mapping ZigZag's LOMA mapper finds (and, when no spatial mapping
  is given, ZigZag's own spatial-mapping generator)?

Its cost model and mapper are ZigZag's alone (the standard library, numpy and zigzag), so it serves as an
independent reference ("golden") model; only :func:`conv_layers_from_onnx` reads ONNX models, through
codax's frontend (one ONNX reader for the whole project).

Dimension vocabulary
--------------------
codax loop dims map one-to-one onto ZigZag's conv loop dims::

    codax  N  G  K  C  P   Q   R   S
    ZigZag B  G  K  C  OY  OX  FY  FX

``K`` and ``C`` are *per group* (as in ZigZag's ONNX parser: a depthwise conv is ``G=channels, K=C=1``).
Every result (spatial unrollings, temporal loops) is reported back in codax names.  Operands keep ZigZag's
layer-operand names ``"W"``, ``"I"``, ``"O"``; they are linked to the memory operands ``I2``, ``I1``, ``O``
exactly as in every bundled ZigZag mapping file.

Workload dict (what ZigZag's ``WorkloadParserStage`` accepts as a list-of-dict workload)
-------------------------------------------------------------------------------------------
:func:`workload_dict` builds one layer in ZigZag's own user format, validated by ZigZag's
``WorkloadValidator`` and turned into a ``LayerNode`` by ZigZag's ``LayerNodeFactory`` (the same two calls
``WorkloadParserStage`` makes)::

    {"id": 0, "name": "conv", "operator_type": "Conv",
     "equation": "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]",
     "dimension_relations": ["ix=<sw>*ox+<dw>*fx", "iy=<sh>*oy+<dh>*fy"],
     "loop_dims": ["B", "G", "K", "C", "OY", "OX", "FY", "FX"], "loop_sizes": [N, G, K, C, P, Q, R, S],
     "operand_precision": {"W": w_bits, "I": i_bits, "O": acc_bits, "O_final": o_bits},
     "operand_source": {"W": 0, "I": 0},            # source == own id -> constant operand (no producer)
     "pr_loop_dims": ["IY", "IX"],
     "padding": [[top, bottom], [left, right]],      # per pr dim: (before, after)
     "pr_loop_sizes": [H_in, W_in]}                  # only when ZigZagLayer.input_hw is known

The equation is the one ZigZag's ONNX ``ConvParser`` emits.  Without ``pr_loop_sizes`` ZigZag derives the
input extent as ``s*(P-1) + d*(R-1) + 1 - pad_before - pad_after``; :func:`conv_layers_from_onnx` fills
``input_hw`` so the bundled models see exactly the ONNX input size.  Dense / Gemm layers use the same conv
equation with ``P=Q=R=S=1`` (codax has no separate GEMM vocabulary); cost-wise this is identical to
ZigZag's ``C/D/K`` Gemm form.

Precisions: ``O`` is the partial-sum precision and ``O_final`` the precision of finished outputs.  The
defaults (8/8/8, psum 16) are exactly what ZigZag's ONNX parser uses (``O = 2 * act``) and what its
example workloads declare.

Mapping dict and how a fixed temporal ordering is passed
--------------------------------------------------------
:func:`mapping_entries` builds ZigZag's mapping user format (``MappingValidator`` schema)::

    [{"name": "default",
      "spatial_mapping": {"D1": ["K, 32"], "D2": ["C, 32"]},      # "<ZigZag dim>, <factor>" strings
      "temporal_ordering": [["FX", 3], ["FY", 3], ["C", 2], ...],  # innermost loop first, ZigZag dims
      "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}]

``temporal_ordering`` becomes the layer's ``LayerTemporalOrdering``.  ZigZag's
``TemporalMappingGeneratorStage`` checks whether it is *complete* (the product of the factors per dim equals
the temporal loop size left after spatial unrolling, ceil-divided for non-divisor unrollings).  If it is,
ZigZag skips LOMA and runs only its ``MemoryAllocator`` (which assigns the ordered loops bottom-up to the
memory levels) and one ``CostModelEvaluation``.  If it is *not* complete ZigZag silently treats it as a
set of constraints and runs a LOMA search; the bridge therefore refuses incomplete orderings
(``ValueError``) so that :func:`evaluate_fixed` never searches.  For :func:`evaluate_fixed` an OA dimension
missing from ``spatial`` (or given ``[]``) unrolls nothing; for :func:`search_loma` a partial spatial mapping
is ZigZag's template and the missing OA dimensions are generated.  ZigZag may still reduce a requested
unrolling that exceeds the layer size, the array size or an inner memory's capacity; the result reports
the spatial mapping ZigZag used.

Speed
-----
The YAML accelerator is parsed once per file and cached (ZigZag objects are treated as read-only).
:class:`FixedEvaluator` builds the ``LayerNode`` and runs ZigZag's ``SpatialMappingGeneratorStage`` +
``SpatialMappingConversionStage`` once per (layer, hardware, spatial); each temporal ordering then costs one
``TemporalMappingGeneratorStage`` (-> ``MemoryAllocator``) + ``CostModelStage``.  Use
:func:`evaluate_fixed_many` (or a :class:`FixedEvaluator`) to time many orderings fairly.

Side effects
------------
Nothing is written to disk: the bridge only uses in-memory stages (no save / pickle / visualisation
stages, so there is no dump folder at all).  ZigZag's loggers are held at ``WARNING`` during each call and
LOMA's tqdm progress bar is disabled.

Results
-------
``latency_cycles`` is ZigZag's ``latency_total2`` (what its API returns); ``utilization`` is
``mac_utilization2 = ideal_cycle / latency_total2``; the remaining latency terms are in
``ZigZagResult.latency_breakdown``.  ``temporal`` is ZigZag's loop ordering, innermost first (the
concatenation over memory levels of what ``MemoryAllocator`` allocated, identical for every operand);
feeding it back to :func:`evaluate_fixed` with the same ``spatial`` reproduces the evaluation exactly.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import numbers
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CODAX_TO_ZIGZAG",
    "ZIGZAG_TO_CODAX",
    "FixedEvaluator",
    "InfeasibleMappingError",
    "ZigZagLayer",
    "ZigZagResult",
    "available_hardware",
    "available_workloads",
    "bundled_default_spatial",
    "conv_layers_from_onnx",
    "describe_hardware",
    "evaluate_fixed",
    "evaluate_fixed_many",
    "hardware_path",
    "load_accelerator",
    "mapping_entries",
    "search_loma",
    "workload_dict",
    "workload_onnx_path",
]

CODAX_TO_ZIGZAG: dict[str, str] = {
    "N": "B",
    "G": "G",
    "K": "K",
    "C": "C",
    "P": "OY",
    "Q": "OX",
    "R": "FY",
    "S": "FX",
}
ZIGZAG_TO_CODAX: dict[str, str] = {v: k for k, v in CODAX_TO_ZIGZAG.items()}

CONV_EQUATION = "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]"
MEMORY_OPERAND_LINKS = {"O": "O", "W": "I2", "I": "I1"}
_DIRECTIONS = ("rd_out_to_low", "wr_in_by_low", "rd_out_to_high", "wr_in_by_high")
_WORKLOADS = ("resnet18", "mobilenetv2", "alexnet")

Objective = Literal["latency", "energy", "EDP"]
Spatial = dict[str, list[tuple[str, int]]]
Temporal = list[tuple[str, int]]


class InfeasibleMappingError(ValueError):
    """The given temporal ordering / spatial mapping does not fit the memory hierarchy (ZigZag's
    ``MemoryTooSmallException`` / ``MemoryHierarchyTooSmallException``)."""


# ----------------------------------------------------------------------------------------------------
# Plain-Python data
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZigZagLayer:
    """One conv / dense layer in codax's loop-dim vocabulary.

    ``P, Q`` are output rows / cols (ZigZag ``OY, OX``), ``R, S`` kernel rows / cols (``FY, FX``), ``K, C``
    output / input channels *per group*, ``G`` groups, ``N`` batch.  ``stride`` and ``dilation`` are
    ``(rows, cols)``; ``padding`` is ``(top, left, bottom, right)`` (the ONNX ``pads`` order for 2-D).
    ``o_bits`` is the final-output precision, ``acc_bits`` the partial-sum precision (ZigZag ``O``; its ONNX
    parser and examples use ``2 * i_bits = 16``).  ``input_hw`` optionally pins the (unpadded) input
    extent ``(H, W)``; without it ZigZag derives it from the output size, kernel, stride, dilation and
    padding.  ``op_type`` is ZigZag's ``operator_type`` (only used to pick a mapping entry / for display).
    """

    name: str
    N: int
    G: int
    K: int
    C: int
    P: int
    Q: int
    R: int
    S: int
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    w_bits: int = 8
    i_bits: int = 8
    o_bits: int = 8
    acc_bits: int = 16
    input_hw: tuple[int, int] | None = None
    op_type: str = "Conv"

    def __post_init__(self) -> None:
        # accept lists (e.g. from JSON) but store tuples so the layer stays hashable (it is a cache key)
        for attr in ("stride", "dilation", "padding", "input_hw"):
            value = getattr(self, attr)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, attr, tuple(int(v) for v in value))
        for attr in (*CODAX_TO_ZIGZAG, "w_bits", "i_bits", "o_bits", "acc_bits"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"layer {self.name!r}: {attr} must be a positive int, got {value!r}")
            object.__setattr__(self, attr, int(value))  # numpy ints -> int
        if len(self.stride) != 2 or len(self.dilation) != 2 or len(self.padding) != 4:
            raise ValueError(f"layer {self.name!r}: stride/dilation need 2 values, padding 4 (t, l, b, r)")
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(f"layer {self.name!r}: bad stride/dilation/padding")

    @property
    def dims(self) -> dict[str, int]:
        """Loop sizes in codax names."""
        return {d: getattr(self, d) for d in CODAX_TO_ZIGZAG}

    @property
    def macs(self) -> int:
        return math.prod(self.dims.values())


@dataclass
class ZigZagResult:
    """One ZigZag cost-model evaluation, in codax names.

    ``accesses[op][memory_name]`` holds, for the four ZigZag data directions (``rd_out_to_low``,
    ``wr_in_by_low``, ``rd_out_to_high``, ``wr_in_by_high``): ``"words"`` (ZigZag's ``memory_word_access``:
    accesses in units of the port's max bandwidth, multiplied by the number of unrolled memory instances),
    ``"elems"`` (ZigZag's per-unit-memory data element move counts, ``DATA_ELEM_MOVE_COUNT``) and
    ``"energy_pj"`` (per-direction energy); plus ``"total_energy_pj"``.
    """

    latency_cycles: float
    energy_pj: float
    mac_energy_pj: float
    mem_energy_pj: float
    spatial: Spatial
    temporal: Temporal
    temporal_per_level: dict[str, list[list[tuple[str, int]]]]
    accesses: dict[str, dict[str, dict[str, Any]]]
    utilization: float
    wall_s: float
    mem_levels: dict[str, list[str]] = field(default_factory=dict)
    latency_breakdown: dict[str, float] = field(default_factory=dict)
    spatial_utilization: float = 0.0
    macs: int = 0
    n_evaluated: int = 1
    hardware: str = ""
    layer_name: str = ""

    @property
    def edp(self) -> float:
        return self.energy_pj * self.latency_cycles


# ----------------------------------------------------------------------------------------------------
# ZigZag plumbing
# ----------------------------------------------------------------------------------------------------
def _zigzag_dir() -> str:
    import zigzag

    return os.path.dirname(os.path.abspath(zigzag.__file__))


@contextlib.contextmanager
def _quiet(level: int = logging.WARNING) -> Iterator[None]:
    """Hold ZigZag's loggers at ``level`` (its stages log at INFO) without touching the root logger."""
    logger = logging.getLogger("zigzag")
    old = logger.level
    logger.setLevel(max(level, old) if old != logging.NOTSET else level)
    try:
        yield
    finally:
        logger.setLevel(old)


def available_hardware() -> list[str]:
    """Names of the accelerator YAMLs bundled with ZigZag (``inputs/hardware``)."""
    folder = os.path.join(_zigzag_dir(), "inputs", "hardware")
    return sorted(f[: -len(".yaml")] for f in os.listdir(folder) if f.endswith(".yaml"))


def hardware_path(name: str) -> str:
    """Path of a ZigZag accelerator YAML: a bundled name (``"tpu_like"``, ``"eyeriss_like"``, ...) or an
    existing ``.yaml`` path.  Raises ``ValueError`` naming the bundled accelerators otherwise."""
    if name.endswith((".yaml", ".yml")) and os.path.isfile(name):
        return os.path.abspath(name)
    names = available_hardware()
    if name in names:
        return os.path.join(_zigzag_dir(), "inputs", "hardware", f"{name}.yaml")
    raise ValueError(f"unknown ZigZag hardware {name!r}; available: {', '.join(names)}")


def available_workloads() -> list[str]:
    return list(_WORKLOADS)


def workload_onnx_path(name: str) -> str:
    """Path of one of ZigZag's bundled shape-only ONNX models: ``resnet18``, ``mobilenetv2``, ``alexnet``."""
    key = name[: -len(".onnx")] if name.endswith(".onnx") else name
    if key not in _WORKLOADS:
        raise ValueError(f"unknown ZigZag workload {name!r}; available: {', '.join(_WORKLOADS)}")
    return os.path.join(_zigzag_dir(), "inputs", "workload", f"{key}.onnx")


@functools.lru_cache(maxsize=32)
def _load_accelerator_cached(path: str, mtime_ns: int) -> Any:
    from zigzag.stages.parser.accelerator_parser import AcceleratorParserStage

    with _quiet():
        return AcceleratorParserStage.parse_accelerator(path)


def load_accelerator(hardware: str) -> Any:
    """ZigZag ``Accelerator`` for a hardware name / YAML path, parsed once and cached.  Treat as read-only."""
    path = hardware_path(hardware)
    return _load_accelerator_cached(path, os.stat(path).st_mtime_ns)


def describe_hardware(hardware: str) -> dict[str, Any]:
    """Plain-dict summary of an accelerator: array dims and, per layer operand (W, I, O), the memory levels
    it sees innermost first (name, size in bits, max bandwidth in bits/cycle per ZigZag data direction --
    ``None`` where no port serves it --, read/write energy per access in pJ, memory operands held, served OA
    dims, number of instances)."""
    from zigzag.hardware.architecture.memory_port import DataDirection

    acc = load_accelerator(hardware)
    oa = acc.operational_array
    out: dict[str, Any] = {
        "name": acc.name,
        "array": {str(d): int(s) for d, s in oa.dimension_sizes.items()},
        "mac_energy_pj": getattr(getattr(oa, "unit", None), "energy_cost", None),
        "systolic_dimensions": sorted(str(d) for d in getattr(oa, "systolic_dimensions", ())),
        "operands": {},
    }
    for layer_op, mem_op_name in MEMORY_OPERAND_LINKS.items():
        levels = []
        for lvl in _memory_levels(acc, mem_op_name):
            mem_op = next(op for op in lvl.operands if op.name == mem_op_name)
            levels.append(
                {
                    "name": lvl.name,
                    "size_bits": int(lvl.memory_instance.size),
                    "bw_bits_per_cycle": {d.value: lvl.get_max_bandwidth(mem_op, d) for d in DataDirection},
                    "r_cost_pj": lvl.read_energy,
                    "w_cost_pj": lvl.write_energy,
                    "holds": sorted(op.name for op in lvl.operands),
                    "served_dimensions": sorted(str(d) for d in lvl.served_dimensions),
                    "instances": int(lvl.unroll_count),
                }
            )
        out["operands"][layer_op] = levels
    return out


def _memory_levels(acc: Any, mem_op_name: str) -> list[Any]:
    from zigzag.datatypes import MemoryOperand

    return list(acc.memory_hierarchy.get_memory_levels(MemoryOperand(mem_op_name)))


def bundled_default_spatial(hardware: str) -> Spatial | None:
    """The ``default`` spatial mapping of ZigZag's bundled mapping YAML for this accelerator (e.g. tpu_like:
    ``{"D1": [("K", 32)], "D2": [("C", 32)]}``), in codax names; ``None`` if ZigZag bundles none."""
    import yaml

    name = os.path.splitext(os.path.basename(hardware_path(hardware)))[0]
    path = os.path.join(_zigzag_dir(), "inputs", "mapping", f"{name}.yaml")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        entries = yaml.safe_load(f)
    for entry in entries:
        if entry.get("name") == "default" and entry.get("spatial_mapping"):
            return {
                oa: [(ZIGZAG_TO_CODAX[s.split(",")[0].strip()], int(s.split(",")[1])) for s in unrolls]
                for oa, unrolls in entry["spatial_mapping"].items()
            }
    return None


def workload_dict(layer: ZigZagLayer, layer_id: int = 0) -> dict[str, Any]:
    """The layer in ZigZag's list-of-dict workload format (see the module docstring)."""
    sh, sw = layer.stride
    dh, dw = layer.dilation
    top, left, bottom, right = layer.padding
    data: dict[str, Any] = {
        "id": layer_id,
        "name": layer.name,
        "operator_type": layer.op_type,
        "equation": CONV_EQUATION,
        "dimension_relations": [f"ix={sw}*ox+{dw}*fx", f"iy={sh}*oy+{dh}*fy"],
        "loop_dims": [CODAX_TO_ZIGZAG[d] for d in CODAX_TO_ZIGZAG],
        "loop_sizes": [int(getattr(layer, d)) for d in CODAX_TO_ZIGZAG],
        "operand_precision": {
            "W": layer.w_bits,
            "I": layer.i_bits,
            "O": layer.acc_bits,
            "O_final": layer.o_bits,
        },
        "operand_source": {"W": layer_id, "I": layer_id},
        "pr_loop_dims": ["IY", "IX"],
        "padding": [[top, bottom], [left, right]],
    }
    if layer.input_hw is not None:
        data["pr_loop_sizes"] = [int(layer.input_hw[0]), int(layer.input_hw[1])]
    return data


def _zz_dim(dim: str) -> str:
    if dim in CODAX_TO_ZIGZAG:
        return CODAX_TO_ZIGZAG[dim]
    raise ValueError(f"unknown loop dim {dim!r}; codax dims are {', '.join(CODAX_TO_ZIGZAG)}")


def _cx_dim(dim: Any) -> str:
    name = str(dim)
    return ZIGZAG_TO_CODAX.get(name, name)


def _as_int(x: Any) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def mapping_entries(
    spatial: Spatial | None = None,
    temporal: Sequence[tuple[str, int]] | None = None,
    name: str = "default",
) -> list[dict[str, Any]]:
    """ZigZag's mapping user format (``MappingValidator`` schema) for one entry named ``name`` (plus a
    ``default`` entry, which ZigZag requires).  Dims are in codax names; ``temporal`` innermost first."""
    entry: dict[str, Any] = {"name": name, "memory_operand_links": dict(MEMORY_OPERAND_LINKS)}
    if spatial is not None:
        entry["spatial_mapping"] = {
            oa: [f"{_zz_dim(d)}, {int(f)}" for d, f in unrolls] for oa, unrolls in spatial.items()
        }
    if temporal is not None:
        entry["temporal_ordering"] = [[_zz_dim(d), int(f)] for d, f in temporal]
    entries = [entry]
    if name != "default":
        entries.append({**entry, "name": "default"})
    return entries


@functools.lru_cache(maxsize=256)
def _validated_layer_data(layer: ZigZagLayer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Workload + mapping dicts of ``layer`` after ZigZag's ``WorkloadValidator`` / ``MappingValidator``
    (normalised and validated exactly as in ``WorkloadParserStage``); cached since cerberus is slow."""
    from zigzag.parser.mapping_validator import MappingValidator
    from zigzag.parser.workload_validator import WorkloadValidator

    workload_validator = WorkloadValidator([workload_dict(layer)])
    workload_data = workload_validator.normalized_data
    if not workload_validator.validate():
        raise ValueError(f"ZigZag rejected the workload dict of layer {layer.name!r}: {workload_data}")
    mapping_validator = MappingValidator(mapping_entries(None, None, name=layer.name))
    mapping_data = mapping_validator.normalized_data
    if not mapping_validator.validate():
        raise ValueError("ZigZag rejected the mapping dict")
    return workload_data[0], mapping_data


def _build_layer_node(layer: ZigZagLayer, spatial: Spatial | None) -> Any:
    """A fresh ZigZag ``LayerNode`` built by ZigZag's ``LayerNodeFactory`` from the validated dicts (as
    ``WorkloadParserStage`` does).  The spatial mapping is attached as a ``SpatialMapping`` object; ZigZag's
    ``SpatialMappingGeneratorStage`` checks it against the accelerator later."""
    from zigzag.parser.workload_factory import LayerNodeFactory

    workload_data, mapping_data = copy.deepcopy(_validated_layer_data(layer))
    node = LayerNodeFactory(workload_data, mapping_data).create()
    if spatial is not None:
        node.spatial_mapping = _spatial_mapping_object(spatial)
    return node


def _spatial_mapping_object(spatial: Spatial) -> Any:
    from zigzag.datatypes import LayerDim, OADimension
    from zigzag.mapping.spatial_mapping import MappingSingleOADim, SpatialMapping

    data = {}
    for oa, unrolls in spatial.items():
        single: dict[Any, int] = {}
        for d, f in unrolls:
            if int(f) != f or f < 1:
                raise ValueError(f"spatial unroll factor must be a positive int, got {d}:{f}")
            key = LayerDim(_zz_dim(d))
            single[key] = single.get(key, 1) * int(f)
        data[OADimension(oa)] = MappingSingleOADim(single)
    return SpatialMapping(data)


def _check_oa_dims(spatial: Spatial, acc: Any) -> list[str]:
    oa_dims = [str(d) for d in acc.operational_array.dimension_sizes]
    unknown = [oa for oa in spatial if oa not in oa_dims]
    if unknown:
        raise ValueError(f"spatial mapping uses OA dims {unknown} not in {acc.name} (has {oa_dims})")
    return oa_dims


def _complete_spatial(spatial: Spatial, acc: Any) -> Spatial:
    """Every OA dim of the accelerator, missing ones unrolling nothing (so ZigZag generates nothing)."""
    return {oa: list(spatial.get(oa, [])) for oa in _check_oa_dims(spatial, acc)}


def _stage_kwargs(acc: Any, node: Any, lpf_limit: int | None, nb_spatial: int, counter: list[int]) -> dict:
    from zigzag.mapping.temporal_mapping import TemporalMappingType

    return {
        "accelerator": acc,
        "layer": node,
        "loma_lpf_limit": lpf_limit,
        "loma_show_progress_bar": False,
        "nb_mappings_generated": nb_spatial,
        "enable_mix_spatial_mapping_generation": False,
        # as in zigzag.api.get_hardware_performance_zigzag
        "access_same_data_considered_as_no_access": True,
        "temporal_mapping_type": TemporalMappingType.UNEVEN,
        "bridge_counter": counter,
    }


@functools.cache
def _stage_classes() -> dict[str, Any]:
    from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
    from zigzag.stages.mapping.spatial_mapping_generation import SpatialMappingGeneratorStage
    from zigzag.stages.mapping.temporal_mapping_generator_stage import TemporalMappingGeneratorStage
    from zigzag.stages.results.reduce_stages import MinimalEDPStage, MinimalEnergyStage, MinimalLatencyStage
    from zigzag.stages.stage import Stage

    class CountingCostModelStage(CostModelStage):
        """ZigZag's CostModelStage, counting evaluations in the ``bridge_counter`` kwarg."""

        def run(self):  # type: ignore[override]
            counter = self.kwargs.get("bridge_counter")
            if counter is not None:
                counter[0] += 1
            yield from super().run()

    class CaptureStage(Stage):
        """Leaf recording the kwargs it is built with (the converted spatial mapping); yields nothing."""

        def __init__(self, list_of_callables: list, **kwargs: Any):
            super().__init__(list_of_callables, **kwargs)
            kwargs["bridge_capture"].append(kwargs)

        def run(self):  # type: ignore[override]
            return iter(())

        def is_leaf(self) -> bool:
            return True

    return {
        "spatial": SpatialMappingGeneratorStage,
        "temporal": TemporalMappingGeneratorStage,
        "cost": CountingCostModelStage,
        "capture": CaptureStage,
        "latency": MinimalLatencyStage,
        "energy": MinimalEnergyStage,
        "EDP": MinimalEDPStage,
    }


def _run_pipeline(stages: list[Any], kwargs: dict[str, Any]) -> list[tuple[Any, Any]]:
    from zigzag.stages.main import MainStage

    return MainStage(stages, **kwargs).run()


# ----------------------------------------------------------------------------------------------------
# CME -> ZigZagResult
# ----------------------------------------------------------------------------------------------------
def _spatial_from_zigzag(spatial_mapping: Any) -> Spatial:
    return {
        str(oa): [(_cx_dim(d), _as_int(f)) for d, f in single.items()]
        for oa, single in spatial_mapping.items()
    }


def _result_from_cme(cme: Any, wall_s: float, hardware: str, n_evaluated: int = 1) -> ZigZagResult:
    from zigzag.mapping.data_movement import DataMoveAttr

    layer = cme.layer
    tm = cme.temporal_mapping
    links = layer.memory_operand_links
    per_level: dict[str, list[list[tuple[str, int]]]] = {}
    flats = []
    for op, levels in tm.mapping_dic_origin.items():
        per_level[op.name] = [[(_cx_dim(d), _as_int(f)) for d, f in lvl] for lvl in levels]
        flats.append([loop for lvl in per_level[op.name] for loop in lvl])
    temporal = flats[0]
    assert all(f == temporal for f in flats), "ZigZag allocated different orderings to different operands"

    accesses: dict[str, dict[str, dict[str, Any]]] = {}
    mem_levels: dict[str, list[str]] = {}
    for op in layer.layer_operands:
        mem_op = links.layer_to_mem_op(op)
        levels = cme.accelerator.memory_hierarchy.get_memory_levels(mem_op)
        mem_levels[op.name] = [lvl.name for lvl in levels]
        accesses[op.name] = {}
        for i, (lvl, words, energy) in enumerate(
            zip(levels, cme.memory_word_access[op], cme.mem_energy_breakdown_further[op])
        ):
            elems = cme.mapping.unit_mem_data_movement[op][i].get_attribute(DataMoveAttr.DATA_ELEM_MOVE_COUNT)
            accesses[op.name][lvl.name] = {
                "words": {d.value: _as_int(words.data[d]) for d in _dirs()},
                "elems": {d.value: _as_int(elems.data[d]) for d in _dirs()},
                "energy_pj": {d.value: float(energy.data[d]) for d in _dirs()},
                "total_energy_pj": float(cme.mem_energy_breakdown[op][i]),
            }

    breakdown = {
        "ideal_cycle": float(cme.ideal_cycle),
        "ideal_temporal_cycle": float(cme.ideal_temporal_cycle),
        "stall_slack_comb": float(cme.stall_slack_comb),
        "data_onloading_cycle": float(cme.data_onloading_cycle),
        "data_offloading_cycle": float(cme.data_offloading_cycle),
        "systolic_drain_cycle": float(getattr(cme, "systolic_drain_cycle", 0.0)),
        "latency_total0": float(cme.latency_total0),
        "latency_total1": float(cme.latency_total1),
        "latency_total2": float(cme.latency_total2),
    }
    return ZigZagResult(
        latency_cycles=float(cme.latency_total2),
        energy_pj=float(cme.energy_total),
        mac_energy_pj=float(cme.mac_energy),
        mem_energy_pj=float(cme.mem_energy),
        spatial=_spatial_from_zigzag(layer.spatial_mapping),
        temporal=temporal,
        temporal_per_level=per_level,
        accesses=accesses,
        utilization=float(cme.mac_utilization2),
        wall_s=wall_s,
        mem_levels=mem_levels,
        latency_breakdown=breakdown,
        spatial_utilization=float(cme.mac_spatial_utilization),
        macs=int(layer.total_mac_count),
        n_evaluated=n_evaluated,
        hardware=hardware,
        layer_name=layer.name,
    )


@functools.cache
def _dirs() -> tuple[Any, ...]:
    from zigzag.hardware.architecture.memory_port import DataDirection

    return tuple(DataDirection(d) for d in _DIRECTIONS)


# ----------------------------------------------------------------------------------------------------
# Fixed-mapping evaluation
# ----------------------------------------------------------------------------------------------------
class FixedEvaluator:
    """Evaluates temporal orderings for one (layer, hardware, spatial mapping) with ZigZag's cost model.

    Construction parses nothing twice: the accelerator comes from the cache, the ``LayerNode`` is built
    once, and ZigZag's ``SpatialMappingGeneratorStage`` (validation / capacity limiting of the given
    mapping) + ``SpatialMappingConversionStage`` run once.  Each :meth:`evaluate` then runs
    ``TemporalMappingGeneratorStage`` (complete ordering -> ``MemoryAllocator`` only) and ``CostModelStage``.
    """

    def __init__(self, layer: ZigZagLayer, hardware: str, spatial: Spatial):
        self.layer = layer
        self.hardware = hardware
        self.accelerator = load_accelerator(hardware)
        self.spatial_requested = _complete_spatial(spatial, self.accelerator)
        stages = _stage_classes()
        with _quiet():
            node = _build_layer_node(layer, self.spatial_requested)
            capture: list[dict[str, Any]] = []
            kwargs = _stage_kwargs(self.accelerator, node, None, 1, [0])
            kwargs["bridge_capture"] = capture
            _run_pipeline([stages["spatial"], stages["capture"]], kwargs)
        assert len(capture) == 1, "a fully specified spatial mapping must give exactly one spatial mapping"
        self._kwargs = {k: v for k, v in capture[0].items() if k != "bridge_capture"}
        # ZigZag's own (shallow) copy of the layer, carrying the spatial mapping it actually used
        self._node = self._kwargs["layer"]
        self.spatial = _spatial_from_zigzag(self._node.spatial_mapping)
        self.temporal_loop_sizes = self._temporal_loop_sizes()

    def _temporal_loop_sizes(self) -> dict[str, int]:
        from zigzag.opt.loma.engine import LomaEngine

        engine = LomaEngine(
            accelerator=self.accelerator,
            layer=self._node,
            spatial_mapping=self._kwargs["spatial_mapping"],
            mapping_type=self._kwargs["temporal_mapping_type"],
        )
        return {_cx_dim(d): int(s) for d, s in engine.get_temporal_loops().items()}

    def check_temporal(self, temporal: Sequence[tuple[str, int]]) -> None:
        """Raise ``ValueError`` unless ``temporal`` is complete (else ZigZag would search instead)."""
        product: dict[str, int] = {}
        for d, f in temporal:
            _zz_dim(d)
            if int(f) != f or f < 1:
                raise ValueError(f"temporal loop factor must be a positive int, got {d}:{f}")
            product[d] = product.get(d, 1) * int(f)
        product = {d: f for d, f in product.items() if f != 1}
        if product != self.temporal_loop_sizes:
            raise ValueError(
                f"temporal ordering {list(temporal)} is not complete for layer {self.layer.name!r} with "
                f"spatial {self.spatial}: per-dim products {product} must equal the temporal loop sizes "
                f"{self.temporal_loop_sizes} (ZigZag would otherwise run a LOMA search)"
            )

    def evaluate(self, temporal: Sequence[tuple[str, int]]) -> ZigZagResult:
        """One ZigZag cost-model evaluation of ``temporal`` (innermost first, codax dims)."""
        from zigzag.opt.loma.memory_allocator import MemoryHierarchyTooSmallException, MemoryTooSmallException
        from zigzag.workload.layer_attributes import LayerTemporalOrdering

        self.check_temporal(temporal)
        stages = _stage_classes()
        start = time.perf_counter()
        self._node.temporal_ordering = LayerTemporalOrdering([[_zz_dim(d), int(f)] for d, f in temporal])
        counter = [0]
        kwargs = dict(self._kwargs, bridge_counter=counter)
        try:
            with _quiet():
                stage = stages["temporal"]([stages["cost"]], **kwargs)
                cmes = [cme for cme, _ in stage.run()]
        except (MemoryTooSmallException, MemoryHierarchyTooSmallException) as exc:
            raise InfeasibleMappingError(
                f"temporal ordering {list(temporal)} with spatial {self.spatial} does not fit "
                f"{self.hardware}: {exc}"
            ) from exc
        wall = time.perf_counter() - start
        assert len(cmes) == 1 and counter[0] == 1, (
            "a complete temporal ordering must give exactly one evaluation"
        )
        return _result_from_cme(cmes[0], wall, self.hardware)


def _spatial_key(spatial: Spatial) -> tuple[tuple[str, tuple[tuple[str, int], ...]], ...]:
    return tuple(sorted((oa, tuple((d, int(f)) for d, f in unrolls)) for oa, unrolls in spatial.items()))


@functools.lru_cache(maxsize=64)
def _cached_evaluator(layer: ZigZagLayer, hw_path: str, mtime_ns: int, spatial_key: tuple) -> FixedEvaluator:
    return FixedEvaluator(layer, hw_path, {oa: list(unrolls) for oa, unrolls in spatial_key})


def evaluate_fixed(
    layer: ZigZagLayer,
    hardware: str,
    spatial: Spatial,
    temporal: Sequence[tuple[str, int]],
    reuse: bool = True,
) -> ZigZagResult:
    """One evaluation of ZigZag's cost model for the given spatial mapping and temporal ordering (innermost
    first, codax dims).  No search.  Raises ``ValueError`` for an incomplete ordering and
    :class:`InfeasibleMappingError` when it does not fit the memories.

    ``wall_s`` covers the whole call.  With ``reuse`` (default) the :class:`FixedEvaluator` (layer node +
    converted spatial mapping) is cached per (layer, hardware, spatial), so repeated calls pay only the
    evaluation; ``reuse=False`` rebuilds it (the accelerator YAML is parsed once per process either way)."""
    start = time.perf_counter()
    if reuse:
        path = hardware_path(hardware)
        evaluator = _cached_evaluator(layer, path, os.stat(path).st_mtime_ns, _spatial_key(spatial))
    else:
        evaluator = FixedEvaluator(layer, hardware, spatial)
    result = evaluator.evaluate(temporal)
    result.wall_s = time.perf_counter() - start
    result.hardware = hardware
    return result


def evaluate_fixed_many(
    layer: ZigZagLayer,
    hardware: str,
    spatial: Spatial,
    temporals: Iterable[Sequence[tuple[str, int]]],
    on_infeasible: Literal["raise", "none"] = "raise",
) -> list[ZigZagResult | None]:
    """Evaluate several temporal orderings for one layer / hardware / spatial mapping, sharing the parsed
    accelerator, ``LayerNode`` and converted spatial mapping.  Each result's ``wall_s`` is the time of its
    own evaluation only.  With ``on_infeasible="none"`` orderings that do not fit give ``None``."""
    evaluator = FixedEvaluator(layer, hardware, spatial)
    results: list[ZigZagResult | None] = []
    for temporal in temporals:
        try:
            results.append(evaluator.evaluate(temporal))
        except InfeasibleMappingError:
            if on_infeasible == "raise":
                raise
            results.append(None)
    return results


# ----------------------------------------------------------------------------------------------------
# LOMA search
# ----------------------------------------------------------------------------------------------------
def search_loma(
    layer: ZigZagLayer,
    hardware: str,
    objective: Objective = "latency",
    spatial: Spatial | None = None,
    lpf_limit: int = 6,
    nb_spatial_mappings: int = 3,
) -> ZigZagResult:
    """ZigZag's LOMA temporal-mapping search for one layer; with ``spatial=None`` also ZigZag's spatial
    mapping generator (its ``nb_spatial_mappings`` best-guess candidates, as in ``zigzag.api``), else the
    given spatial mapping is fixed (a partial one is ZigZag's template: OA dims it omits are generated; give
    them as ``[]`` to leave them unused).  The best CME by ZigZag's own ``Minimal{Latency,Energy,EDP}Stage``
    is returned; ``wall_s`` is the whole search, ``n_evaluated`` the number of cost-model evaluations."""
    stages = _stage_classes()
    if objective not in ("latency", "energy", "EDP"):
        raise ValueError(f"objective must be 'latency', 'energy' or 'EDP', got {objective!r}")
    acc = load_accelerator(hardware)
    start = time.perf_counter()
    counter = [0]
    with _quiet():
        if spatial is not None:
            _check_oa_dims(spatial, acc)
        node = _build_layer_node(layer, spatial)
        kwargs = _stage_kwargs(acc, node, lpf_limit, nb_spatial_mappings, counter)
        reduce = stages[objective]
        answers = _run_pipeline(
            [reduce, stages["spatial"], reduce, stages["temporal"], stages["cost"]],
            kwargs,
        )
    wall = time.perf_counter() - start
    assert len(answers) == 1
    return _result_from_cme(answers[0][0], wall, hardware, n_evaluated=counter[0])


# ----------------------------------------------------------------------------------------------------
# ONNX models
# ----------------------------------------------------------------------------------------------------
def conv_layers_from_onnx(name_or_path: str) -> list[ZigZagLayer]:
    """Conv and Gemm/MatMul layers of an ONNX model (a bundled name -- ``resnet18``, ``mobilenetv2``,
    ``alexnet`` -- or a path) as ZigZag layers.  The model is read by codax's frontend
    (``codax.frontend.extract_graph``, the one ONNX reader; shape-only models are fine): its loop
    nests carry over one to one (kernels, strides, dilations and pads in ONNX's (rows, cols) order; a
    dense layer ``Y = A @ B`` has ``N = rows of A, C = inner, K = out`` and ``P=Q=R=S=1``).  This is the
    only place the bridge imports codax; costing and mapping stay ZigZag's own."""
    from codax.frontend import extract_graph

    path = name_or_path if os.path.isfile(name_or_path) else workload_onnx_path(name_or_path)
    return [
        ZigZagLayer(
            name=layer.name,
            N=layer.N,
            G=layer.G,
            K=layer.K,
            C=layer.C,
            P=layer.P,
            Q=layer.Q,
            R=layer.R,
            S=layer.S,
            stride=layer.stride,
            dilation=layer.dilation,
            padding=layer.pads,
            input_hw=layer.in_hw if layer.op == "conv" else None,
            op_type="Conv" if layer.op == "conv" else "Gemm",
        )
        for layer in extract_graph(path).layers
    ]
