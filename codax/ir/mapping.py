"""How one layer runs on one engine: spatial unrolling, per-level tiling, loop order, double buffering.

Semantics (shared by the cost model, the mapper and the generated code):
- `tiles[level][dim]` is the trip count of the temporal loop of `dim` at `level`; that loop walks
  the sub-tiles held by the next level inside. Level "DRAM" is the outermost.
- `spatial[axis] = (dim, factor)` unrolls `dim` by `factor` over the PE array's rows or cols; the
  unrolled loops sit below the engine's last shared level (above any per-PE level).
- For each dim, the product of its temporal factors over all levels times its spatial factor must
  cover the dim's bound. Tiles are laid on a grid over the padded iteration space; a tile that
  starts beyond the bound is skipped and a tile that crosses it is clipped (a partial last tile).
- `order[level]` lists the dims of that level's loops, outermost first (dims with factor 1 may be
  left out; they are placed innermost).
- `double_buffer[level]`: the level holds two copies of its tiles so loads overlap compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from codax.errors import CapacityError, ConfigError, MappingError
from codax.ir.accelerator import Accelerator, Engine
from codax.ir.layer import DIMS, Layer, Precision
from codax.ir.yaml_io import check_keys, positive_int

AXES = ("rows", "cols")


@dataclass
class Mapping:
    layer: str
    engine: str = "main"
    spatial: dict[str, tuple[str, int]] = field(default_factory=dict)
    tiles: dict[str, dict[str, int]] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=dict)
    double_buffer: dict[str, bool] = field(default_factory=dict)
    # the integer widths the layer runs at (weight / act / acc / out bits), as the search chose and
    # costed them; None: the model's own. A compile checks them against the model (docs/bitwidths.md)
    precision: Precision | None = None

    # --- derived views ---------------------------------------------------------------------------
    def spatial_factor(self, dim: str) -> int:
        f = 1
        for d, k in self.spatial.values():
            if d == dim:
                f *= k
        return f

    def factor(self, level: str, dim: str) -> int:
        return self.tiles.get(level, {}).get(dim, 1)

    def full_order(self, level: str) -> list[str]:
        """The level's loop order over all dims, outermost first (unlisted dims innermost)."""
        given = list(self.order.get(level, []))
        return given + [d for d in DIMS if d not in given]

    def coverage(self, dim: str, levels: tuple[str, ...]) -> int:
        c = self.spatial_factor(dim)
        for lv in levels:
            c *= self.factor(lv, dim)
        return c

    def normalized(self, layer: Layer, engine: Engine) -> Mapping:
        """The same executed loop nest without iterations that would only visit tiles past a bound:
        factors capped innermost first (per-PE levels, the spatial unroll, then outward)."""
        names = engine.level_names
        inner_first = list(reversed(names[engine.spatial_level + 1 :])) + [None]
        inner_first += list(reversed(names[: engine.spatial_level + 1]))
        tiles = {lv: dict(t) for lv, t in self.tiles.items()}
        for d in DIMS:
            bound, covered = getattr(layer, d), 1
            for lv in inner_first:
                if lv is None:
                    covered *= self.spatial_factor(d)
                    continue
                f = min(self.factor(lv, d), max(1, math.ceil(bound / covered)))
                if f > 1:
                    tiles.setdefault(lv, {})[d] = f
                elif d in tiles.get(lv, {}):
                    del tiles[lv][d]
                covered *= f
        return Mapping(
            self.layer,
            self.engine,
            dict(self.spatial),
            tiles,
            {k: list(v) for k, v in self.order.items()},
            dict(self.double_buffer),
            self.precision,
        )

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "engine": self.engine,
            "spatial": {a: [d, k] for a, (d, k) in self.spatial.items()},
            "tiles": {lv: {d: f for d, f in t.items() if f != 1} for lv, t in self.tiles.items()},
            "order": {lv: list(o) for lv, o in self.order.items()},
            "double_buffer": dict(self.double_buffer),
        } | ({"precision": _precision_dict(self.precision)} if self.precision is not None else {})

    @staticmethod
    def from_dict(d: dict) -> Mapping:
        where = f"mapping for layer {d.get('layer', '?') if isinstance(d, dict) else '?'}"
        check_keys(
            d,
            {"layer", "engine", "spatial", "tiles", "order", "double_buffer", "precision"},
            where,
            required={"layer"},
        )
        spatial = {}
        for axis, v in (d.get("spatial") or {}).items():
            if not isinstance(v, (list, tuple)) or len(v) != 2:
                raise ConfigError(f"{where}: spatial.{axis} must be [dim, factor], got {v!r}")
            spatial[axis] = (str(v[0]), v[1])
        tiles = {str(k): dict(v or {}) for k, v in (d.get("tiles") or {}).items()}
        order = {str(k): list(v or []) for k, v in (d.get("order") or {}).items()}
        return Mapping(
            layer=str(d["layer"]),
            engine=str(d.get("engine", "main")),
            spatial=spatial,
            tiles=tiles,
            order=order,
            double_buffer={str(k): bool(v) for k, v in (d.get("double_buffer") or {}).items()},
            precision=_precision_from(d["precision"], where) if d.get("precision") is not None else None,
        )

    def summary(self) -> str:
        """One line for reports: spatial unrolling and the DRAM-level loop order with factors."""
        sp = " ".join(f"{d}{k}" for d, k in self.spatial.values()) or "-"
        dram = " ".join(
            f"{d}{self.factor('DRAM', d)}" for d in self.full_order("DRAM") if self.factor("DRAM", d) > 1
        )
        return f"spatial[{sp}] dram[{dram or '-'}]"


