"""The simplest legal mapping: fill the PE array once, keep everything else at the DRAM level."""

from __future__ import annotations

import math

from codax.errors import CapacityError, InfeasibleError
from codax.ir import DIMS, Accelerator, Layer, Mapping, validate_mapping


def naive_mapping(layer: Layer, accel: Accelerator, engine: str | None = None) -> Mapping:
    eng = accel.engine(engine)
    pa = eng.pe_array
    spatial: dict[str, tuple[str, int]] = {}
    used: set[str] = set()
    for axis, dims, size in (("rows", pa.row_dims, pa.rows), ("cols", pa.col_dims, pa.cols)):
        cands = [d for d in dims if d not in used and getattr(layer, d) > 1] or [
            d for d in dims if d not in used
        ]
        if cands:
            d = cands[0]
            spatial[axis] = (d, min(size, getattr(layer, d)))
            used.add(d)
    m = Mapping(layer=layer.name, engine=eng.name, spatial=spatial)
    m.tiles = {"DRAM": {d: math.ceil(getattr(layer, d) / m.spatial_factor(d)) for d in DIMS}}
    m.order = {"DRAM": list(DIMS)}
    try:
        validate_mapping(layer, accel, m)
    except CapacityError as e:
        raise InfeasibleError(
            f"layer {layer.name} does not fit {accel.name} even with one PE-array tile: {e}"
        ) from None
    return m
