"""Data-parallel search on two CPU processes (torch.distributed, gloo): with augmented ImageFolder
data (a random number of draws per image), every rank samples the same paths, and after weight and
architecture steps the supernet's weights and the architecture logits are identical on both ranks,
while the ranks' augmentation streams differ."""

from __future__ import annotations

import copy
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.search.conftest import TINY


def _tree(root) -> None:
    """Three classes of 16 small RGB images each (class = dominant colour channel, plus noise)."""
    from PIL import Image

    rng = np.random.RandomState(0)
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(16):
            img = rng.randint(0, 90, size=(12, 12, 3)).astype(np.uint8)
            img[..., c] += 120
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.png")


def _config(root) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg["data"] = {
        "name": "imagefolder",
        "root": str(root),
        "image_size": 8,
        "augment": True,
        "stats_images": 16,
    }
    cfg["search"].update(epochs=3, warmup_epochs=1, batch_size=4, max_steps_per_epoch=3)
    return cfg


def _rank(rank: int, world: int, port: int, root: str, out: str) -> None:
    from pathlib import Path

    from codax.search.config import load_config
    from codax.search.cosearch import CoSearch

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        cs = CoSearch(load_config(_config(Path(root))))
        aug = []  # the first augmented batch each rank draws (its own images, its own stream)
        loader = cs.data.loader("train", 4, torch.Generator().manual_seed(0), cs.rank, cs.world)
        aug.append(next(iter(loader))[0])
        for _ in range(3):
            cs.run_epoch(progress=False)
        torch.save(
            {
                "supernet": {k: v.detach().clone() for k, v in cs.supernet.named_parameters()},
                "arch": {k: v.detach().clone() for k, v in cs.arch.named_parameters()},
                "steps": cs.step,
                "sampler": cs.sampler.state(),
                "lambda": cs.lam,
                "aug": aug[0],
            },
            f"{out}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_stay_identical(tmp_path):
    _tree(tmp_path / "images")
    out = tmp_path / "out"
    out.mkdir()
    try:
        mp.spawn(_rank, args=(2, _free_port(), str(tmp_path / "images"), str(out)), nprocs=2, join=True)
    except mp.ProcessRaisedException as e:  # pragma: no cover - the failure's message is the point
        pytest.fail(str(e))
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["steps"] == r1["steps"] > 0  # architecture steps ran
    assert torch.equal(r0["sampler"], r1["sampler"])
    assert r0["lambda"] == r1["lambda"]
    for part in ("supernet", "arch"):
        assert r0[part].keys() == r1[part].keys()
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), f"{part}.{k} differs between ranks"
    # the steps moved the logits (identical because they moved alike, not because nothing moved)
    assert r0["arch"]["alpha"].abs().max() > 0
    # each rank augments its own images from its own stream
    assert not torch.equal(r0["aug"], r1["aug"])
