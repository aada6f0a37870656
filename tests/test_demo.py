"""The main job in its reduced form, as a user runs it: `codax search` on the quick configuration,
then the exact hand-off command it printed, then `codax run --check` of the compiled network on
held-out digits (bit-exact against the golden model, at most one step from ONNX Runtime)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from codax.demo import QUICK


def _env() -> dict:
    """The environment a user of this install has: its `codax` on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _codax(*args, cwd):
    cmd = [sys.executable, "-m", "codax.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)


def test_search_then_printed_handoff_then_checked_run(tmp_path):
    cfg = tmp_path / "quick.yaml"
    cfg.write_text(yaml.safe_dump(QUICK))
    r = _codax("search", "--config", cfg, "-o", "out/search", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    handoff = next(ln for ln in r.stdout.splitlines() if ln.startswith("handoff: ")).removeprefix("handoff: ")
    assert handoff.startswith("codax compile ")
    # the printed command, verbatim, in the directory the search ran in
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    c = subprocess.run(
        handoff, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert c.returncode == 0, c.stderr[-3000:]
    assert "dynamic batch" in c.stderr  # compiled for the batch of one the accelerator runs, and said so
    out = tmp_path / "out" / "compile"  # codax compile's default output directory
    assert (out / "model.so").exists() and (out / "program.bin").exists()
    from codax.demo import _held_out_digits

    xs, _ = _held_out_digits(QUICK)
    np.save(tmp_path / "x.npy", xs[:1])
    run = _codax("run", out, "--input", tmp_path / "x.npy", "--check", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    (golden, ort), *_ = json.loads(run.stdout)["checks"]
    assert golden["ok"] and golden["mismatching"] == 0 and ort["ok"] and ort["max_steps"] <= 1
