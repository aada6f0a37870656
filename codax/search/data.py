"""Datasets for the co-search: scikit-learn digits (bundled default), CIFAR-10/100 from the standard
python-pickle folders, and any ImageFolder tree (class per sub-folder, read with PIL).

Digits (1,797 8x8 images) is held in memory as normalised float tensors, as before. CIFAR and
ImageFolder data are read lazily: a CIFAR split keeps the pickles' uint8 images (what the files
hold, a quarter of the float size) and converts one image at a time; an ImageFolder split keeps
file names and decodes an image when a batch asks for it. Batches come from
`torch.utils.data.DataLoader` (`data.workers` processes), with the usual training augmentation
(`data.augment`): CIFAR a random 32x32 crop of the image padded by 4 and a horizontal flip,
ImageFolder a random resized crop (scale 0.08-1, aspect 3/4-4/3) and a flip; validation and test
images are resized (shorter side to 8/7 of the size) and centre-cropped. Channels are normalised by
the mean and standard deviation of `data.stats_images` training images. (torchvision's transforms
would do the same; it is not a dependency, and its wheels are tied to torch builds.)

Splits are deterministic for a seed: weights train on `train`, architecture logits on `val`, the
final accuracy is measured on `test`. `Splits.loader` gives a split's batches for a step loop;
`Splits.train` / `.val` / `.test` give a split as one (images, labels) pair of tensors, which the
derivation and the retraining use (for a lazy split it is read once, unaugmented, and kept).
"""

from __future__ import annotations

import copy
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from codax.errors import ConfigError
from codax.search.config import DataConfig, SearchConfig

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".webp")


# --- datasets ------------------------------------------------------------------------------------
class TensorSplit(Dataset):
    """Images held in memory, normalised. Indexed by one index or a batch of them (a tensor)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class _Normalised(Dataset):
    """A lazy split: subclasses give an image as a float [C, H, W] tensor in [0, 1]; this class
    augments (training) and normalises it."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, labels: np.ndarray, augment: bool):
        self.labels, self.augment = labels, augment
        self.mean, self.std = torch.zeros(1, 1, 1), torch.ones(1, 1, 1)
        # the augmentation's random numbers (Splits.loader seeds it per rank and worker): never the
        # global RNG, which would tie them to whatever else draws from it
        self.gen: torch.Generator | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, i: int):
        x = self.image(int(i))
        return (x - self.mean) / self.std, int(self.labels[i])


class CifarImages(_Normalised):
    """CIFAR images from the pickles' uint8 array [N, 3, 32, 32]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: bool):
        super().__init__(labels, augment)
        self.images = images

    def image(self, i: int) -> torch.Tensor:
        x = torch.from_numpy(self.images[i]).float() / 255.0
        if self.augment:
            x = random_crop(x, pad=4, gen=self.gen)
            if torch.rand((), generator=self.gen) < 0.5:
                x = x.flip(-1)
        return x


class ImageFiles(_Normalised):
    """ImageFolder images, decoded (RGB) when asked for and cropped to `size` x `size`."""

    def __init__(self, files: list[Path], labels: np.ndarray, size: int, augment: bool):
        super().__init__(labels, augment)
        self.files, self.size = files, size

    def image(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.files[i]) as f:
            img = f.convert("RGB")
        img = random_resized_crop(img, self.size, self.gen) if self.augment else centre_crop(img, self.size)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        if self.augment and torch.rand((), generator=self.gen) < 0.5:
            x = x.flip(-1)
        return x


# --- augmentation (the usual recipes; random draws from the split's generator) --------------------
def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """A random crop of the original size from the image zero-padded by `pad` on every side."""
    _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    i, j = (int(torch.randint(0, 2 * pad + 1, (), generator=gen)) for _ in range(2))
    return xp[:, i : i + h, j : j + w]


def random_resized_crop(
    img, size: int, gen: torch.Generator | None = None, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
):
    """Inception-style crop: a random area fraction and aspect ratio, resized to size x size
    (10 tries, then the centre crop)."""
    from PIL import Image

    w, h = img.size
    for _ in range(10):
        area = w * h * float(torch.empty(()).uniform_(*scale, generator=gen))
        r = math.exp(float(torch.empty(()).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)))
        cw, ch = round(math.sqrt(area * r)), round(math.sqrt(area / r))
        if 0 < cw <= w and 0 < ch <= h:
            i = int(torch.randint(0, h - ch + 1, (), generator=gen))
            j = int(torch.randint(0, w - cw + 1, (), generator=gen))
            return img.resize((size, size), Image.BILINEAR, box=(j, i, j + cw, i + ch))
    return centre_crop(img, size)


def centre_crop(img, size: int):
    """Shorter side resized to size * 8 / 7 (256 for 224), then the centre size x size."""
    from PIL import Image

    w, h = img.size
    short = max(size, round(size * 8 / 7))
    nw, nh = (
        (short, max(short, round(h * short / w))) if w <= h else (max(short, round(w * short / h)), short)
    )
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


# --- batches -------------------------------------------------------------------------------------
class ShuffledBatches(Sampler):
    """Index batches of a shuffled split (in order when gen is None); under DDP each rank takes
    every world-th index, the permutation padded with its first indices to a multiple of world (as
    torch's DistributedSampler): every rank the same number of batches, so the steps of all ranks
    meet in the same all-reduces. The permutation is drawn when the sampler is made, so the order in
    which loaders are created fixes the random stream (not the order in which workers start)."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator | None, rank: int = 0, world: int = 1):
        idx = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
        total = math.ceil(n / world) * world
        idx = idx.repeat(math.ceil(total / n))[:total] if n else idx
        self.idx, self.batch_size = idx[rank::world], batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.idx) / self.batch_size)

    def __iter__(self):
        for i in range(0, len(self.idx), self.batch_size):
            yield self.idx[i : i + self.batch_size]


