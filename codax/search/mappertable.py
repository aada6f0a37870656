"""The relaxed cost from the exact mapper: per accelerator point, every supernet layer's cost under
the mapping `codax.hw.mapper.map_layer` picks for it on that point.

The mapping templates of hwcost.py are fixed tilings; the mapper searches spatial unrolling, tiles,
loop order and double buffering, and the derived design is evaluated with its mappings. A search
that descends the templates' cost optimises a different hardware than the one it derives (the
templates unroll P on an output-stationary array's rows where the mapper takes K x C on the same
engine; their cycles were 25-700% off the mapper's). So the table the search contracts holds the
mapper's costs: per (layer shape, accelerator point), one mapper search at the widest bit widths
(a mapping legal there is legal at every narrower width: its tiles only shrink), evaluated exactly at
each (weight, activation) width combination. Points are added as the accelerator distribution
moves (HardwareObjective caches them), as Auto-NBA re-searches its accelerator for the current
network. A layer the mapper finds no legal mapping for on a point keeps the templates' (penalised)
cost.

Most of a table's price is the mapper's searches, and most points pose a layer a search already run
elsewhere: `MapperTables` runs one search per layer and *mapper view*, what that search reads from
the point (`layer_view`):
- the spatial unrollings the array offers the layer (`codax.hw.mapper.space.spatial_options`: one
  dim per axis at min(extent, axis size)), not the rows, cols and dataflow themselves: an 8-channel
  layer sees the same options on 8, 16 or 32 rows, and a dim both dataflows unroll the same way;
- each operand's buffer, clipped at what the layer's whole operand needs double-buffered (its full
  tensor at the widest widths, outputs as 32-bit accumulators, x 2): above that every tiling the
  mapper can consider fits, so a larger buffer adds no legal mapping (the cost model's cycles read
  the capacity only through legality);
- for the `energy` and `edp` objectives also the total buffer size and the array's size, which set
  the SRAM energy per bit and the energy objective's tie-break scale (for `latency` the energy only
  breaks exact ties in cycles, at 1e-9 of the score).
Points with equal views pose the same search; its mapping is then costed exactly on each point
(the cost model at every width combination, its inputs assembled from the parts of
`codax.hw.encode.encode`: the layer's and the mapping's encoded once, the point's once per
precision), once per (layer, mapping, buffer sizes): the cost model reads nothing else of these
points (the array's size only for its utilisation figures, the dataflow only through the
mapping's unrolling). The space's `double_buffer` choice is not in any
view (the mapper decides double buffering per mapping), so such points share whole tables
(`HardwareObjective.tables`). The local expectations of acceldist.py evaluate a draw's neighbours,
which differ from it in one block of choices, so most of a neighbour's layers find their search and
their costing done. On the default digits space the 864 fitting points are 432 accelerators and
pose the supernet's 52 layers 404 searches in all, of 44,928 layer-point pairs (12,818 views for
the energy objectives).
"""

from __future__ import annotations

import torch

from codax.errors import InfeasibleError
from codax.hw.cost import cost_core
from codax.hw.encode import CostInputs, encode_hardware, encode_layer, encode_mapping, stack
from codax.hw.mapper import map_layer
from codax.hw.mapper.space import spatial_options
from codax.ir import Layer, Mapping, Precision
from codax.search.hwcost import LayerTable, configs_costs
from codax.search.space import AccelSpace, build_accelerator

MAPPER_OBJECTIVES = ("latency", "energy", "edp")


def operand_bytes(layer: Layer) -> tuple[float, float, float]:
    """Bytes of the layer's whole W, I and O tensors at its precision (I padded, O as 32-bit
    accumulators): no tile of any mapping holds more of an operand."""
    d = layer.dims
    w = d["G"] * d["K"] * d["C"] * d["R"] * d["S"] * layer.precision.weight / 8
    pt, pb, pl, pr = layer.pads
    i = d["N"] * d["G"] * d["C"] * (layer.in_hw[0] + pt + pb) * (layer.in_hw[1] + pl + pr)
    o = d["N"] * d["G"] * d["K"] * d["P"] * d["Q"] * 4.0
    return float(w), float(i * layer.precision.act / 8), float(o)


def layer_view(layer: Layer, space: AccelSpace, cfg: tuple[int, ...], objective: str) -> tuple:
    """What one mapper search of `layer` (at its precision) reads from engine point `cfg` (module
    docstring): equal views pose the same search."""
    accel = build_accelerator(space, [cfg])
    spatial = tuple(tuple(sorted(sp.items())) for sp in spatial_options(layer, accel, "main"))
    caps = [space.value(cfg, f"buf_{op}") * 1024.0 for op in "WIO"]
    need = operand_bytes(layer)
    clipped = tuple(c if c < 2.0 * n else "ample" for c, n in zip(caps, need))
    view: tuple = (spatial, clipped)
    if objective != "latency":  # the SRAM energy per bit and the tie-break scale enter the ranking
        view += (sum(caps), space.value(cfg, "rows") * space.value(cfg, "cols"))
    return view


def table_key(space: AccelSpace, cfg: tuple[int, ...]) -> str:
    """Points with equal keys build the same accelerator and so have equal mapper tables."""
    return repr(build_accelerator(space, [cfg]))


