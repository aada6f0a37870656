"""Tiny search configs: a few steps on a few hundred digits, so the whole folder runs in minutes."""

from __future__ import annotations

import copy

import pytest

TINY = {
    "seed": 0,
    "data": {"limit": 240},
    "network": {
        "stem": {"width": 4, "stride": 1},
        "stages": [{"width": 8, "depth": 1, "stride": 1}, {"width": 8, "depth": 1, "stride": 2}],
        "kernels": [3, 5],
        "expansions": [1, 3],
    },
    "accelerator": {
        "rows": [8, 16],
        "cols": [8, 16],
        "buffer_kb": {"W": [16, 64], "I": [16, 64], "O": [8, 32]},
    },
    "search": {
        "epochs": 3,
        "warmup_epochs": 1,
        "batch_size": 32,
        "max_steps_per_epoch": 3,
        "objective": "edp",
        # fixed tilings: the mapper's tables (the default) cost seconds per accelerator point; the tests
        # of those tables (test_mappertable.py) use them
        "relaxed_cost": "templates",
    },
    "retrain": {"epochs": 2},
    "surrogate": {"samples": 800, "epochs": 60, "hidden": 32},
}


@pytest.fixture
def tiny() -> dict:
    return copy.deepcopy(TINY)
