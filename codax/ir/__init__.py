"""codax's data model: loop-nest layers, graphs, accelerators, mappings and schedules, with YAML I/O."""

from codax.ir.accelerator import Accelerator, Dram, Engine, MemoryLevel, PEArray
from codax.ir.graph import Graph, HostOp
from codax.ir.layer import DIMS, OPERANDS, RELEVANT, Epilogue, Layer, Precision, conv2d, dense
from codax.ir.mapping import Mapping, check_capacity, tile_extents, validate_mapping
from codax.ir.schedule import Schedule, ScheduleEntry
from codax.ir.yaml_io import dump_yaml, load_yaml

__all__ = [
    "Accelerator",
    "Dram",
    "Engine",
    "MemoryLevel",
    "PEArray",
    "Graph",
    "HostOp",
    "DIMS",
    "OPERANDS",
    "RELEVANT",
    "Epilogue",
    "Layer",
    "Precision",
    "conv2d",
    "dense",
    "Mapping",
    "check_capacity",
    "tile_extents",
    "validate_mapping",
    "Schedule",
    "ScheduleEntry",
    "dump_yaml",
    "load_yaml",
    "load_accelerator_yaml",
    "load_mappings",
    "save_mappings",
]


def load_accelerator_yaml(source) -> Accelerator:
    """An Accelerator from a YAML path, YAML text or dict."""
    from codax.errors import ConfigError

    d = load_yaml(source)
    if not isinstance(d, dict):
        raise ConfigError(
            f"{source}: an accelerator YAML must be a mapping with name, target, pe_array, levels"
        )
    return Accelerator.from_dict(d)


def load_mappings(source) -> dict[str, Mapping]:
    """mappings.yaml -> {layer name: Mapping}. The file is {mappings: [ {layer: ..., ...}, ... ]}."""
    from codax.errors import ConfigError

    d = load_yaml(source)
    if not isinstance(d, dict) or not isinstance(d.get("mappings"), list):
        raise ConfigError(f"{source}: a mappings file must be a mapping with a list under `mappings:`")
    out = {}
    for entry in d["mappings"]:
        m = Mapping.from_dict(entry)
        if m.layer in out:
            raise ConfigError(f"{source}: layer {m.layer!r} is mapped twice")
        out[m.layer] = m
    return out


def save_mappings(mappings: dict[str, Mapping], path=None, extra: dict | None = None) -> str:
    doc = dict(extra or {})
    doc["mappings"] = [m.to_dict() for m in mappings.values()]
    return dump_yaml(doc, path)
