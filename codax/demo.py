"""`codax demo`: the main job end to end on the bundled default.

co-search on scikit-learn's digits (network + bitwidths + accelerator under a ZC706 budget)
-> derived network (ONNX), accelerator (accel.yaml), mappings (mappings.yaml)
-> codax compile (the core's HLS project and program where the core can be the searched accelerator,
   else the descriptor engine's; a TVM executable with the layers in C-simulation)
-> run the executable on held-out digits; check it against the golden model (bit-exact) and, layer
   by layer, ONNX Runtime (codax.verify) -> report.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from codax.errors import ConfigError

QUICK = {"search": {"epochs": 2, "warmup_epochs": 1}, "retrain": {"epochs": 2}}


def _held_out_digits(config: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The search's test split (never trained on), normalised as the search normalised its data."""
    from codax.search import load_config
    from codax.search.data import load_data

    cfg = load_config(config)
    x, y = load_data(cfg, seed=cfg.seed).test
    return x.numpy(), y.numpy()


def compiled_cycles(report: dict) -> int:
    """The cycles of a compiled project's report: the core's counted program, or the descriptor engine's
    chained calls."""
    return report["cycles"]["total"] if report.get("engine") == "core" else report["total_cycles"]


def run_demo(out_dir: str = "out/demo", quick: bool = False, force: bool = False) -> int:
    from codax.flow import References, check_compiled, compile_model, run_compiled
    from codax.search import run_search

    out = Path(out_dir)
    if out.exists():
        if not force and not (out / ".codax-demo").exists():
            raise ConfigError(f"output directory {out} exists and is not a demo output; pass --force")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / ".codax-demo").write_text("")
    t0 = time.perf_counter()
    print("== 1/3 co-search: network, bitwidths and accelerator on digits (ZC706 budget)")
    res = run_search(QUICK if quick else None, out / "search")
    search_s = time.perf_counter() - t0
    s = out / "search"
    print(f"\n== 2/3 compile {s / 'net.onnx'} for {s / 'accel.yaml'} with the searched mappings")
    t1 = time.perf_counter()
    comp = compile_model(s / "net.onnx", s / "accel.yaml", out / "compiled", s / "mappings.yaml")
    compile_s = time.perf_counter() - t1
    print(comp.report.table())
    print(
        "\n== 3/3 run the TVM executable (offloaded layers in C-simulation), check it (golden, ONNX Runtime)"
    )
    xs, ys = _held_out_digits(QUICK if quick else None)
    n = min(32, len(xs))
    refs = References(out / "compiled")
    correct, golden_diff, layer_steps, failing, e2e_hist, agree = 0, 0, 0.0, 0, {}, 0
    failing_layers: set[str] = set()
    for i in range(n):
        x = xs[i : i + 1]
        got = run_compiled(out / "compiled", x)[0]
        check = check_compiled(out / "compiled", x, [got], refs)
        golden_diff += sum(c.mismatching for c in check.golden)
        layer_steps = max([layer_steps] + [c.max_steps or 0.0 for c in check.layers])
        failing_layers.update(check.failing_layers)
        failing += int(not check.ok)
        e2e = check.end_to_end[0]
        for k, v in e2e.steps_histogram.items():
            e2e_hist[k] = e2e_hist.get(k, 0) + v
        agree += e2e.argmax_agreement or 0.0
        correct += int(int(np.argmax(got)) == int(ys[i]))
    summary = {
        "search_seconds": round(search_s, 1),
        "compile_seconds": round(compile_s, 1),
        "test_accuracy_searched_net_int8": res.summary.get("test_acc_quantized"),
        f"executable_top1_on_{n}_held_out_digits": correct / n,
        "elements_differing_from_golden": golden_diff,
        "max_layer_steps_vs_onnxruntime": layer_steps,
        "layers_failing_check": sorted(failing_layers),
        "end_to_end_steps_vs_onnxruntime": dict(sorted(e2e_hist.items(), key=lambda kv: int(kv[0]))),
        "end_to_end_top1_agreement_onnxruntime": agree / n,
        "images_failing_check": failing,
        "predicted_fps_searched_bits": res.summary.get("exact_fps"),
        "predicted_energy_uj_searched_bits": res.summary.get("exact_energy_uj"),
        # the search's cost model of the derived design, and the core's cycles for it (what compile reports)
        "predicted_cycles_searched": res.summary.get("exact_cycles"),
        "core_cycles_searched_design": res.summary.get("core", {}).get("cycles"),
        "engine": comp.engine,
        "engine_note": comp.engine_note,
        # the compiled program as the engine runs it: the searched design's cycles
        "predicted_cycles_compiled": compiled_cycles(
            json.loads((out / "compiled" / "report.json").read_text())
        ),
        "dsp": res.summary.get("exact_dsp"),
        "handoff": res.summary.get("handoff"),
        "outputs": str(out),
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))
    return 0 if failing == 0 else 1