def _precision_dict(p: Precision) -> dict:
    return {"weight": p.weight, "act": p.act, "acc": p.acc, "out": p.out}


def _precision_from(d, where: str) -> Precision:
    """An integer layer's widths: {weight, act, out, acc} bits (weight and act required)."""
    check_keys(d, {"weight", "act", "acc", "out"}, f"{where}: precision", required={"weight", "act"})
    try:
        return Precision(
            weight=d["weight"], act=d["act"], acc=d.get("acc", 32), out=d.get("out", d["act"]), kind="int"
        )
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


# --- legality ----------------------------------------------------------------------------------
def tile_extents(layer: Layer, mapping: Mapping, engine: Engine, level_index: int) -> dict[str, int]:
    """Per-dim extent of the tile held at a level (DRAM = 0), clipped to the layer's bounds.

    A per-PE level's tile excludes the spatial factors; a shared level's tile includes them.
    """
    names = engine.level_names
    inner = names[level_index:]
    below_spatial = level_index > engine.spatial_level
    ext = {}
    for d in DIMS:
        f = 1 if below_spatial else mapping.spatial_factor(d)
        for lv in inner:
            f *= mapping.factor(lv, d)
        ext[d] = min(f, getattr(layer, d))
    return ext


def input_window(layer: Layer, p: int, r: int, axis: int) -> int:
    """Rows (axis 0) or cols (axis 1) of the dense input window a (p x r) tile touches."""
    return (p - 1) * layer.stride[axis] + (r - 1) * layer.dilation[axis] + 1


def tile_bytes(layer: Layer, ext: dict[str, int], operand: str, acc_bits: int) -> tuple[int, str]:
    """Bytes of one operand's tile and a human description (e.g. '34x34x64 int8')."""
    prec = layer.precision
    if operand == "W":
        words = ext["G"] * ext["K"] * ext["C"] * ext["R"] * ext["S"]
        shape = f"{ext['G'] * ext['K']}x{ext['C']}x{ext['R']}x{ext['S']}"
        bits = prec.weight
    elif operand == "I":
        h = min(input_window(layer, ext["P"], ext["R"], 0), layer.in_hw[0] + layer.pads[0] + layer.pads[2])
        w = min(input_window(layer, ext["Q"], ext["S"], 1), layer.in_hw[1] + layer.pads[1] + layer.pads[3])
        words = ext["N"] * ext["G"] * ext["C"] * h * w
        shape = f"{h}x{w}x{ext['G'] * ext['C']}" + (f"x{ext['N']}" if ext["N"] > 1 else "")
        bits = prec.act
    else:
        words = ext["N"] * ext["G"] * ext["K"] * ext["P"] * ext["Q"]
        shape = f"{ext['P']}x{ext['Q']}x{ext['G'] * ext['K']}" + (f"x{ext['N']}" if ext["N"] > 1 else "")
        bits = acc_bits  # on-chip outputs are held as accumulators
    kind = "fp" if prec.kind == "float" else "int"
    return math.ceil(words * bits / 8), f"{shape} {kind}{bits}"


