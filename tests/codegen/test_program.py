"""The program's data layout: weights in tile order put every DRAM-level weight tile in one contiguous
range (one burst), holding exactly that tile's weights, in grid order with no padding."""

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
    assert flat.size == w.size  # edge tiles are not padded: the blob is the weights, reordered
    n = [-(-d // t) for d, t in zip(dims, tile)]
    w5 = w.reshape(dims)
    at = 0
    for origin in itertools.product(*[range(0, m * t, t) for m, t in zip(n, tile)]):
        part = w5[tuple(slice(o, o + t) for o, t in zip(origin, tile))]  # the clipped tile
        assert np.array_equal(flat[at : at + part.size], part.reshape(-1)), origin
        at += part.size
    assert at == flat.size
