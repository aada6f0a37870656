"""The cost model's contract, checked: instrumented C-simulation counts == codax.hw.evaluate's counts.

`check_counts` runs a layer's instrumented kernel and compares, per level and operand, the words
moved into each level (`words_in`), out of it (`words_out`) and the MACs with the analytical model.
They must be equal exactly; a difference is either a codegen bug or a cost-model rule the two sides
read differently, and the report names the level/operand and both numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codax.codegen.csim import Counts
from codax.hw import evaluate
from codax.ir import OPERANDS, Accelerator, Layer, Mapping


@dataclass
class CountCheck:
    layer: str
    mismatches: list[str]
    counted: Counts
    model_macs: float

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def __str__(self) -> str:
        return f"layer {self.layer}: " + (
            "counts equal the cost model" if self.ok else "; ".join(self.mismatches)
        )


def compare_counts(layer: Layer, accel: Accelerator, mapping: Mapping, counted: Counts) -> CountCheck:
    """Compare counts from an instrumented csim run with the cost model's, exactly."""
    cost = evaluate(layer, accel, mapping)
    bad = []
    names = accel.engine(mapping.engine).level_names
    for lv in names[1:]:
        for op in OPERANDS:
            for what, model, got in (
                ("words_in", cost.words_in[lv][op], counted.words_in[lv][op]),
                ("words_out", cost.words_out[lv][op], counted.words_out[lv][op]),
            ):
                if not np.isclose(model, got, rtol=0, atol=1e-6):
                    bad.append(f"{what}[{lv}][{op}] model {model:g} vs csim {got}")
    if counted.macs != cost.macs:
        bad.append(f"macs model {cost.macs} vs csim {counted.macs}")
    return CountCheck(layer.name, bad, counted, cost.macs)
