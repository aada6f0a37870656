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
import pytest
import yaml

from codax.demo import QUICK
from codax.ir import load_mappings


def _env() -> dict:
    """The environment a user of this install has: its `codax` on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _codax(*args, cwd):
    cmd = [sys.executable, "-m", "codax.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize(
    "config",
    [QUICK, {**QUICK, "bits": {"choices": [4]}}],  # the default bit choices; every inner layer at 4 bits
    ids=["quick", "quick-4bit"],
)
def test_search_then_printed_handoff_then_checked_run(tmp_path, config):
    cfg = tmp_path / "quick.yaml"
    cfg.write_text(yaml.safe_dump(config))
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
    assert (out / "model.so").exists() and (out / "program.bin").exists() and (out / "core.cpp").exists()
    # the compiled design is the searched design at the searched widths, on the core: the cycles and
    # resources the search's summary gives for the core are the project's
    summary = json.loads((tmp_path / "out" / "search" / "summary.json").read_text())
    rep = json.loads((out / "report.json").read_text())
    assert rep["engine"] == "core" and "refused" not in summary["core"], summary["core"]
    assert rep["cycles"]["total"] == summary["core"]["cycles"] > 0
    assert (rep["resources"]["dsp"], rep["resources"]["bram18"]) == (
        summary["core"]["dsp"],
        summary["core"]["bram18"],
    )
    searched = load_mappings(tmp_path / "out" / "search" / "mappings.yaml")
    sched = yaml.safe_load((out / "schedule.yaml").read_text())
    widths = {n["name"]: n["widths"] for n in sched["nodes"] if n["kind"] == "core"}
    assert set(widths) == set(searched)
    for name, m in searched.items():
        assert m.precision is not None, name
        assert (widths[name]["weight"], widths[name]["input"]) == (m.precision.weight, m.precision.act), name
    if config.get("bits", {}).get("choices") == [4]:  # all but the first and last layers at 4 bits
        assert sum(w["weight"] == 4 for w in widths.values()) >= len(widths) - 2
    from codax.demo import _held_out_digits

    xs, _ = _held_out_digits(config)
    np.save(tmp_path / "x.npy", xs[:1])
    run = _codax("run", out, "--input", tmp_path / "x.npy", "--check", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    check = json.loads(run.stdout)["check"]
    assert check["ok"] and check["golden"][0]["mismatching"] == 0
    assert len(check["layers"]) >= len(widths) and all(c["max_steps"] <= 1 for c in check["layers"])
