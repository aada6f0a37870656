"""The program's data layout: weights in tile order put every DRAM-level weight tile in one contiguous
range (one burst), holding exactly that tile's weights (edge tiles padded with zeros)."""

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from codax.codegen.program import tile_order
from codax.ir import conv2d


@settings(max_examples=40, deadline=None)
@given(
    g=st.integers(1, 3), k=st.integers(1, 7), c=st.integers(1, 6), r=st.integers(1, 3), s=st.integers(1, 3),
    data=st.data(),
)  # fmt: skip
def test_each_weight_tile_is_one_contiguous_range(g, k, c, r, s, data):
    layer = conv2d("L", c_in=g * c, c_out=g * k, hw=(5, 5), kernel=(r, s), groups=g, pads=(1, 1, 1, 1))
    dims = (g, k, c, r, s)
    tile = tuple(data.draw(st.integers(1, d + 1)) for d in dims)
    w = np.arange(1, math.prod(dims) + 1, dtype=np.int64).reshape(g * k, c, r, s)
    flat = tile_order(layer, w, tile)
    vol = math.prod(tile)
    n = [-(-d // t) for d, t in zip(dims, tile)]
    assert flat.size == math.prod(n) * vol
    w5 = w.reshape(dims)
    for i, origin in enumerate(itertools.product(*[range(0, m * t, t) for m, t in zip(n, tile)])):
        block = flat[i * vol : (i + 1) * vol].reshape(tile)
        want = np.zeros(tile, np.int64)
        part = w5[tuple(slice(o, o + t) for o, t in zip(origin, tile))]
        want[tuple(slice(0, e) for e in part.shape)] = part
        assert np.array_equal(block, want), origin
