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
"""

from __future__ import annotations

import torch

from codax.errors import InfeasibleError
from codax.hw.evaluate import evaluate_many
from codax.hw.mapper import map_layer
from codax.ir import Precision
from codax.search.hwcost import LayerTable, configs_costs
from codax.search.space import AccelSpace, build_accelerator

MAPPER_OBJECTIVES = ("latency", "energy", "edp")


def mapper_costs(
    lt: LayerTable,
    space: AccelSpace,
    cfgs: list[tuple[int, ...]],
    m_count: int,
    objective: str,
    rows: list[int] | None = None,
) -> list[torch.Tensor]:
    """[n_layers, n_bit_combos, m_count, 2] (cycles, energy pJ) per engine point (cycles: each call's
    own, its descriptor on chip, as in hwcost.configs_costs), every mapping slot
    holding the mapper's mapping (the mapping logits have nothing left to choose). `rows`: only
    these layers (the others stay zero)."""
    obj = objective if objective in MAPPER_OBJECTIVES else "latency"
    wb, ab = lt.bits_nb()  # [n, B]
    n, B = wb.shape
    out = []
    for cfg in cfgs:
        accel = build_accelerator(space, [cfg])
        points, where, missing = [], [], []
        for i in range(n) if rows is None else rows:
            layer = lt.layers[i]
            wmax, amax = int(wb[i].max()), int(ab[i].max())
            try:
                m = map_layer(
                    layer.with_(precision=Precision(wmax, amax, 32, amax)), accel, obj, engine="main", seed=0
                ).mapping
            except InfeasibleError:
                missing.append(i)
                continue
            for b in range(B):
                w, a = int(wb[i, b]), int(ab[i, b])
                points.append((layer.with_(precision=Precision(w, a, 32, a)), accel, m))
                where.append((i, b))
        t = torch.zeros(n, B, 2)
        for (i, b), c in zip(where, evaluate_many(points, check=False)):
            # the call's own cycles, its descriptor on chip: the objective charges the fetch per network
            t[i, b, 0], t[i, b, 1] = c.cycles - c.fetch_cycles, c.energy_pj
        if missing:  # no legal mapping: the templates' cost, already penalised as infeasible
            tmpl = configs_costs(lt, space, [cfg], m_count, True)[0].amin(2)  # [n, B, 2]
            t[missing] = tmpl[missing]
        out.append(t.unsqueeze(2).expand(n, B, m_count, 2).contiguous())
    return out
