"""Multi-process data parallelism via torch.distributed when launched with torchrun (WORLD_SIZE set).

The single-process path never touches torch.distributed. Each rank takes every WORLD_SIZE-th sample
of a batch list; gradients (weights and logits) are averaged with all_reduce; rank 0 writes output.
The architecture samples come from a generator seeded by the search seed alone (the same paths on
every rank), the data augmentation from one seeded per rank (data.Splits.loader).
"""

from __future__ import annotations

import os

import torch


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device(f"cuda:{local}")
    return torch.device("cpu")


def active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def init_if_launched() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not active():
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def rank_world() -> tuple[int, int]:
    if not active():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def average_grads(params) -> None:
    """Average the gradients over the ranks. The parameters with a gradient are those of the sampled
    paths, the same on every rank (sampling.PathSampler draws them from the search seed alone), so
    every rank meets the same all-reduces; a parameter outside the paths keeps no gradient and the
    optimiser leaves it alone, as in a single process."""
    if not active():
        return
    import torch.distributed as dist

    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world
