"""Hypothesis strategies: random layers and random (covering) mappings on library and toy accelerators."""

import random

from hypothesis import strategies as st

from codax.hw import load_accelerator
from codax.hw.mapper.space import random_mapping
from codax.ir import Layer

from .accels import one_level, two_level

ACCELS = [
    load_accelerator(n) for n in ("eyeriss-like", "shidiannao-like", "nvdla-small", "tpu-like", "zc706-int8")
]
ACCELS += [two_level(), one_level(4, 4, ["K", "P", "G"], ["C", "Q"])]


@st.composite
def layers(draw) -> Layer:
    g = draw(st.sampled_from([1, 1, 2, 4]))
    depthwise = g > 1 and draw(st.booleans())
    return Layer(
        "L",
        N=draw(st.integers(1, 2)),
        G=g,
        K=1 if depthwise else draw(st.integers(1, 24)),
        C=1 if depthwise else draw(st.integers(1, 24)),
        P=draw(st.integers(1, 12)),
        Q=draw(st.integers(1, 12)),
        R=draw(st.integers(1, 5)),
        S=draw(st.integers(1, 5)),
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        dilation=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        pads=(0, 0, 0, 0),
    )


@st.composite
def points(draw):
    layer = draw(layers())
    accel = draw(st.sampled_from(ACCELS))
    seed = draw(st.integers(0, 2**31))
    return layer, accel, random_mapping(layer, accel, random.Random(seed))
