"""The accelerator template: PE array with a dataflow, a memory hierarchy, precision, target.

Memory levels are listed outermost first. DRAM is implicit as level 0 of every engine (shared by
all engines); `levels` lists the on-chip levels. A level either has one `size` shared by the
operands it holds or per-operand `sizes`. A level marked `per_pe` sits below the PE array's spatial
fan-out: its capacity is per PE (register files). An operand a level does not hold bypasses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codax.errors import ConfigError
from codax.ir.layer import DIMS, OPERANDS
from codax.ir.yaml_io import check_keys, positive_int, positive_number

TARGETS = ("fpga", "asic")
HOST_OP_KINDS = (
    "add",
    "maxpool",
    "avgpool",
    "globalavgpool",
    "concat",
    "relu",
    "softmax",
    "layernorm",
    "gelu",
)


@dataclass(frozen=True)
class PEArray:
    rows: int
    cols: int
    row_dims: tuple[str, ...]  # loop dims the dataflow may unroll along rows
    col_dims: tuple[str, ...]
    dataflow: str = ""  # a name for humans: weight-stationary, output-stationary, row-stationary
    pipeline_depth: int = 4  # cycles to fill/drain the MAC pipeline once per layer

    def __post_init__(self) -> None:
        positive_int(self.rows, "pe_array.rows")
        positive_int(self.cols, "pe_array.cols")
        for axis in ("row_dims", "col_dims"):
            dims = tuple(getattr(self, axis))
            object.__setattr__(self, axis, dims)
            if not dims:
                raise ConfigError(f"pe_array.{axis} must list at least one loop dim from {DIMS}")
            for d in dims:
                if d not in DIMS:
                    raise ConfigError(f"pe_array.{axis}: unknown dim {d!r}; loop dims are {', '.join(DIMS)}")

    @property
    def pes(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class MemoryLevel:
    name: str
    operands: tuple[str, ...]
    size: int | None = None  # bytes shared by the operands held
    sizes: dict[str, int] | None = None  # bytes per operand, instead of `size`
    banks: int = 1
    bandwidth: float = 64.0  # bytes/cycle this level delivers to (and accepts from) the levels inside it
    per_pe: bool = False
    read_pj_per_bit: float | None = None  # None: from the technology table by size
    write_pj_per_bit: float | None = None

    def __post_init__(self) -> None:
        where = f"level {self.name}"
        object.__setattr__(self, "operands", tuple(self.operands))
        if not self.operands:
            raise ConfigError(f"{where}: operands must list at least one of {OPERANDS}")
        for op in self.operands:
            if op not in OPERANDS:
                raise ConfigError(f"{where}: unknown operand {op!r}; operands are W, I, O")
        if (self.size is None) == (self.sizes is None):
            raise ConfigError(
                f"{where}: give exactly one of size (shared bytes) or sizes (bytes per operand)"
            )
        if self.size is not None:
            positive_int(self.size, f"{where}.size")
        if self.sizes is not None:
            if set(self.sizes) != set(self.operands):
                raise ConfigError(
                    f"{where}: sizes must have one entry per held operand {list(self.operands)}"
                )
            for op, v in self.sizes.items():
                positive_int(v, f"{where}.sizes.{op}")
        positive_int(self.banks, f"{where}.banks")
        positive_number(self.bandwidth, f"{where}.bandwidth")

    def capacity(self, operand: str) -> int:
        """Bytes available to one operand (the whole shared size when shared)."""
        if self.sizes is not None:
            return self.sizes[operand]
        return self.size  # type: ignore[return-value]

    @property
    def total_bytes(self) -> int:
        return self.size if self.size is not None else sum(self.sizes.values())  # type: ignore[union-attr]


@dataclass(frozen=True)
class Dram:
    bandwidth: float = 16.0  # bytes/cycle at the accelerator clock
    read_pj_per_bit: float | None = None
    write_pj_per_bit: float | None = None
    # Weights stream from DRAM through a FIFO into the array (as TPU v1's weight FIFO): compute
    # starts as the first weights arrive, so a weight tile's load is overlapped with compute instead
    # of filling a buffer before it starts. Its port time still counts (with the other overlapped
    # traffic); words moved and energy are unchanged. Inputs and partial sums get no such path.
    stream_weights: bool = False
    # Cycles from a DRAM burst's request to its first beat, paid once per tile transfer (a tile's
    # bursts are issued back to back with several in flight). 64 is UG1399's default expected
    # latency of an m_axi interface.
    latency: int = 64

    def __post_init__(self) -> None:
        positive_number(self.bandwidth, "dram.bandwidth")
        if not isinstance(self.latency, int) or isinstance(self.latency, bool) or self.latency < 0:
            raise ConfigError(f"dram.latency must be a non-negative integer (cycles), got {self.latency!r}")
        if not isinstance(self.stream_weights, bool):
            raise ConfigError(f"dram.stream_weights must be true or false, got {self.stream_weights!r}")


@dataclass(frozen=True)
class OnChipArray:
    """One physical on-chip array of an engine (see Engine.arrays)."""

    name: str
    level: int  # level index, DRAM = 0
    operands: tuple[str, ...]
    bytes: int
    per_pe: bool
    banks: int


@dataclass(frozen=True)
class Engine:
    """One sub-accelerator: a PE array and its on-chip hierarchy."""

    name: str
    pe_array: PEArray
    levels: tuple[MemoryLevel, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        if not self.levels:
            raise ConfigError(f"engine {self.name}: at least one on-chip memory level is needed")
        names = [lv.name for lv in self.levels]
        if len(set(names)) != len(names) or "DRAM" in names:
            raise ConfigError(f"engine {self.name}: level names must be unique and not 'DRAM', got {names}")
        seen_pe = False
        for lv in self.levels:
            if seen_pe and not lv.per_pe:
                raise ConfigError(
                    f"engine {self.name}: level {lv.name} is shared but sits below a per_pe level"
                )
            seen_pe = seen_pe or lv.per_pe
        innermost = set()
        for lv in self.levels:
            innermost |= set(lv.operands)
        missing = set(OPERANDS) - innermost
        if missing:
            raise ConfigError(
                f"engine {self.name}: no on-chip level holds operand(s) {sorted(missing)}; "
                "the PE array needs each of W, I, O on chip"
            )

    @property
    def level_names(self) -> tuple[str, ...]:
        """All level names, DRAM first."""
        return ("DRAM",) + tuple(lv.name for lv in self.levels)

    @property
    def spatial_level(self) -> int:
        """Index (DRAM = 0) of the innermost level above the PE array's spatial fan-out."""
        for i, lv in enumerate(self.levels):
            if lv.per_pe:
                return i  # levels[i] is index i+1 overall; the one above it is index i
        return len(self.levels)

    def arrays(self) -> list[OnChipArray]:
        """The engine's on-chip arrays as built: one per operand of a level with per-operand sizes,
        one shared by the operands of a level with one size; a per-PE level's array holds every PE's
        registers (size x PEs). The generated engine declares exactly these; the cost model charges
        exactly these."""
        out = []
        for h, lv in enumerate(self.levels, start=1):
            mult = self.pe_array.pes if lv.per_pe else 1
            groups = [(op,) for op in lv.operands] if lv.sizes is not None else [tuple(lv.operands)]
            for ops in groups:
                size = lv.sizes[ops[0]] if lv.sizes is not None else lv.size
                out.append(OnChipArray(f"{lv.name}_{''.join(ops)}", h, ops, size * mult, lv.per_pe, lv.banks))
        return out

    def level(self, name: str) -> MemoryLevel:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise ConfigError(
            f"engine {self.name}: no memory level {name!r}; levels are {list(self.level_names)}"
        )


