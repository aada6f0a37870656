"""Datasets for the co-search: scikit-learn digits (bundled default), CIFAR-10/100 from the standard
python-pickle folders, and any ImageFolder tree (class per sub-folder, read with PIL).

Everything is loaded into memory as float tensors (N, C, H, W), normalised per channel, and split
deterministically from the seed: weights train on `train`, architecture logits on `val`, the final
accuracy is measured on `test`.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codax.errors import ConfigError

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".webp")


@dataclass
class Splits:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    num_classes: int
    shape: tuple[int, int, int]  # C, H, W
    name: str


def _normalise(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    mean = ref.mean(axis=(0, 2, 3), keepdims=True)
    std = ref.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    return ((x - mean) / std).astype(np.float32)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[:, None, :, :] / 16.0).astype(np.float32), d.target.astype(np.int64)


def _unpickle(p: Path) -> dict:
    with open(p, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _cifar(root: Path, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    sub = root / ("cifar-10-batches-py" if classes == 10 else "cifar-100-python")
    base = sub if sub.exists() else root
    if classes == 10:
        train_files = [base / f"data_batch_{i}" for i in range(1, 6)]
        test_files, key = [base / "test_batch"], "labels"
    else:
        train_files, test_files, key = [base / "train"], [base / "test"], "fine_labels"
    missing = [str(p) for p in train_files + test_files if not p.exists()]
    if missing:
        raise ConfigError(
            f"data.root: CIFAR-{classes} files not found ({missing[0]}); point data.root at the folder "
            "holding the python-pickle batches (e.g. cifar-10-batches-py)"
        )

    def load(files):
        ds = [_unpickle(p) for p in files]
        x = np.concatenate([np.asarray(d["data"], dtype=np.uint8) for d in ds]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(d[key], dtype=np.int64) for d in ds])
        return x.astype(np.float32) / 255.0, y

    xtr, ytr = load(train_files)
    xte, yte = load(test_files)
    return xtr, ytr, xte, yte


def _image_folder(root: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - PIL ships with matplotlib
        raise ConfigError("data.name imagefolder needs Pillow (pip install pillow)") from e
    if not root.is_dir():
        raise ConfigError(
            f"data.root: {root} is not a folder; an ImageFolder tree has one sub-folder per class"
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ConfigError(f"data.root: {root} has no class sub-folders")
    xs, ys = [], []
    for ci, c in enumerate(classes):
        for p in sorted((root / c).rglob("*")):
            if p.suffix.lower() in IMAGE_EXT:
                img = Image.open(p).convert("RGB").resize((size, size))
                xs.append(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0)
                ys.append(ci)
    if not xs:
        raise ConfigError(f"data.root: no images ({', '.join(IMAGE_EXT)}) under {root}")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def load_data(cfg: dict, seed: int = 0) -> Splits:
    """The train / val / test splits the config names, deterministic for a seed."""
    d = cfg["data"] if "data" in cfg else cfg
    name = d["name"]
    rng = np.random.RandomState(seed)
    if name in ("cifar10", "cifar100"):
        if not d.get("root"):
            raise ConfigError(f"data.root: {name} needs the folder of its python-pickle batches")
        xtr, ytr, xte, yte = _cifar(Path(d["root"]), 10 if name == "cifar10" else 100)
    else:
        if name == "digits":
            x, y = _digits()
        else:
            if not d.get("root"):
                raise ConfigError("data.root: imagefolder needs the root folder of the class sub-folders")
            x, y = _image_folder(Path(d["root"]), int(d.get("image_size") or 32))
        perm = rng.permutation(len(x))
        n_test = int(round(len(x) * float(d["test_fraction"])))
        xte, yte = x[perm[:n_test]], y[perm[:n_test]]
        xtr, ytr = x[perm[n_test:]], y[perm[n_test:]]
    perm = rng.permutation(len(xtr))
    if d.get("limit"):
        perm = perm[: int(d["limit"])]
    n_val = int(round(len(perm) * float(d["val_fraction"])))
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    ref = xtr[tr_idx]
    t = lambda a, b: (torch.from_numpy(_normalise(a, ref)), torch.from_numpy(b))  # noqa: E731
    num_classes = int(max(ytr.max(), yte.max()) + 1)
    return Splits(
        train=t(xtr[tr_idx], ytr[tr_idx]),
        val=t(xtr[val_idx], ytr[val_idx]),
        test=t(xte, yte),
        num_classes=num_classes,
        shape=tuple(xtr.shape[1:]),  # type: ignore[arg-type]
        name=name,
    )


def batches(
    data: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    gen: torch.Generator | None,
    rank: int = 0,
    world: int = 1,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled mini-batches (in order when gen is None); under DDP each rank takes its share."""
    x, y = data
    idx = torch.randperm(len(x), generator=gen) if gen is not None else torch.arange(len(x))
    idx = idx[rank::world]
    return [(x[idx[i : i + batch_size]], y[idx[i : i + batch_size]]) for i in range(0, len(idx), batch_size)]
