"""Hardware: the analytical cost model (PyTorch), resource and energy tables, the device and
baseline-accelerator library, and the mapper. Knows nothing of TVM."""

from codax.hw.cost import CostOutputs, cost_core, expected
from codax.hw.encode import CostInputs, encode, stack
from codax.hw.evaluate import (
    LayerCost,
    NetworkCost,
    Resources,
    compulsory_words,
    evaluate,
    evaluate_many,
    evaluate_network,
)
from codax.hw.library import (
    list_accelerators,
    list_devices,
    load_accelerator,
    load_device,
    load_technology,
)

__all__ = [
    "CostOutputs",
    "cost_core",
    "expected",
    "CostInputs",
    "encode",
    "stack",
    "LayerCost",
    "NetworkCost",
    "Resources",
    "compulsory_words",
    "evaluate",
    "evaluate_many",
    "evaluate_network",
    "list_accelerators",
    "list_devices",
    "load_accelerator",
    "load_device",
    "load_technology",
]