@dataclass(frozen=True)
class Accelerator:
    name: str
    target: str  # fpga | asic
    engines: tuple[Engine, ...]
    dram: Dram = field(default_factory=Dram)
    clock_mhz: float = 200.0
    weight_bits: tuple[int, ...] = (8,)  # widths the MAC units support
    act_bits: tuple[int, ...] = (8,)
    acc_bits: int = 32
    float_ok: bool = False  # whether fp32 layers can be offloaded
    device: str | None = None  # fpga: device library name (budget)
    technology: str = "asic-45nm"  # energy/area table
    host_ops: tuple[str, ...] = ()  # non-MAC ops the post-processing unit executes
    description: str = ""
    mac_pj: float | None = None  # energy per MAC at the array's widths; None: from the technology table

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(
                f"accelerator {self.name}: target must be one of {TARGETS}, got {self.target!r}"
            )
        if self.target == "fpga" and not self.device:
            raise ConfigError(f"accelerator {self.name}: an fpga target needs `device` (e.g. zc706, zcu102)")
        object.__setattr__(self, "engines", tuple(self.engines))
        if not self.engines:
            raise ConfigError(f"accelerator {self.name}: needs at least one engine")
        names = [e.name for e in self.engines]
        if len(set(names)) != len(names):
            raise ConfigError(f"accelerator {self.name}: engine names must be unique, got {names}")
        positive_number(self.clock_mhz, "clock_mhz")
        for f in ("weight_bits", "act_bits", "host_ops"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        for op in self.host_ops:
            if op not in HOST_OP_KINDS:
                raise ConfigError(
                    f"accelerator {self.name}: host_ops entry {op!r} is not one of {HOST_OP_KINDS}"
                )

    def engine(self, name: str | None = None) -> Engine:
        if name is None:
            return self.engines[0]
        for e in self.engines:
            if e.name == name:
                return e
        raise ConfigError(
            f"accelerator {self.name}: no engine {name!r}; engines are {[e.name for e in self.engines]}"
        )

    # convenience for the single-engine case
    @property
    def pe_array(self) -> PEArray:
        return self.engines[0].pe_array

    @property
    def levels(self) -> tuple[MemoryLevel, ...]:
        return self.engines[0].levels

    def supports_bits(self, weight: int, act: int) -> bool:
        return weight <= max(self.weight_bits) and act <= max(self.act_bits)

    # --- YAML ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        def level(lv: MemoryLevel) -> dict:
            d: dict = {"name": lv.name, "operands": list(lv.operands)}
            if lv.size is not None:
                d["size"] = lv.size
            else:
                d["sizes"] = dict(lv.sizes)
            d.update(banks=lv.banks, bandwidth=lv.bandwidth)
            if lv.per_pe:
                d["per_pe"] = True
            for k in ("read_pj_per_bit", "write_pj_per_bit"):
                if getattr(lv, k) is not None:
                    d[k] = getattr(lv, k)
            return d

        def engine(e: Engine) -> dict:
            pa = e.pe_array
            return {
                "name": e.name,
                "pe_array": {
                    "rows": pa.rows,
                    "cols": pa.cols,
                    "row_dims": list(pa.row_dims),
                    "col_dims": list(pa.col_dims),
                    "dataflow": pa.dataflow,
                    "pipeline_depth": pa.pipeline_depth,
                },
                "levels": [level(lv) for lv in e.levels],
            }

        dram = {"bandwidth": self.dram.bandwidth}
        for k in ("read_pj_per_bit", "write_pj_per_bit"):
            if getattr(self.dram, k) is not None:
                dram[k] = getattr(self.dram, k)
        if self.dram.stream_weights:
            dram["stream_weights"] = True
        if self.dram.latency != Dram.latency:
            dram["latency"] = self.dram.latency
        d: dict = {
            "name": self.name,
            "description": self.description,
            "target": self.target,
            "clock_mhz": self.clock_mhz,
            "precision": {
                "weight": list(self.weight_bits),
                "act": list(self.act_bits),
                "acc": self.acc_bits,
                "float": self.float_ok,
            },
            "dram": dram,
        }
        if self.device:
            d["device"] = self.device
        d["technology"] = self.technology
        d["host_ops"] = list(self.host_ops)
        if self.mac_pj is not None:
            d["mac_pj"] = self.mac_pj
        d["engines"] = [engine(e) for e in self.engines]
        return d

    @staticmethod
    def from_dict(d: dict) -> Accelerator:
        where = f"accelerator {d.get('name', '?') if isinstance(d, dict) else '?'}"
        check_keys(
            d,
            {
                "name",
                "description",
                "target",
                "clock_mhz",
                "precision",
                "dram",
                "device",
                "technology",
                "host_ops",
                "engines",
                "pe_array",
                "levels",
                "mac_pj",
            },
            where,
            required={"name", "target"},
        )
        if ("engines" in d) == ("pe_array" in d or "levels" in d):
            raise ConfigError(
                f"{where}: give either `engines` or a single `pe_array` + `levels`, not both/neither"
            )
        raw_engines = (
            d["engines"]
            if "engines" in d
            else [{"name": "main", "pe_array": d.get("pe_array"), "levels": d.get("levels")}]
        )
        if not isinstance(raw_engines, list) or not raw_engines:
            raise ConfigError(f"{where}: engines must be a non-empty list")
        engines = [_engine_from_dict(e, where) for e in raw_engines]
        prec = d.get("precision", {}) or {}
        check_keys(prec, {"weight", "act", "acc", "float"}, f"{where}.precision")
        dram = d.get("dram", {}) or {}
        dram_keys = {"bandwidth", "read_pj_per_bit", "write_pj_per_bit", "stream_weights", "latency"}
        check_keys(dram, dram_keys, f"{where}.dram")

        def bits(v, key):
            vals = v if isinstance(v, list) else [v]
            return tuple(positive_int(x, f"{where}.precision.{key}") for x in vals)

        return Accelerator(
            name=str(d["name"]),
            description=str(d.get("description", "")),
            target=d["target"],
            engines=tuple(engines),
            dram=Dram(**dram),
            clock_mhz=d.get("clock_mhz", 200.0),
            weight_bits=bits(prec.get("weight", 8), "weight"),
            act_bits=bits(prec.get("act", 8), "act"),
            acc_bits=positive_int(prec.get("acc", 32), f"{where}.precision.acc"),
            float_ok=bool(prec.get("float", False)),
            device=d.get("device"),
            technology=d.get("technology", "asic-45nm"),
            host_ops=tuple(d.get("host_ops", ()) or ()),
            mac_pj=None if d.get("mac_pj") is None else positive_number(d["mac_pj"], f"{where}.mac_pj"),
        )


def _engine_from_dict(e: dict, where: str) -> Engine:
    check_keys(e, {"name", "pe_array", "levels"}, f"{where} engine", required={"pe_array", "levels"})
    name = str(e.get("name", "main"))
    pa = e["pe_array"]
    check_keys(
        pa,
        {"rows", "cols", "row_dims", "col_dims", "dataflow", "pipeline_depth"},
        f"{where} engine {name}.pe_array",
        required={"rows", "cols", "row_dims", "col_dims"},
    )
    pe = PEArray(**{**pa, "row_dims": tuple(pa["row_dims"]), "col_dims": tuple(pa["col_dims"])})
    if not isinstance(e["levels"], list):
        raise ConfigError(f"{where} engine {name}: levels must be a list, outermost first")
    levels = []
    for i, lv in enumerate(e["levels"]):
        check_keys(
            lv,
            set(MemoryLevel.__dataclass_fields__),
            f"{where} engine {name} levels[{i}]",
            required={"name", "operands"},
        )
        lv = dict(lv)
        lv["operands"] = tuple(lv["operands"])
        levels.append(MemoryLevel(**lv))
    return Engine(name=name, pe_array=pe, levels=tuple(levels))
