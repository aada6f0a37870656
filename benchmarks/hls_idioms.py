"""The generated engine read as hardware: for every library accelerator, the resources read from its
sources (codax.codegen.hls_resources: BRAM18 per declared array, DSPs per multiply site) beside the
cost model's (accel.yaml through codax.hw.evaluate), the hardware-idiom violations per rule
(codax.codegen.hls_idioms), and the II each pipelined loop's memory ports allow (codax.codegen.hls_ii:
the cycle accounting's II is 1; a loop above it does not run at the speed the figures claim).
Whether each FPGA design fits its device is judged by both resource figures.
Prints a table and writes benchmarks/results/hls_idioms.json.

    .venv/bin/python benchmarks/hls_idioms.py [--accel NAME ...]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from codax.codegen.hls_engine import engine_loop_iis, engine_source_resources, engine_violations
from codax.codegen.hls_idioms import RULES, counts
from codax.hw import load_accelerator, load_device
from codax.hw.evaluate import accelerator_resources

LIBRARY = Path(__file__).parent.parent / "codax" / "hw" / "library" / "accelerators"
RESULTS = Path(__file__).parent / "results"
TOP_SITES = 12
ARRAY_KEYS = (
    "name",
    "element_bits",
    "depth",
    "banks",
    "bank_bits",
    "bank_depth",
    "bram18",
    "storage",
    "note",
)


def measure(name: str) -> dict:
    accel = load_accelerator(name)
    t0 = time.perf_counter()
    code = engine_source_resources(accel)
    t_res = time.perf_counter() - t0
    t0 = time.perf_counter()
    violations = engine_violations(accel)
    t_idioms = time.perf_counter() - t0
    t0 = time.perf_counter()
    loops = engine_loop_iis(accel)
    t_ii = time.perf_counter() - t0
    model = accelerator_resources(accel)
    by_kind = Counter()
    for a in code.arrays:
        by_kind[a.kind] += a.bram18
    entry = {
        "target": accel.target,
        "device": accel.device,
        "code": {
            "bram18": code.bram18,
            "dsp": code.dsp,
            "dsp_kind": code.dsp_kind,
            "arrays": len(code.arrays),
            "bram18_by_kind": dict(by_kind),
            "multiply_sites": len(code.multipliers),
            "top_multiply_sites": [m.__dict__ for m in code.multipliers[:TOP_SITES]],
            "per_array": [{k: a.__dict__[k] for k in ARRAY_KEYS} for a in code.arrays],  # BRAM18 first
        },
        "model": {"bram18": model.bram18, "dsp": model.dsp, "lut": model.lut},
        "violations": counts(violations),
        "violation_examples": {r: [v.to_dict() for v in violations if v.rule == r][:3] for r in RULES},
        "max_ii": max((lp.ii for lp in loops), default=None),
        "loops": [_loop(lp) for lp in loops],
        "seconds": {"resources": round(t_res, 2), "idioms": round(t_idioms, 2), "ii": round(t_ii, 2)},
    }
    if accel.target == "fpga" and accel.device:
        dev = load_device(accel.device)
        entry["device_budget"] = {"dsp": dev.dsp, "bram18": dev.bram18}
        entry["fits_by_code"] = code.dsp <= dev.dsp and code.bram18 <= dev.bram18
        entry["fits_by_model"] = model.dsp <= dev.dsp and model.bram18 <= dev.bram18
    return entry


def _loop(lp) -> dict:
    """A pipelined loop's II and the memories that set it (the three busiest)."""
    d = lp.to_dict()
    d["memories"] = d["memories"][:3]
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accel", action="append", help="library accelerator(s); default: all")
    args = ap.parse_args()
    names = args.accel or sorted(p.stem for p in LIBRARY.glob("*.yaml"))
    results = {}
    for name in names:
        results[name] = measure(name)
        r = results[name]
        fits = r.get("fits_by_code")
        dsp = "-" if r["code"]["dsp"] is None else f"{r['code']['dsp']:,}"
        print(
            f"{name:<16} BRAM18 code {r['code']['bram18']:>6,} model {r['model']['bram18']:>6,.0f} | "
            f"DSP code {dsp:>8} model {r['model']['dsp']:>6,.0f} | "
            f"fits by code: {'-' if fits is None else fits} | max II {r['max_ii']} | violations "
            + " ".join(f"{k}={v}" for k, v in r["violations"].items())
        )
    total = Counter()
    for r in results.values():
        total.update(r["violations"])
    out = {
        "accelerators": results,
        "summary": {
            "violations_per_rule": {r: total[r] for r in RULES},
            "accelerators_with_violations": sum(any(r["violations"].values()) for r in results.values()),
            "fit_by_code": {n: r["fits_by_code"] for n, r in results.items() if "fits_by_code" in r},
            "fit_by_model": {n: r["fits_by_model"] for n, r in results.items() if "fits_by_model" in r},
            "max_ii": {n: r["max_ii"] for n, r in results.items()},
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hls_idioms.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS / 'hls_idioms.json'}")


if __name__ == "__main__":
    main()
