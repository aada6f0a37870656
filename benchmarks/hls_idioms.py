"""The generated engine read as hardware: for every library accelerator, the resources read from its
sources (codax.codegen.hls_resources: BRAM18 per declared array, DSPs per multiply site) beside the
cost model's (accel.yaml through codax.hw.evaluate), the hardware-idiom violations per rule
(codax.codegen.hls_idioms), and the II each pipelined loop's memory ports allow (codax.codegen.hls_ii:
the cycle accounting's II is 1; a loop above it does not run at the speed the figures claim).
Whether each FPGA design fits its device is judged by both resource figures.
Beside it, for every library accelerator the core engine serves (docs/engine_core.md; `codax compile
--engine core`), the same readings of the core engine's sources (`core`): resources with every buffer
counted once, violations per rule, the II of every IP's pipelined loops.
Prints a table and writes benchmarks/results/hls_idioms.json.

    .venv/bin/python benchmarks/hls_idioms.py [--accel NAME ...]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from codax.codegen import core_hw
from codax.codegen.core import core_shape, full_engine
from codax.codegen.hls_engine import (
    device_dsp_kind,
    engine_loop_iis,
    engine_source_resources,
    engine_violations,
)
from codax.codegen.hls_idioms import RULES, counts
from codax.errors import UnsupportedError
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


def measure_core(name: str) -> dict:
    """The core engine's sources read as hardware, or why the core does not serve the accelerator."""
    accel = load_accelerator(name)
    try:
        shape = core_shape(accel)
    except UnsupportedError as e:
        return {"supported": False, "reason": str(e)}
    if not full_engine(shape):
        return {
            "supported": False,
            "reason": f"{name}: no load and store IPs for a {shape.rows} x {shape.cols} array",
        }
    res = core_hw.resources(shape, device_dsp_kind(accel))
    violations = core_hw.violations(shape)
    loops = core_hw.ip_loops(shape)
    entry = {
        "supported": True,
        "code": {
            "bram18": res.bram18,
            "dsp": res.dsp,
            "per_array": [{k: a.__dict__[k] for k in ARRAY_KEYS} for a in res.arrays],
        },
        "violations": counts(violations),
        "max_ii": max(lp.ii for ls in loops.values() for lp in ls),
        "loops": {m: [{"loop": lp.label, "ii": lp.ii} for lp in ls] for m, ls in loops.items()},
    }
    if accel.target == "fpga" and accel.device:
        dev = load_device(accel.device)
        entry["fits_by_code"] = res.dsp <= dev.dsp and res.bram18 <= dev.bram18
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
        results[name]["core"] = measure_core(name)
        r = results[name]
        fits = r.get("fits_by_code")
        dsp = "-" if r["code"]["dsp"] is None else f"{r['code']['dsp']:,}"
        print(
            f"{name:<16} BRAM18 code {r['code']['bram18']:>6,} model {r['model']['bram18']:>6,.0f} | "
            f"DSP code {dsp:>8} model {r['model']['dsp']:>6,.0f} | "
            f"fits by code: {'-' if fits is None else fits} | max II {r['max_ii']} | violations "
            + " ".join(f"{k}={v}" for k, v in r["violations"].items())
        )
        c = r["core"]
        if c["supported"]:
            n_viol = sum(c["violations"].values())
            print(
                f"{'':<16} core engine: BRAM18 {c['code']['bram18']:,} DSP {c['code']['dsp']:,} | fits by "
                f"code: {c.get('fits_by_code', '-')} | max II {c['max_ii']} | violations {n_viol}"
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
            "core": {
                "served": sorted(n for n, r in results.items() if r["core"]["supported"]),
                "violations": sum(
                    sum(r["core"]["violations"].values()) for r in results.values() if r["core"]["supported"]
                ),
                "max_ii": {n: r["core"]["max_ii"] for n, r in results.items() if r["core"]["supported"]},
                "fit_by_code": {
                    n: r["core"]["fits_by_code"] for n, r in results.items() if "fits_by_code" in r["core"]
                },
            },
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hls_idioms.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS / 'hls_idioms.json'}")


if __name__ == "__main__":
    main()
