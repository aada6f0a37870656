"""A design scored by training: its network trained from scratch, accuracy on `val`. The co-search's
derivation ranks its candidates with it and the sample-based baselines reward their samples with it
(the same recipe for both)."""

from __future__ import annotations

from types import SimpleNamespace

from codax.search.data import Splits
from codax.search.derive import Design
from codax.search.finalize import accuracy, train_from_scratch
from codax.search.space import NetworkSpace


def brief_accuracy(net: NetworkSpace, data: Splits, d: Design, epochs: int, seed: int) -> float:
    """Train the design's network from scratch for `epochs` on `train` (fake-quantised at its
    widths, initialised and shuffled from `seed`); its accuracy on `val`."""
    x, y = data.train
    train_only = SimpleNamespace(train=(x, y), val=(x[:0], y[:0]))  # retrain trains on train + val
    model = train_from_scratch(net, d, train_only, epochs, 0.05, 64, True, seed)
    model.quantize = True
    return accuracy(model, *data.val)
