"""Data: digits in memory (default, unchanged), CIFAR python-pickle folders and ImageFolder trees read
lazily through DataLoader with the usual augmentation; deterministic for a seed."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codax.errors import ConfigError
from codax.search.config import load_config
from codax.search.data import (
    CifarImages,
    ImageFiles,
    ShuffledBatches,
    centre_crop,
    load_data,
    random_resized_crop,
)


def test_digits_splits_deterministic():
    cfg = load_config(None)
    a, b = load_data(cfg, 0), load_data(cfg, 0)
    assert torch.equal(a.train[0], b.train[0]) and a.shape == (1, 8, 8) and a.num_classes == 10
    assert not a.lazy
    n = len(a.train[0]) + len(a.val[0]) + len(a.test[0])
    assert n == 1797


def test_digits_batches_are_the_seeded_permutation():
    """A batch of an in-memory split is one indexing of its tensors by the seeded permutation."""
    s = load_data(load_config(None), 0)
    x, y = s.train
    got = list(s.loader("train", 64, torch.Generator().manual_seed(7)))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(7))
    assert len(got) == -(-len(x) // 64)
    for i, (bx, by) in enumerate(got):
        torch.testing.assert_close(bx, x[perm[i * 64 : (i + 1) * 64]], rtol=0, atol=0)
        assert torch.equal(by, y[perm[i * 64 : (i + 1) * 64]])
    # under DDP each of two ranks takes every other index of the same permutation
    r1 = next(iter(s.loader("train", 8, torch.Generator().manual_seed(7), rank=1, world=2)))
    assert torch.equal(r1[1], y[perm[1::2][:8]])


def _write_cifar(root, n_per_batch=6, n_test=5):
    d = root / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.RandomState(0)
    images = {}
    for name, k in [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.randint(0, 256, (k, 3072), dtype=np.uint8)
        images[name] = data
        with open(d / name, "wb") as f:
            pickle.dump({"data": data, "labels": [i % 10 for i in range(k)]}, f)
    return images


def test_cifar10_pickle_layout_read_lazily(tmp_path):
    images = _write_cifar(tmp_path)
    s = load_data(load_config({"data": {"name": "cifar10", "root": str(tmp_path)}}), 0)
    assert s.lazy and s.shape == (3, 32, 32) and s.num_classes == 10
    assert s.size("test") == 5 and s.size("train") + s.size("val") == 30
    for split in ("train", "val", "test"):  # the pickles' bytes, never a float copy of the split
        ds = s.sets[split]
        assert isinstance(ds, CifarImages) and ds.images.dtype == np.uint8
    # a test image is the file's image, normalised by the training images' channel statistics
    x, y = s.sets["test"][3]
    raw = torch.from_numpy(images["test_batch"][3].reshape(3, 32, 32)).float() / 255
    torch.testing.assert_close(x, (raw - s.sets["test"].mean) / s.sets["test"].std)
    assert y == 3


def test_cifar_training_augmentation_is_a_padded_crop_and_flip(tmp_path):
    _write_cifar(tmp_path)
    s = load_data(load_config({"data": {"name": "cifar10", "root": str(tmp_path)}}), 0)
    ds = s.sets["train"]
    torch.manual_seed(0)
    shifted = 0
    for i in range(len(ds)):
        got = ds.image(i)
        orig = torch.from_numpy(ds.images[i]).float() / 255
        padded = torch.nn.functional.pad(orig, (4, 4, 4, 4))
        crops = [
            c
            for a in range(9)
            for b in range(9)
            for c in (padded[:, a : a + 32, b : b + 32], padded[:, a : a + 32, b : b + 32].flip(-1))
        ]
        assert any(torch.equal(got, c) for c in crops), i
        shifted += not torch.equal(got, orig)
    assert shifted > len(ds) // 2  # augmentation changes most images
    assert not s.sets["val"].augment  # the architecture split is not augmented


def test_cifar_batches_through_worker_processes_equal_the_main_process(tmp_path):
    _write_cifar(tmp_path)
    cfg = {"data": {"name": "cifar10", "root": str(tmp_path), "workers": 2}}
    s = load_data(load_config(cfg), 0)
    with_workers = list(s.loader("val", 4, seed=3))
    s.workers = 0
    in_process = list(s.loader("val", 4, seed=3))
    assert len(with_workers) == len(in_process) == -(-s.size("val") // 4)
    for (a, ya), (b, yb) in zip(with_workers, in_process):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert torch.equal(ya, yb)


def test_image_folder_read_lazily_with_labels_by_class_folder(tmp_path):
    from PIL import Image

    colours = {"cat": (250, 10, 10), "dog": (10, 10, 250)}  # one colour per class: labels checkable
    for c, rgb in colours.items():
        (tmp_path / c).mkdir()
        for i in range(6):
            Image.fromarray(np.full((10 + i, 12, 3), rgb, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    cfg = {"data": {"name": "imagefolder", "root": str(tmp_path), "image_size": 8, "test_fraction": 0.25}}
    s = load_data(load_config(cfg), 0)
    assert s.lazy and s.shape == (3, 8, 8) and s.num_classes == 2
    assert isinstance(s.sets["train"], ImageFiles)
    assert s.size("test") == 3 and s.size("train") + s.size("val") == 9
    for split in ("train", "val", "test"):
        for x, y in s.loader(split, 4, seed=0):
            assert x.shape[1:] == (3, 8, 8)
            # red images are class 0 (cat), blue ones class 1 (dog), through crops and flips
            assert torch.equal((x[:, 2].mean((1, 2)) > x[:, 0].mean((1, 2))).long(), y)


def test_crops_keep_the_size_and_the_centre():
    from PIL import Image

    a = np.zeros((40, 30, 3), dtype=np.uint8)
    a[15:25, 10:20] = 255  # a white square in the centre
    img = Image.fromarray(a)
    c = np.asarray(centre_crop(img, 14))
    assert c.shape == (14, 14, 3)
    assert c[7, 7].min() == 255 and c[0, 0].max() == 0  # centre kept, the corner is background
    torch.manual_seed(0)
    for _ in range(20):
        assert np.asarray(random_resized_crop(img, 14)).shape == (14, 14, 3)


def test_missing_cifar_names_field(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        load_data(load_config({"data": {"name": "cifar10", "root": str(tmp_path)}}), 0)


def test_search_steps_on_a_cifar_folder_with_workers(tiny, tmp_path):
    """The co-search's epoch loop reads a lazily loaded CIFAR split through worker processes."""
    from codax.search.cosearch import CoSearch

    _write_cifar(tmp_path, n_per_batch=16)
    tiny["data"] = {"name": "cifar10", "root": str(tmp_path), "workers": 1}
    tiny["search"].update(batch_size=8, max_steps_per_epoch=2, warmup_epochs=0)
    cs = CoSearch(load_config(tiny))
    row = cs.run_epoch(progress=False)
    assert cs.step == 2 and np.isfinite(row["train_loss"]) and 0.0 <= row["val_acc"] <= 1.0


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200), batch=st.integers(1, 64), world=st.integers(1, 4), seed=st.integers(0, 1000))
def test_ranks_partition_each_epoch(n, batch, world, seed):
    """Under DDP the ranks' batches cover every index of the split once per epoch, padded with the
    permutation's first indices to a multiple of the ranks (every rank the same number of batches:
    the ranks' steps meet in the same all-reduces), each batch at most `batch` long, and the same
    seed gives the same order."""
    seen, counts = [], set()
    for rank in range(world):
        got = list(ShuffledBatches(n, batch, torch.Generator().manual_seed(seed), rank, world))
        assert all(0 < len(b) <= batch for b in got)
        again = list(ShuffledBatches(n, batch, torch.Generator().manual_seed(seed), rank, world))
        assert all(torch.equal(a, b) for a, b in zip(got, again))
        seen += [int(i) for b in got for i in b]
        counts.add(len(got))
    assert len(counts) == 1
    assert sorted(set(seen)) == list(range(n))
    assert len(seen) == -(-n // world) * world
