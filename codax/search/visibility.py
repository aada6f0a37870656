"""Which accelerator choices the derived design's cost can see.

For every choice of every engine, the derived design's cost (the search's tables: cycles of the
slowest engine and energy) with that choice at each of its options and the others as derived. A
choice whose fitting options all cost the same is one the cost cannot see: its pick is a tie-break
(the most probable option), not a finding, and the summary says so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from codax.search.cosearch import CoSearch
    from codax.search.derive import Design

REL = 1e-9  # relative change below which two options cost the same


def choice_visibility(cs: CoSearch, d: Design) -> list[dict]:
    """Per engine and choice: the cost at each option (None: over the budget), the metrics the
    choice changes (`sees`: cycles, energy, both or none) and the option the design took."""
    if cs.space.fixed is not None:
        return []
    out = []
    for e, cfg in enumerate(d.accel):
        cfg = tuple(cfg)
        for c, name in enumerate(cs.space.names):
            opts = cs.space.options[c]
            if len(opts) < 2:
                continue
            costs: dict[str, dict | None] = {}
            for o, val in enumerate(opts):
                pt = cfg[:c] + (o,) + cfg[c + 1 :]
                if not cs.hw.fits(pt):
                    costs[str(val)] = None
                    continue
                accel = list(d.accel)
                accel[e] = pt
                with torch.no_grad():
                    est = cs.estimate(onehot_design=replace(d, accel=accel))
                costs[str(val)] = {
                    "cycles": float(est.period_cycles[0]),
                    "energy_uj": float(est.energy_pj[0]) / 1e6,
                }
            sees = [m for m in ("cycles", "energy_uj") if _differs([v[m] for v in costs.values() if v])]
            out.append(
                {"engine": e, "choice": name, "picked": str(opts[cfg[c]]), "costs": costs, "sees": sees}
            )
    return out


def _differs(values: list[float]) -> bool:
    return len(values) > 1 and max(values) - min(values) > REL * max(abs(v) for v in values)
