"""Data loaders: digits (default), CIFAR python-pickle folders, ImageFolder trees; deterministic."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from codax.errors import ConfigError
from codax.search.config import load_config
from codax.search.data import load_data


def test_digits_splits_deterministic():
    cfg = load_config(None)
    a, b = load_data(cfg, 0), load_data(cfg, 0)
    assert torch.equal(a.train[0], b.train[0]) and a.shape == (1, 8, 8) and a.num_classes == 10
    n = len(a.train[0]) + len(a.val[0]) + len(a.test[0])
    assert n == 1797


def test_cifar10_pickle_layout(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.RandomState(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({"data": rng.randint(0, 255, (4, 3072), dtype=np.uint8), "labels": list(range(4))}, f)
    s = load_data(load_config({"data": {"name": "cifar10", "root": str(tmp_path)}}), 0)
    assert s.shape == (3, 32, 32) and len(s.test[0]) == 4 and len(s.train[0]) + len(s.val[0]) == 20


def test_image_folder(tmp_path):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((10, 12, 3), 40 * i, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    s = load_data(load_config({"data": {"name": "imagefolder", "root": str(tmp_path), "image_size": 8}}), 0)
    assert s.shape == (3, 8, 8) and s.num_classes == 2


def test_missing_cifar_names_field(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        load_data(load_config({"data": {"name": "cifar10", "root": str(tmp_path)}}), 0)
