"""Random layers and random legal mappings (every library accelerator plus the toy ones), shared by the
property tests and the benchmark-style sweeps."""

from __future__ import annotations

import random

import numpy as np

from codax.errors import MappingError
from codax.hw import load_accelerator
from codax.hw.mapper.space import random_mapping
from codax.ir import Accelerator, Epilogue, Layer, Precision, validate_mapping
from tests.hw.accels import one_level, two_level

ACCELS = [
    load_accelerator(n) for n in ("eyeriss-like", "shidiannao-like", "nvdla-small", "tpu-like", "zc706-int8")
]
ACCELS += [two_level(), one_level(4, 4, ["K", "P", "G"], ["C", "Q"])]


def random_layer(r: random.Random, kind: str = "int") -> Layer:
    g = r.choice([1, 1, 2, 4])
    dw = g > 1 and r.random() < 0.5
    prec = Precision() if kind == "int" else Precision.float32()
    return Layer(
        "L",
        N=r.randint(1, 2),
        G=g,
        K=1 if dw else r.randint(1, 12),
        C=1 if dw else r.randint(1, 12),
        P=r.randint(1, 7),
        Q=r.randint(1, 7),
        R=r.randint(1, 4),
        S=r.randint(1, 4),
        stride=(r.randint(1, 3), r.randint(1, 3)),
        dilation=(r.randint(1, 2), r.randint(1, 2)),
        pads=tuple(r.randint(0, 2) for _ in range(4)),
        precision=prec,
        epilogue=Epilogue(bias=r.random() < 0.5, activation=r.choice([None, "relu"]), requant=kind == "int"),
    )


def random_case(seed: int, kind: str = "int"):
    """(layer, accelerator, legal mapping) drawn from `seed`; None when no drawn mapping fits."""
    r = random.Random(seed)
    layer = random_layer(r, kind)
    accel = r.choice(ACCELS)
    if kind == "float":  # an engine with an fp32 MAC in every PE
        d = accel.to_dict()
        d["precision"]["float"] = True
        accel = Accelerator.from_dict(d)
    m = legal_mapping(layer, accel, r)
    return None if m is None else (layer, accel, m)


def legal_mapping(layer: Layer, accel: Accelerator, r: random.Random):
    """A random mapping of `layer` on `accel` that validates (50 draws), else None."""
    for _ in range(50):
        m = random_mapping(layer, accel, r)
        try:
            validate_mapping(layer, accel, m)
            return m
        except MappingError:
            continue
    return None


def random_input(layer: Layer, rng: np.random.Generator, params) -> np.ndarray:
    h, w = layer.in_hw
    shape = (layer.N, layer.G * layer.C, h, w)
    if params.kind == "float":
        return rng.standard_normal(shape).astype(np.float32)
    lo, hi = (-128, 127) if params.x_signed else (0, 255)
    return rng.integers(lo, hi + 1, shape).astype(np.int8 if params.x_signed else np.uint8)
