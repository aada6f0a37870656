"""An interrupted search resumed from its checkpoint reproduces the uninterrupted one bit-exactly."""

from __future__ import annotations

import pytest
import torch

from codax.errors import ConfigError
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


def test_resume_from_another_search_is_a_clear_error(tiny, tmp_path):
    """A checkpoint written by a search over another space cannot continue this one: the error names
    the checkpoint, the part and the tensors that differ, and what to do, before anything runs."""
    run_search(tiny, tmp_path, progress=False, finalize=False, stop_after=1)
    config = (tmp_path / "config.yaml").read_text()
    other = dict(tiny, network=dict(tiny["network"], expansions=[1, 3, 6]))
    with pytest.raises(ConfigError, match=r"checkpoint\.pt: its supernet does not match.*start afresh") as e:
        run_search(other, tmp_path, resume=True, progress=False, finalize=False)
    assert "expand" in str(e.value)
    metrics = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 1, "the failed resume ran no epoch and left the first run's log as it was"
    assert (tmp_path / "config.yaml").read_text() == config