@dataclass
class Splits:
    sets: dict[str, Dataset]  # train, val, test
    num_classes: int
    shape: tuple[int, int, int]  # C, H, W
    name: str
    workers: int = 0
    _tensors: dict = field(default_factory=dict, repr=False)

    @property
    def lazy(self) -> bool:
        return not isinstance(self.sets["train"], TensorSplit)

    def size(self, split: str) -> int:
        return len(self.sets[split])

    def loader(
        self,
        split: str,
        batch_size: int,
        gen: torch.Generator | None = None,
        rank: int = 0,
        world: int = 1,
        *,
        seed: int | None = None,
    ) -> DataLoader:
        """The split's batches (shuffled by `gen`, or by a generator seeded with `seed`)."""
        if gen is None and seed is not None:
            gen = torch.Generator().manual_seed(seed)
        ds = self.sets[split]
        sampler = ShuffledBatches(len(ds), batch_size, gen, rank, world)
        pin = torch.cuda.is_available()
        if isinstance(ds, TensorSplit):  # a batch is one indexing of the tensors
            return DataLoader(ds, sampler=sampler, batch_size=None, pin_memory=pin)
        base = 0 if gen is None else int(gen.initial_seed())
        aug_seed = int(np.random.SeedSequence([base, rank, 1]).generate_state(1)[0])
        if ds.augment:  # a copy with its own augmentation stream: one per rank (and per worker)
            ds = copy.copy(ds)
            ds.gen = torch.Generator().manual_seed(aug_seed)
        return DataLoader(
            ds,
            batch_sampler=[b.tolist() for b in sampler],
            num_workers=self.workers,
            generator=torch.Generator().manual_seed(aug_seed + 1),
            worker_init_fn=_seed_worker,
            pin_memory=pin,
            persistent_workers=False,
        )

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as (images, labels); a lazy split is read once, unaugmented, and kept."""
        if split not in self._tensors:
            ds = self.sets[split]
            if isinstance(ds, TensorSplit):
                self._tensors[split] = (ds.x, ds.y)
            else:
                plain = _unaugmented(ds)
                xs, ys = zip(*(plain[i] for i in range(len(plain))))
                self._tensors[split] = (torch.stack(xs), torch.tensor(ys, dtype=torch.long))
        return self._tensors[split]

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tensors("train")

    @property
    def val(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tensors("val")

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tensors("test")


def _seed_worker(worker_id: int) -> None:
    """A worker's augmentation stream from its seed (the loader's generator + worker id)."""
    info = torch.utils.data.get_worker_info()
    if info is not None and getattr(info.dataset, "gen", None) is not None:
        info.dataset.gen = torch.Generator().manual_seed(info.seed % 2**63)


def _unaugmented(ds: _Normalised) -> _Normalised:
    plain = copy.copy(ds)
    plain.augment = False
    return plain


# --- sources -------------------------------------------------------------------------------------
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
    """uint8 images [N, 3, 32, 32] and labels of the training and the test files."""
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
        return x, y

    xtr, ytr = load(train_files)
    xte, yte = load(test_files)
    return xtr, ytr, xte, yte


def _image_files(root: Path) -> tuple[list[Path], np.ndarray, int]:
    if not root.is_dir():
        raise ConfigError(
            f"data.root: {root} is not a folder; an ImageFolder tree has one sub-folder per class"
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ConfigError(f"data.root: {root} has no class sub-folders")
    files, labels = [], []
    for ci, c in enumerate(classes):
        for p in sorted((root / c).rglob("*")):
            if p.suffix.lower() in IMAGE_EXT:
                files.append(p)
                labels.append(ci)
    if not files:
        raise ConfigError(f"data.root: no images ({', '.join(IMAGE_EXT)}) under {root}")
    return files, np.asarray(labels, dtype=np.int64), len(classes)


def _set_stats(sets: list[_Normalised], ref: _Normalised, n: int, rng: np.random.RandomState) -> None:
    """Per-channel mean and std of up to n unaugmented images of `ref`, for every set."""
    plain = _unaugmented(ref)
    pick = rng.permutation(len(plain))[:n]
    x = torch.stack([plain.image(int(i)) for i in pick])
    mean = x.mean(dim=(0, 2, 3)).view(-1, 1, 1)
    std = x.std(dim=(0, 2, 3)).view(-1, 1, 1) + 1e-6
    for s in sets:
        s.mean, s.std = mean, std


def load_data(cfg: SearchConfig | DataConfig, seed: int = 0) -> Splits:
    """The train / val / test splits the config names, deterministic for a seed."""
    d = cfg.data if isinstance(cfg, SearchConfig) else cfg
    rng = np.random.RandomState(seed)
    if d.name == "digits":
        return _in_memory(d, *_digits(), rng)
    if not d.root:
        what = (
            "the folder of its python-pickle batches"
            if d.name != "imagefolder"
            else "the root folder of the class sub-folders"
        )
        raise ConfigError(f"data.root: {d.name} needs {what}")
    root = Path(d.root)
    if d.name in ("cifar10", "cifar100"):
        xtr, ytr, xte, yte = _cifar(root, 10 if d.name == "cifar10" else 100)
        tr_idx, val_idx = _train_val(len(xtr), d, rng)
        make = lambda idx, aug: CifarImages(xtr[idx], ytr[idx], aug)  # noqa: E731
        sets = {
            "train": make(tr_idx, d.augment),
            "val": make(val_idx, False),
            "test": CifarImages(xte, yte, False),
        }
        num_classes, shape = (
            10 if d.name == "cifar10" else 100,
            (3, 32, 32),
        )  # the dataset's, not the labels seen
    else:
        files, labels, num_classes = _image_files(root)
        size = int(d.image_size or 32)
        perm = rng.permutation(len(files))
        n_test = int(round(len(files) * d.test_fraction))
        te, rest = perm[:n_test], perm[n_test:]
        tr_idx, val_idx = _train_val(len(rest), d, rng)
        make = lambda idx, aug: ImageFiles([files[i] for i in idx], labels[idx], size, aug)  # noqa: E731
        sets = {
            "train": make(rest[tr_idx], d.augment),
            "val": make(rest[val_idx], False),
            "test": make(te, False),
        }
        shape = (3, size, size)
    _set_stats(list(sets.values()), sets["train"], d.stats_images, rng)
    return Splits(sets, num_classes, shape, d.name, d.workers)


def _train_val(n: int, d: DataConfig, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices of n images (at most data.limit of them)."""
    perm = rng.permutation(n)
    if d.limit:
        perm = perm[: int(d.limit)]
    n_val = int(round(len(perm) * d.val_fraction))
    return perm[n_val:], perm[:n_val]


def _in_memory(d: DataConfig, x: np.ndarray, y: np.ndarray, rng: np.random.RandomState) -> Splits:
    perm = rng.permutation(len(x))
    n_test = int(round(len(x) * d.test_fraction))
    xte, yte = x[perm[:n_test]], y[perm[:n_test]]
    xtr, ytr = x[perm[n_test:]], y[perm[n_test:]]
    tr_idx, val_idx = _train_val(len(xtr), d, rng)
    ref = xtr[tr_idx]
    t = lambda a, b: TensorSplit(torch.from_numpy(_normalise(a, ref)), torch.from_numpy(b))  # noqa: E731
    sets = {"train": t(xtr[tr_idx], ytr[tr_idx]), "val": t(xtr[val_idx], ytr[val_idx]), "test": t(xte, yte)}
    num_classes = int(max(ytr.max(), yte.max()) + 1)
    return Splits(sets, num_classes, tuple(xtr.shape[1:]), d.name, d.workers)  # type: ignore[arg-type]