class MapperTables:
    """Mapper cost tables of engine points, one mapper search per (layer, mapper view) over the
    object's life (`searches` counts them, `reused` the layer-point pairs that took a search's
    mapping from another point, `evaluations` the (layer, widths) costings run)."""

    def __init__(self, lt: LayerTable, space: AccelSpace, m_count: int, objective: str):
        self.lt, self.space, self.m_count = lt, space, m_count
        self.objective = objective if objective in MAPPER_OBJECTIVES else "latency"
        self.mappings: dict[tuple, Mapping | None] = {}  # (layer row, view) -> mapping (None: none legal)
        # (layer row, mapping, buffer sizes) -> [n_bit_combos, 2]: the cost model reads nothing else
        # of the point (the array's size only for its utilisation figures)
        self.rows_costed: dict[tuple, torch.Tensor] = {}
        self.searches = 0
        self.reused = 0
        self.evaluations = 0
        # the parts of a cost-model input (codax.hw.encode.encode) that outlive a point: each layer's
        # at each width combination, each mapping's
        self._layer_enc: dict[tuple[int, int], dict] = {}
        self._mapping_enc: dict[str, dict] = {}
        wb, ab = lt.bits_nb()
        self._widest = [
            la.with_(precision=Precision(int(wb[i].max()), int(ab[i].max()), 32, int(ab[i].max())))
            for i, la in enumerate(lt.layers)
        ]

    def mapping(self, i: int, cfg: tuple[int, ...], accel) -> Mapping | None:
        """The mapper's mapping of layer row `i` (widest widths) on point `cfg`, from the search of
        its view (run here when the view is new); None when it has no legal mapping."""
        key = (i, layer_view(self._widest[i], self.space, cfg, self.objective))
        if key in self.mappings:
            self.reused += 1
            return self.mappings[key]
        self.searches += 1
        try:
            m = map_layer(self._widest[i], accel, self.objective, engine="main", seed=0).mapping
        except InfeasibleError:
            m = None
        self.mappings[key] = m
        return m

    def costs(self, cfgs: list[tuple[int, ...]], rows: list[int] | None = None) -> list[torch.Tensor]:
        """[n_layers, n_bit_combos, m_count, 2] (cycles, energy pJ) per engine point (cycles: each
        call's own, its descriptor on chip, as in hwcost.configs_costs), every mapping slot holding
        the mapper's mapping (the mapping logits have nothing left to choose). `rows`: only these
        layers (the others stay zero)."""
        lt = self.lt
        wb, ab = lt.bits_nb()  # [n, B]
        n, B = wb.shape
        out = []
        for cfg in cfgs:
            accel = build_accelerator(self.space, [cfg])
            caps = tuple(self.space.value(cfg, f"buf_{op}") for op in "WIO")
            t = torch.zeros(n, B, 2)
            hw_enc: dict[Precision, dict] = {}  # the point's part, per precision (its MAC energy)
            inputs, where, missing, fresh = [], [], [], {}
            for i in range(n) if rows is None else rows:
                m = self.mapping(i, cfg, accel)
                if m is None:
                    missing.append(i)
                    continue
                mk = repr(m)
                key = (i, mk, caps)
                if key in self.rows_costed:
                    t[i] = self.rows_costed[key]
                    continue
                fresh[i] = key
                if mk not in self._mapping_enc:
                    self._mapping_enc[mk] = encode_mapping(m, accel.engine(m.engine).level_names)
                for b in range(B):
                    prec = Precision(int(wb[i, b]), int(ab[i, b]), 32, int(ab[i, b]))
                    at = lt.layers[i].with_(precision=prec)
                    if (i, b) not in self._layer_enc:
                        self._layer_enc[i, b] = encode_layer(at)
                    if prec not in hw_enc:
                        hw_enc[prec] = encode_hardware(accel, m.engine, at)
                    parts = {**self._layer_enc[i, b], **self._mapping_enc[mk], **hw_enc[prec]}
                    inputs.append(CostInputs(**parts))
                    where.append((i, b))
            self.evaluations += len(inputs)
            if inputs:
                t[[i for i, _ in where], [b for _, b in where]] = own_costs(inputs)
            for i, key in fresh.items():
                self.rows_costed[key] = t[i].clone()
            if missing:  # no legal mapping: the templates' cost, already penalised as infeasible
                tmpl = configs_costs(lt, self.space, [cfg], self.m_count, True)[0].amin(2)  # [n, B, 2]
                t[missing] = tmpl[missing]
            out.append(t.unsqueeze(2).expand(n, B, self.m_count, 2).contiguous())
        return out


def own_costs(inputs: list[CostInputs]) -> torch.Tensor:
    """[len(inputs), 2] (cycles, energy pJ) of encoded (layer, accelerator, mapping) points, batched as
    `codax.hw.evaluate.evaluate_many` batches them (by memory levels), without the per-point report
    (levels, resources) it also assembles. Cycles are the call's own, its descriptor on chip: the
    objective charges the fetch per network."""
    groups: dict[int, list[int]] = {}
    for k, e in enumerate(inputs):
        groups.setdefault(e.levels, []).append(k)
    res = torch.zeros(len(inputs), 2, dtype=torch.float64)
    for idx in groups.values():
        with torch.no_grad():
            out = cost_core(stack([inputs[k] for k in idx]))
        res[idx] = torch.stack([out.cycles - out.fetch_cycles, out.energy_pj], dim=-1).double()
    return res.float()


def mapper_costs(
    lt: LayerTable,
    space: AccelSpace,
    cfgs: list[tuple[int, ...]],
    m_count: int,
    objective: str,
    rows: list[int] | None = None,
) -> list[torch.Tensor]:
    """`MapperTables.costs` of the points with a fresh memo (each table's searches shared only among
    these points)."""
    return MapperTables(lt, space, m_count, objective).costs(cfgs, rows)
