"""The device and baseline-accelerator library: YAML files shipped inside the package, loadable by name."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from codax.errors import ConfigError, UnknownNameError, did_you_mean
from codax.ir import Accelerator, load_accelerator_yaml
from codax.ir.yaml_io import check_keys, load_yaml, positive_int, positive_number

LIBRARY = Path(__file__).parent


@dataclass(frozen=True)
class FpgaDevice:
    name: str
    part: str
    family: str
    dsp: int
    dsp_kind: str  # dsp48e1 | dsp48e2
    bram18: int
    lut: int
    ff: int
    clock_mhz: float
    dram_bandwidth_gbps: float

    def dram_bytes_per_cycle(self, clock_mhz: float | None = None) -> float:
        return self.dram_bandwidth_gbps * 1e9 / ((clock_mhz or self.clock_mhz) * 1e6)


@dataclass(frozen=True)
class Technology:
    name: str
    node_nm: int
    int_mult_pj_8x8: float
    int_add_pj_per_bit: float
    fp32_mult_pj: float
    fp32_add_pj: float
    sram_pj_per_64b: tuple[tuple[float, float], ...]
    dram_pj_per_64b: float
    mac_um2_8x8: float
    fp32_mac_um2: float
    sram_um2_per_kb: float


def _names(kind: str) -> list[str]:
    return sorted(p.stem for p in (LIBRARY / kind).glob("*.yaml"))


def list_accelerators() -> list[str]:
    return _names("accelerators")


def list_devices() -> list[str]:
    return _names("devices")


def list_technologies() -> list[str]:
    return _names("technology")


def _path(kind: str, name: str, what: str) -> Path:
    p = LIBRARY / kind / f"{name}.yaml"
    if not p.exists():
        raise UnknownNameError(f"unknown {what} {name!r}.{did_you_mean(name, _names(kind))}")
    return p


def load_accelerator(name_or_path: str | Path) -> Accelerator:
    """A library accelerator by name (`codax.hw.load_accelerator("eyeriss-like")`) or a YAML file path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ConfigError(f"{p}: no such accelerator file")
        accel = load_accelerator_yaml(p)
    else:
        accel = _load_accelerator_by_name(str(name_or_path))
    if accel.target == "fpga":
        load_device(accel.device)  # fail early on an unknown device
    load_technology(accel.technology)
    return accel


@cache
def _load_accelerator_by_name(name: str) -> Accelerator:
    return load_accelerator_yaml(_path("accelerators", name, "accelerator"))


@cache
def load_device(name: str) -> FpgaDevice:
    d = load_yaml(_path("devices", name, "FPGA device"))
    check_keys(
        d,
        set(FpgaDevice.__dataclass_fields__),
        f"device {name}",
        required=set(FpgaDevice.__dataclass_fields__),
    )
    for k in ("dsp", "bram18", "lut", "ff"):
        positive_int(d[k], f"device {name}.{k}")
    for k in ("clock_mhz", "dram_bandwidth_gbps"):
        positive_number(d[k], f"device {name}.{k}")
    if d["dsp_kind"] not in ("dsp48e1", "dsp48e2"):
        raise ConfigError(f"device {name}.dsp_kind must be dsp48e1 or dsp48e2, got {d['dsp_kind']!r}")
    return FpgaDevice(**d)


@cache
def load_technology(name: str) -> Technology:
    d = load_yaml(_path("technology", name, "technology table"))
    where = f"technology {name}"
    check_keys(
        d,
        {"name", "node_nm", "mac", "sram_pj_per_64b", "dram_pj_per_64b", "area"},
        where,
        required={"name", "mac", "sram_pj_per_64b", "dram_pj_per_64b", "area"},
    )
    mac, area = d["mac"], d["area"]
    check_keys(
        mac,
        {"int_mult_pj_8x8", "int_add_pj_per_bit", "fp32_mult_pj", "fp32_add_pj"},
        f"{where}.mac",
        required={"int_mult_pj_8x8", "int_add_pj_per_bit", "fp32_mult_pj", "fp32_add_pj"},
    )
    check_keys(
        area,
        {"mac_um2_8x8", "fp32_mac_um2", "sram_um2_per_kb"},
        f"{where}.area",
        required={"mac_um2_8x8", "fp32_mac_um2", "sram_um2_per_kb"},
    )
    points = d["sram_pj_per_64b"]
    if not isinstance(points, list) or len(points) < 2:
        raise ConfigError(f"{where}.sram_pj_per_64b needs at least two [bytes, pJ] points")
    pts = tuple(
        sorted(
            (positive_number(b, f"{where}.sram bytes"), positive_number(e, f"{where}.sram pJ"))
            for b, e in points
        )
    )
    return Technology(
        name=d["name"],
        node_nm=int(d.get("node_nm", 0)),
        sram_pj_per_64b=pts,
        dram_pj_per_64b=positive_number(d["dram_pj_per_64b"], f"{where}.dram_pj_per_64b"),
        **{k: positive_number(v, f"{where}.mac.{k}") for k, v in mac.items()},
        **{k: positive_number(v, f"{where}.area.{k}") for k, v in area.items()},
    )
