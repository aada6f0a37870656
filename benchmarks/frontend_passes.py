"""Time to import + partition + map ResNet-18 (224x224, full width) through the codax passes.

Prints a table and writes benchmarks/results/frontend_passes.json. Target: < 10 s on 2 cores.
Run: .venv/bin/python benchmarks/frontend_passes.py [--accel zcu102-int8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from codax.frontend import export_torch, import_onnx
from codax.frontend.zoo import resnet18
from codax.ir import Accelerator
from codax.passes import canonicalize, offloaded_layers
from codax.passes.annotate import Annotate
from codax.passes.map_layers import MapLayers
from codax.passes.partition import Partition

RESULTS = Path(__file__).parent / "results" / "frontend_passes.json"


def float_capable(name: str) -> Accelerator:
    """The library accelerator with float enabled and a PE register that holds an fp32 weight."""
    from codax.hw.library import load_accelerator

    d = load_accelerator(name).to_dict()
    d["precision"]["float"] = True
    for eng in d["engines"]:
        for lv in eng["levels"]:
            if lv.get("per_pe"):
                lv["sizes"] = {op: max(4, v) for op, v in lv["sizes"].items()}
    return Accelerator.from_dict(d)


def run_once(onnx_path: Path, accel: Accelerator) -> dict[str, float]:
    t = {}
    t0 = time.perf_counter()
    mod = import_onnx(onnx_path)
    t["import"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mod = canonicalize()(mod)
    t["canonicalize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mod = Partition(accel)(mod)
    t["partition"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mod = MapLayers(accel)(mod)
    t["map"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mod = Annotate(accel)(mod)
    t["annotate"] = time.perf_counter() - t0
    t["total"] = sum(t.values())
    t["layers"] = len(offloaded_layers(mod))
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accel", default="zcu102-int8")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    accel = float_capable(args.accel)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        path = export_torch(resnet18(1000, 64), torch.randn(1, 3, 224, 224), Path(d) / "resnet18.onnx")
        export_s = time.perf_counter() - t0
        runs = [run_once(path, accel) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["total"])
    n = int(best["layers"])
    print(f"ResNet-18 224x224 on {accel.name} (float), {n} offloaded layers; export {export_s:.2f} s")
    print(f"{'stage':<14}{'best s':>9}{'mean s':>9}")
    for k in ("import", "canonicalize", "partition", "map", "annotate", "total"):
        mean = sum(r[k] for r in runs) / len(runs)
        print(f"{k:<14}{best[k]:>9.3f}{mean:>9.3f}")
    verdict = "meets" if best["total"] < 10 else "misses"
    print(f"import + partition + map: {best['total']:.2f} s ({verdict} the 10 s target)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "model": "resnet18-224",
                "accelerator": accel.name,
                "layers": int(best["layers"]),
                "export_s": export_s,
                "best": best,
                "runs": runs,
                "target_s": 10,
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
