"""Translate between ZigZag mappings and codax mappings, on a codax mirror of a ZigZag accelerator.

ZigZag gives each operand its own memory hierarchy and cuts one ordered list of temporal loops
(innermost first) at a different place for each of that operand's memories ("allocation"). codax
shares levels across operands and puts each loop in one level. A ZigZag allocation becomes a codax
(accelerator, mapping) pair by making one codax level per (memory, cut), sorted outermost first:

- a level's loops are the temporal loops between its cut and the next inner cut;
- a memory whose operands are cut at different places becomes one level per cut;
- memories private to each PE (`served_dimensions: []`) become `per_pe` levels, which codax
  requires below every shared level; an allocation that puts a shared memory's cut below a per-PE
  one, or a dim twice in one codax level, is reported as not representable;
- energies per bit are ZigZag's cost per access over its port width, the MAC energy ZigZag's; the
  pipeline depth is 0: codax's engine refills its MAC pipeline once per run of steps between
  transfers, while ZigZag's systolic array streams across them and drains once at the end (sum of
  unroll - 1 over systolic dims, 62 cycles on tpu_like), which the mirror leaves out.

The reverse direction (`to_zigzag`) lists a codax mapping's loops innermost first, which ZigZag's
own memory allocator then cuts greedily; `from_zigzag(to_zigzag(m))` gives back `m` when the codax
tiles are the largest the memories allow (the round trip the tests check).
"""

from __future__ import annotations

from dataclasses import dataclass

from codax.bench.zigzag_bridge import ZigZagLayer, ZigZagResult, describe_hardware
from codax.ir import Accelerator, Layer, Mapping, Precision

ZZ_OPERAND = {"W": "W", "I": "I", "O": "O"}


class NotRepresentable(ValueError):
    """A ZigZag allocation that codax's shared-level loop nest cannot express."""


@dataclass
class Mirror:
    accel: Accelerator
    mapping: Mapping
    layer: Layer


def codax_layer(z: ZigZagLayer) -> Layer:
    return Layer(
        name=z.name,
        N=z.N,
        G=z.G,
        K=z.K,
        C=z.C,
        P=z.P,
        Q=z.Q,
        R=z.R,
        S=z.S,
        stride=tuple(z.stride),
        dilation=tuple(z.dilation),
        pads=tuple(z.padding),
        in_hw=tuple(z.input_hw) if z.input_hw else None,
        precision=Precision(weight=z.w_bits, act=z.i_bits, acc=z.acc_bits, out=z.o_bits),
    )


def _memories(desc: dict) -> dict[str, dict]:
    mems: dict[str, dict] = {}
    for op, levels in desc["operands"].items():
        for m in levels:
            mems.setdefault(m["name"], dict(m, ops=[]))["ops"].append(op)
    return mems


def _bw_bits(m: dict) -> float:
    return float(max(v for v in m["bw_bits_per_cycle"].values() if v))


