"""The two-stage baseline's accelerator stage (the exact mapper picks), and the held-out split the
baseline comparison scores on."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from codax.hw.evaluate import evaluate_network
from codax.hw.mapper import map_graph
from codax.search.baselines import best_accelerator_for, random_design
from codax.search.config import load_config
from codax.search.cosearch import CoSearch
from codax.search.data import load_data
from codax.search.derive import Design, build_graph
from codax.search.space import build_accelerator


@pytest.fixture(scope="module")
def small_space_search():
    """A tiny network on an accelerator space of 8 points (two array shapes, two weight buffers,
    two dataflows), small enough to map every point exactly."""
    from tests.search.conftest import TINY

    cfg = {
        **TINY,
        "accelerator": {
            "rows": [8, 16],
            "cols": [8],
            "buffer_kb": {"W": [16, 64], "I": [16], "O": [8]},
            "double_buffer": [True],
        },
    }
    cs = CoSearch(load_config(cfg))
    net = random_design(cs, random.Random(3))
    return cs, Design(net.ops, net.bits, net.accel, net.maps)


def independent_fps(cs: CoSearch, d: Design, point: tuple) -> float:
    """The network on one point: map_graph (latency) and the network evaluation, called directly."""
    graph, _ = build_graph(cs.net, d)
    accel = build_accelerator(cs.space, [point])
    gm = map_graph(graph, accel, objective="latency")
    return evaluate_network(graph, accel, gm.mappings).fps


def test_exhaustive_stage_picks_the_exact_fastest_point(small_space_search):
    cs, d = small_space_search
    points = cs.feasible_points()
    assert len(points) == 8
    fps = {p: independent_fps(cs, d, p) for p in points}
    assert len(set(fps.values())) > 1, "the points must differ for the pick to mean anything"
    got, log = best_accelerator_for(cs, d, shortlist=None)
    assert got.ops == d.ops and got.bits == d.bits
    assert fps[got.accel[0]] == pytest.approx(max(fps.values()), rel=1e-9)
    assert log["evaluated_exactly"] == 8 and log["chosen_exact_fps"] == pytest.approx(max(fps.values()))
    assert log["templates_pick_exact_fps"] is None


def test_shortlist_stage_picks_the_exact_fastest_of_the_templates_top_k(small_space_search):
    cs, d = small_space_search
    got, log = best_accelerator_for(cs, d, shortlist=3)
    listed = [tuple(r["point"]) for r in log["points"]]
    assert len(listed) == 3 and [r["template_rank"] for r in log["points"]] == [0, 1, 2]
    fps = {p: independent_fps(cs, d, p) for p in listed}
    assert got.accel[0] in listed
    assert fps[got.accel[0]] == pytest.approx(max(fps.values()), rel=1e-9)
    assert log["templates_pick_exact_fps"] == pytest.approx(fps[listed[0]], rel=1e-9)
    # a shortlist as long as the space is the exhaustive stage
    full, full_log = best_accelerator_for(cs, d, shortlist=100)
    assert full_log["evaluated_exactly"] == 8 and full_log["chosen_template_rank"] is None


def test_shortlist_must_be_positive(small_space_search):
    cs, d = small_space_search
    with pytest.raises(ValueError, match="shortlist"):
        best_accelerator_for(cs, d, shortlist=0)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_digits_splits_partition_the_data_set(seed):
    """train, val and test together are the 1,797 digits, each image exactly once (the test images
    are in neither search split). Normalisation is one increasing affine map of the pixels, which
    keeps the lexicographic order of images: sorted, the splits' images are the sorted raw images
    under one (scale, shift)."""
    from sklearn.datasets import load_digits

    data = load_data(load_config(None), seed)
    parts = [data.train, data.val, data.test]
    x = torch.cat([p[0] for p in parts]).reshape(-1, 64).double().numpy()
    y = torch.cat([p[1] for p in parts]).numpy()
    raw = load_digits()
    r = raw.images.reshape(-1, 64) / 16.0
    assert len(x) == len(r) == 1797
    xo, ro = np.lexsort(x.T[::-1]), np.lexsort(r.T[::-1])
    xs, rs = x[xo], r[ro]
    scale, shift = np.polyfit(rs.ravel(), xs.ravel(), 1)
    assert scale > 0 and np.abs(xs - (rs * scale + shift)).max() < 1e-4
    # the labels travel with their images (ties among identical images share a label)
    assert (y[xo] == raw.target[ro]).mean() > 0.99
    assert 0.19 < len(data.test[1]) / 1797 < 0.21
