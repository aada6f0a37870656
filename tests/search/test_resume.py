"""An interrupted search resumed from its checkpoint reproduces the uninterrupted one bit-exactly."""

from __future__ import annotations

import torch

from codax.search import run_search

VOLATILE = {"epoch_seconds", "exact_seconds"}


def _clean(history):
    return [{k: v for k, v in h.items() if k not in VOLATILE} for h in history]


def test_resume_is_bit_exact(tiny, tmp_path):
    full = run_search(tiny, tmp_path / "a", progress=False, finalize=False)
    run_search(tiny, tmp_path / "b", progress=False, finalize=False, stop_after=2)
    resumed = run_search(tiny, tmp_path / "b", resume=True, progress=False, finalize=False)
    assert _clean(full.history) == _clean(resumed.history)
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for part in ("supernet", "arch"):
        for k, v in sa[part].items():
            assert torch.equal(v, sb[part][k]), f"{part}.{k}"
    assert sa["lam"] == sb["lam"]