def from_zigzag(z: ZigZagLayer, hardware: str, result: ZigZagResult) -> Mirror:
    """The codax accelerator + mapping that execute ZigZag's reported spatial mapping and allocation."""
    desc = describe_hardware(hardware)
    mems = _memories(desc)
    temporal = [(d, int(round(f))) for d, f in result.temporal]  # innermost first
    total = len(temporal)
    cuts: dict[tuple[str, int], list[str]] = {}  # (memory, cut) -> operands
    for op, levels in result.temporal_per_level.items():
        names = result.mem_levels[op]
        held = 0
        for name, loops in zip(names, levels):
            held += len(loops)
            if name == "dram":
                continue
            cuts.setdefault((name, held), []).append(op)
    per_pe = {name: not m["served_dimensions"] for name, m in mems.items()}
    ordered = sorted(cuts, key=lambda k: (-k[1], per_pe[k[0]]))
    seen_pe = False
    for name, _ in ordered:
        if seen_pe and not per_pe[name]:
            raise NotRepresentable(f"shared memory {name} is cut below a per-PE memory")
        seen_pe = seen_pe or per_pe[name]

    levels, tiles, order = [], {}, {}
    level_names = []
    bounds = [total] + [c for _, c in ordered] + [0]
    for name, cut in ordered:
        m = mems[name]
        ops = sorted(cuts[(name, cut)], key="WIO".index)
        lname = name if sum(1 for n, _ in ordered if n == name) == 1 else f"{name}_{''.join(ops)}"
        level_names.append(lname)
        bw = _bw_bits(m)
        if per_pe[name]:  # a PE reads or writes one element per access (ZigZag charges a whole access)
            elem = min(z.w_bits if "W" in ops else z.i_bits if "I" in ops else z.acc_bits, bw)
            bw = min(bw, elem)
        levels.append(
            {
                "name": lname,
                "operands": ops,
                "size": max(1, m["size_bits"] // 8),
                "bandwidth": bw / 8.0,
                "per_pe": per_pe[name],
                "read_pj_per_bit": m["r_cost_pj"] / bw,
                "write_pj_per_bit": m["w_cost_pj"] / bw,
            }
        )
    for j, lname in enumerate(["DRAM"] + level_names):
        loops: list[tuple[str, int]] = []
        for d, f in temporal[bounds[j + 1] : bounds[j]]:  # adjacent loops of one dim are one loop
            if loops and loops[-1][0] == d:
                loops[-1] = (d, loops[-1][1] * f)
            else:
                loops.append((d, f))
        dims = [d for d, _ in loops]
        if len(set(dims)) != len(dims):
            raise NotRepresentable(f"dim repeated within codax level {lname}: {loops}")
        tiles[lname] = {d: f for d, f in loops if f > 1}
        order[lname] = [d for d, _ in reversed(loops)]
    dram = mems["dram"]
    spatial = {}
    row_dims, col_dims = ["K"], ["C"]
    for axis, oa in (("rows", "D1"), ("cols", "D2")):
        sp = [(d, int(round(f))) for d, f in result.spatial.get(oa, []) if f > 1]
        if len(sp) > 1:
            raise NotRepresentable(f"{oa} unrolls several dims {sp}; codax unrolls one dim per array axis")
        if sp:
            spatial[axis] = sp[0]
            (row_dims if axis == "rows" else col_dims)[0] = sp[0][0]
    accel = Accelerator.from_dict(
        {
            "name": f"{hardware}-mirror",
            "target": "asic",
            "precision": {"weight": z.w_bits, "act": z.i_bits, "acc": z.acc_bits},
            "dram": {
                "bandwidth": _bw_bits(dram) / 8.0,
                "read_pj_per_bit": dram["r_cost_pj"] / _bw_bits(dram),
                "write_pj_per_bit": dram["w_cost_pj"] / _bw_bits(dram),
                # ZigZag streams weights that are reloaded into the array while it computes, and its
                # on-loading phase takes the longer of the input operands' first tiles (side by
                # side) rather than their sum: codax's nearest assumption is streamed weights
                "stream_weights": True,
                # ZigZag charges no DRAM round-trip latency
                "latency": 0,
            },
            "mac_pj": desc["mac_energy_pj"],
            "pe_array": {
                "rows": desc["array"]["D1"],
                "cols": desc["array"]["D2"],
                "row_dims": row_dims,
                "col_dims": col_dims,
                "pipeline_depth": 0,  # no refill per run (see the module docstring)
            },
            "levels": levels,
        }
    )
    layer = codax_layer(z)
    mapping = Mapping(layer.name, spatial=spatial, tiles=tiles, order=order)
    # ZigZag overlaps every memory's transfers with compute (within a window that shrinks when the
    # memory is more than half full); codax's nearest assumption is double buffering at every level
    mapping.double_buffer = {lv: True for lv in level_names}
    return Mirror(accel, mapping, layer)


def to_zigzag(mapping: Mapping, accel: Accelerator) -> tuple[dict, list[tuple[str, int]]]:
    """A codax mapping as ZigZag's spatial mapping and temporal ordering (innermost loop first)."""
    engine = accel.engine(mapping.engine)
    spatial = {
        oa: [mapping.spatial[axis]] if axis in mapping.spatial else []
        for axis, oa in (("rows", "D1"), ("cols", "D2"))
    }
    temporal: list[tuple[str, int]] = []
    for lv in reversed(engine.level_names):
        for d in reversed(mapping.full_order(lv)):
            f = mapping.factor(lv, d)
            if f > 1:
                temporal.append((d, f))
    return spatial, temporal
