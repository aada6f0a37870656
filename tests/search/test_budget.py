"""Budgets: the derived accelerator fits; an infeasible budget fails clearly."""

from __future__ import annotations

import pytest

from codax.errors import InfeasibleError
from codax.hw import load_accelerator
from codax.search import run_search
from codax.search.config import load_config
from codax.search.cosearch import CoSearch


def test_derived_accelerator_respects_budget(tiny, tmp_path):
    tiny["budget"] = {"dsp": 100, "bram18": 60}
    tiny["search"]["objective"] = "latency"
    tiny["search"]["lambda"] = 5.0  # pushes towards big arrays, against the budget
    r = run_search(tiny, tmp_path, progress=False, finalize=False)
    s = r.summary
    assert s["design_dsp"] <= 100 and s["exact_dsp"] <= 100
    assert s["design_bram18"] <= 60 and s["exact_bram18"] <= 60
    # every accelerator choice is reported with its options' costs (over the budget: None), and the
    # choices no option of which changes the derived design's cost are named as such
    choices = {c["choice"]: c for c in s["accelerator_choices"]}
    names = ["rows", "cols", "buf_W", "buf_I", "buf_O", "dataflow", "double_buffer"]
    assert sorted(choices) == sorted(names)
    assert any(v is None for v in choices["rows"]["costs"].values()) or "cycles" in choices["rows"]["sees"]
    assert s["choices_the_cost_cannot_see"] == [n for n in names if not choices[n]["sees"]]


def test_infeasible_budget_names_smallest_design(tiny):
    tiny["budget"] = {"dsp": 10}
    with pytest.raises(InfeasibleError) as e:
        CoSearch(load_config(tiny))
    msg = str(e.value)
    assert "smallest design" in msg and "'rows': 8" in msg and "dsp 64" in msg and "budget" in msg


def test_unknown_config_key_is_named(tiny):
    from codax.errors import ConfigError

    tiny["search"]["epochz"] = 3
    with pytest.raises(ConfigError, match="search.epochz"):
        load_config(tiny)


def test_accel_yaml_loads_back(tiny, tmp_path):
    tiny["search"]["epochs"] = 1
    tiny["search"]["warmup_epochs"] = 0
    tiny["retrain"]["epochs"] = 1
    tiny["export"] = {"qdq": False}
    run_search(tiny, tmp_path, progress=False)
    a = load_accelerator(tmp_path / "accel.yaml")
    assert a.target == "fpga" and a.device == "zc706" and a.engines[0].levels[0].name == "BUF"


def test_chunked_accelerator_two_engines(tiny, tmp_path):
    """The multi-engine (chunk) option: one engine per group of stages, pipelined."""
    tiny["accelerator"]["chunks"] = 2
    tiny["search"]["epochs"] = 2
    r = run_search(tiny, tmp_path, progress=False)
    a = load_accelerator(tmp_path / "accel.yaml")
    assert [e.name for e in a.engines] == ["e0", "e1"]
    from codax.ir import load_mappings

    engines = {m.engine for m in load_mappings(tmp_path / "mappings.yaml").values()}
    assert engines == {"e0", "e1"}
    assert r.summary["exact_dsp"] <= 900


def test_imagenet_preset_builds():
    from codax.search.hwcost import LayerTable, config_costs
    from codax.search.space import build_accel_space, build_network_space

    cfg = load_config({"network": {"preset": "imagenet"}})
    net = build_network_space(cfg, (3, 224, 224), 1000)
    assert sum(u.searchable for u in net.units) == 22
    lt = LayerTable(net, [8])
    t = config_costs(lt, build_accel_space(cfg), (1, 1, 1, 1, 1, 0, 0), 3, True)
    assert t.shape[0] == len(lt.layers) and bool((t > 0).all())


def test_asic_area_budget(tiny):
    """ASIC target (base nvdla-small): the area budget is checked instead of DSP/BRAM."""
    tiny["accelerator"]["base"] = "nvdla-small"
    tiny["budget"] = {"area_mm2": 0.01}
    with pytest.raises(InfeasibleError, match="area_mm2"):
        CoSearch(load_config(tiny))
    tiny["budget"] = {"area_mm2": 1.0}
    cs = CoSearch(load_config(tiny))
    d = cs.design()
    assert cs.hw.config_resources(d.accel[0])["area_mm2"] <= 1.0
    assert cs.exact(d)["exact_area_mm2"] > 0


def test_projection_is_the_most_probable_fitting_point(tiny):
    """project() = argmax over every fitting point of the summed log-probabilities."""
    import torch

    tiny["budget"] = {"dsp": 100}
    cs = CoSearch(load_config(tiny))
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        probs = [torch.softmax(torch.randn(k, generator=gen) * 3, -1) for k in cs.space.sizes]
        got = cs.hw.project(probs)
        fitting = [c for c in cs.space.all_configs() if cs.hw.fits(c)]
        best = max(fitting, key=lambda c: sum(float(torch.log(p[i])) for p, i in zip(probs, c)))
        assert got == best and cs.hw.fits(got)
