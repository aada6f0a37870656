"""Co-search at the scale the papers work at: step time and peak memory of the weight and the
architecture step.

Settings (random images written in the layouts codax reads, so the data path is the real one):
- `cifar22_32x32_b64`: the 22-block FBNet supernet (`cifar22` preset: Auto-NBA's CIFAR strides) on
  32x32 CIFAR-layout batches, batch 64 (target: peak RSS within 3 GB);
- `imagenet_224_b32`: the `imagenet` preset on a 224x224 ImageFolder tree, batch 32 (target: within
  20 GB).
Each (setting, step) runs in its own process, so a step's peak resident memory is its own (the
architecture step's peak does not include the weight step's and the reverse). Step times are the
median of `--steps` steps on sampled paths (and their mean); the peak includes one last step with
every block on its largest op (the most memory any sample can take). The weight step runs one
sampled path per block, the architecture step a sampled pair.

The rows are the DEFAULT configuration (`defaults: true`): the config sets only the data, the
preset and the batch size (plus `warmup_epochs: 0`, which no step reads), so `search.recompute`
is its default `auto` (each row says what it resolved to: `recomputed`) and the cost tables are the
default `search.relaxed_cost` (the exact mapper's). Tables are built when a step first asks for an
accelerator point: `table_build_s` is their time in the architecture step's process (the
constructor's reference point and the first, untimed step's points), `table_build_in_steps_s`
the part inside the timed steps (points first drawn there; it is in their step times), and
`hw_fraction` the hardware term's share of the mean architecture step (table builds included).
`--compare SETTING...` adds those settings' steps with `search.recompute` forced false
(`*_recompute_false`: every activation kept). The device is picked as the search picks it (CUDA
when present); on CUDA the peak allocated GPU memory is reported too. Step times on a shared machine
move with its load (`load_average_at_start`, `load_average_at_end`).

    .venv/bin/python benchmarks/cosearch_scale.py [--steps 3] [--threads 1]
        [--settings cifar22_32x32_b64 ...] [--compare cifar22_32x32_b64 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

SETTINGS = {
    "cifar22_32x32_b64": {"preset": "cifar22", "data": "cifar10", "size": 32, "batch": 64, "limit_gb": 3.0},
    "imagenet_224_b32": {
        "preset": "imagenet",
        "data": "imagefolder",
        "size": 224,
        "batch": 32,
        "limit_gb": 20.0,
    },
}


def write_cifar(root: Path, n: int) -> None:
    """A CIFAR-10 python-pickle folder of `n` random training images (and n // 4 test images)."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    per = -(-n // 5)
    for name, k in [(f"data_batch_{i}", per) for i in range(1, 6)] + [("test_batch", max(1, n // 4))]:
        with open(d / name, "wb") as f:
            data = rng.randint(0, 256, (k, 3072), dtype=np.uint8)
            pickle.dump({"data": data, "labels": rng.randint(0, 10, k).tolist()}, f)


def write_image_folder(root: Path, n: int, size: int, classes: int = 10) -> None:
    """An ImageFolder tree of `n` random JPEG images, a little larger than `size` (resized on load)."""
    from PIL import Image

    rng = np.random.RandomState(0)
    for i in range(n):
        c = root / f"class{i % classes}"
        c.mkdir(parents=True, exist_ok=True)
        img = rng.randint(0, 256, (size + size // 7, size + size // 7, 3), dtype=np.uint8)
        Image.fromarray(img).save(c / f"{i}.jpg", quality=90)


def config(setting: dict, root: Path, recompute: bool | None = None) -> dict:
    """The setting's search config: the defaults but for the data, the preset and the batch size
    (`warmup_epochs: 0` too, read by the epoch loop only, which the steps here do not run);
    `recompute` forces search.recompute (None: its default)."""
    data = {"name": setting["data"], "root": str(root)}
    if setting["data"] == "imagefolder":
        data["image_size"] = setting["size"]
    search = {"batch_size": setting["batch"], "warmup_epochs": 0}
    if recompute is not None:
        search["recompute"] = recompute
    return {"data": data, "network": {"preset": setting["preset"]}, "search": search}


def largest_ops(cs):
    """The sampler's op draws replaced by each block's ops with the most MACs (the largest, and for a
    pair the two largest): the most memory any sample takes."""
    import torch

    order = [
        sorted(range(len(u.ops)), key=lambda o: -float(cs.lt.macs[i, o])) for i, u in enumerate(cs.net.units)
    ]
    big = torch.tensor([(o[0], o[min(1, len(o) - 1)]) for o in order])
    draw = cs.sampler.draw

    def pick(logits, n):
        return big[:, :n] if logits.shape == cs.arch.alpha.shape else draw(logits, n)

    return pick


def child(name: str, step: str, root: str, steps: int, threads: int, recompute: bool | None) -> None:
    """One (setting, step) in this process: times `steps` steps after a warm-up one; prints JSON."""
    import torch

    from codax.search.config import load_config
    from codax.search.cosearch import CoSearch

    torch.set_num_threads(threads)
    cs = CoSearch(load_config(config(SETTINGS[name], Path(root), recompute)))
    it = iter(cs.data.loader("train" if step == "weight" else "val", cs.cfg.search.batch_size, seed=0))
    tau = cs.tau(0)
    times, hw, recomputed = [], [], []
    sn, forward = cs.supernet, cs.supernet.forward

    def noting_forward(x, op_w, *args, **kw):  # what `recompute` resolved to in each step's forward
        if torch.is_grad_enabled():
            recomputed.append(sn.recomputes(x.shape[0], op_w, kw.get("run"), kw.get("units")))
        return forward(x, op_w, *args, **kw)

    sn.forward = noting_forward
    table_s = [cs.hw.table_seconds]
    for i in range(steps + 2):
        x, y = (t.to(cs.device) for t in next(it))
        if i == steps + 1:  # last: every block on its largest op (the most memory any sample takes)
            cs.sampler.draw = largest_ops(cs)
        if cs.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if step == "weight":
            cs.weight_step(x, y, tau)
        else:
            cs.arch_step(x, y, tau)
        if cs.device.type == "cuda":
            torch.cuda.synchronize()
        table_s.append(cs.hw.table_seconds)
        if 0 < i <= steps:  # the first step warms up allocators and caches (and builds tables)
            times.append(time.perf_counter() - t0)
            if step == "arch":
                hw.append(cs.hw_seconds)
    out = {
        "step_s": statistics.median(times),
        "mean_step_s": statistics.mean(times),
        "hw_fraction": statistics.mean(hw) / statistics.mean(times) if hw else None,
        "table_build_s": cs.hw.table_seconds,
        "table_build_in_steps_s": table_s[steps + 1] - table_s[1],
        "recomputed": sorted(set(recomputed)),
        "relaxed_cost": cs.cfg.search.relaxed_cost,
        "recompute_setting": cs.cfg.search.recompute,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,  # KB on Linux
        "device": str(cs.device),
        "candidate_ops": cs.net.max_ops,
        "searchable_blocks": len(cs.net.searchable),
    }
    if cs.device.type == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
    print(json.dumps(out))


FORCED = {"default": None, "recompute_false": False}  # search.recompute per variant (None: default)


def run(name: str, steps: int, threads: int, compare: bool) -> dict:
    s = SETTINGS[name]
    variants = list(FORCED) if compare else ["default"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if s["data"] == "cifar10":
            write_cifar(root, s["batch"] * (steps + 1) * 4)
        else:
            write_image_folder(root, s["batch"] * (steps + 1) * 4, s["size"])
        res = {}
        for variant in variants:
            for step in ("weight", "arch"):
                cmd = [sys.executable, __file__, "--child", name, step, str(root), str(steps), str(threads)]
                p = subprocess.run(cmd + [variant], capture_output=True, text=True, check=False)
                if p.returncode:
                    raise RuntimeError(f"{name} {step} step ({variant}) failed:\n{p.stderr[-3000:]}")
                res[step, variant] = json.loads(p.stdout.strip().splitlines()[-1])
    w, a = res["weight", "default"], res["arch", "default"]
    row = {
        "setting": name,
        "defaults": True,
        "recompute": a["recompute_setting"],
        "weight_recomputed": w["recomputed"],
        "arch_recomputed": a["recomputed"],
        "relaxed_cost": a["relaxed_cost"],
        "weight_step_s": w["step_s"],
        "arch_step_s": a["step_s"],
        "weight_mean_step_s": w["mean_step_s"],
        "arch_mean_step_s": a["mean_step_s"],
        "weight_peak_rss_gb": w["peak_rss_gb"],
        "arch_peak_rss_gb": a["peak_rss_gb"],
        "hw_fraction": a["hw_fraction"],
        "table_build_s": a["table_build_s"],
        "table_build_in_steps_s": a["table_build_in_steps_s"],
        "device": a["device"],
        "batch": s["batch"],
        "image_size": s["size"],
        "preset": s["preset"],
        "searchable_blocks": a["searchable_blocks"],
        "candidate_ops": a["candidate_ops"],
        "peak_rss_target_gb": s["limit_gb"],
        "meets_target": max(w["peak_rss_gb"], a["peak_rss_gb"]) <= s["limit_gb"],
    }
    for k in ("peak_gpu_gb",):
        if k in a:
            row[f"weight_{k}"], row[f"arch_{k}"] = w[k], a[k]
    for variant in variants[1:]:  # the same steps with search.recompute forced
        for step in ("weight", "arch"):
            r = res[step, variant]
            row[f"{step}_step_s_{variant}"] = r["step_s"]
            row[f"{step}_peak_rss_gb_{variant}"] = r["peak_rss_gb"]
    return row


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), FORCED[sys.argv[7]])
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare", nargs="*", default=[], help="settings also run with search.recompute false")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS))
    ap.add_argument("--out", default=str(ROOT / "results" / "cosearch_scale.json"))
    args = ap.parse_args()
    load_at_start = os.getloadavg()
    rows = []
    for name in args.settings:
        row = run(name, args.steps, args.threads, name in args.compare)
        rows.append(row)
        print(
            f"{name:20s} defaults (recompute {row['recompute']}: weight {row['weight_recomputed']}, "
            f"arch {row['arch_recomputed']}; relaxed_cost {row['relaxed_cost']})   "
            f"weight {row['weight_step_s']:6.2f} s {row['weight_peak_rss_gb']:5.2f} GB   "
            f"arch {row['arch_step_s']:6.2f} s {row['arch_peak_rss_gb']:5.2f} GB   "
            f"hw {row['hw_fraction']:.1%}   tables {row['table_build_s']:.1f} s "
            f"({row['table_build_in_steps_s']:.1f} s in timed steps)   {row['device']}   "
            f"target {row['peak_rss_target_gb']} GB: {'met' if row['meets_target'] else 'MISSED'}",
            flush=True,
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "threads": args.threads,
        "steps": args.steps,
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
    }
    Path(args.out).write_text(json.dumps({**meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