def validate_mapping(layer: Layer, accel: Accelerator, mapping: Mapping) -> None:
    """Raise a MappingError naming the field and the fix if the mapping is illegal."""
    where = f"mapping for layer {layer.name}"
    if mapping.layer != layer.name:
        raise MappingError(f"{where}: the mapping names layer {mapping.layer!r}")
    engine = accel.engine(mapping.engine)
    names = engine.level_names
    for lv in mapping.tiles:
        if lv not in names:
            raise MappingError(f"{where}: tiles has unknown level {lv!r}; levels are {list(names)}")
    for lv in list(mapping.order) + list(mapping.double_buffer):
        if lv not in names:
            raise MappingError(f"{where}: unknown level {lv!r}; levels are {list(names)}")
    for lv, t in mapping.tiles.items():
        for d, f in t.items():
            if d not in DIMS:
                raise MappingError(
                    f"{where}: tiles.{lv} has unknown dim {d!r}; loop dims are {', '.join(DIMS)}"
                )
            positive_int(f, f"{where}: tiles.{lv}.{d}")
    for lv, o in mapping.order.items():
        bad = [d for d in o if d not in DIMS]
        if bad or len(set(o)) != len(o):
            raise MappingError(f"{where}: order.{lv} = {o} must list distinct dims from {', '.join(DIMS)}")
    pa = engine.pe_array
    for axis, (d, k) in mapping.spatial.items():
        if axis not in AXES:
            raise MappingError(f"{where}: spatial axis {axis!r} must be 'rows' or 'cols'")
        allowed = pa.row_dims if axis == "rows" else pa.col_dims
        if d not in allowed:
            raise MappingError(
                f"{where}: spatial.{axis} unrolls {d}, but the {pa.dataflow or 'array'} dataflow "
                f"unrolls only {list(allowed)} along {axis}"
            )
        size = pa.rows if axis == "rows" else pa.cols
        positive_int(k, f"{where}: spatial.{axis} factor")
        if k > size:
            raise MappingError(f"{where}: spatial.{axis} factor {k} exceeds the array's {size} {axis}")
    if mapping.double_buffer.get("DRAM"):
        raise MappingError(f"{where}: DRAM cannot be double-buffered; set double_buffer on on-chip levels")
    for d in DIMS:
        cov = mapping.coverage(d, names)
        bound = getattr(layer, d)
        if cov < bound:
            raise MappingError(
                f"{where}: the factors of dim {d} multiply to {cov} but {d} = {bound}; "
                f"raise tiles.DRAM.{d} to {math.ceil(bound * mapping.factor('DRAM', d) / cov)}"
            )
    check_capacity(layer, accel, mapping)


def check_capacity(layer: Layer, accel: Accelerator, mapping: Mapping) -> None:
    engine = accel.engine(mapping.engine)
    for i, lv in enumerate(engine.levels, start=1):
        ext = tile_extents(layer, mapping, engine, i)
        copies = 2 if mapping.double_buffer.get(lv.name) else 1
        need: dict[str, tuple[int, str]] = {
            op: tile_bytes(layer, ext, op, layer.precision.acc) for op in lv.operands
        }
        db = " double-buffered" if copies == 2 else ""
        if lv.sizes is not None:
            for op, (b, desc) in need.items():
                if b * copies > lv.sizes[op]:
                    name = {"W": "weight", "I": "input", "O": "output"}[op]
                    raise CapacityError(
                        f"mapping for layer {layer.name}: {name} tile {desc} = {b * copies:,} B{db} exceeds "
                        f"{name} buffer {lv.name} ({lv.sizes[op]:,} B); shrink the {lv.name}-level tiles "
                        "or move factors to an outer level"
                    )
        else:
            total = sum(b for b, _ in need.values()) * copies
            if total > lv.size:
                parts = ", ".join(f"{op} {desc} = {b:,} B" for op, (b, desc) in need.items())
                raise CapacityError(
                    f"mapping for layer {layer.name}: tiles {parts} total {total:,} B{db} exceed buffer "
                    f"{lv.name} ({lv.size:,} B); shrink the {lv.name}-level tiles or move factors outward"
                )
