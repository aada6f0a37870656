"""Typed configuration: sections are dataclasses built and checked at load; unknown keys, wrong
types and values outside their options are errors naming the field; the YAML form round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codax.errors import ConfigError
from codax.search.config import DEFAULTS, SearchConfig, load_config, network_layout


def test_defaults_are_typed_sections():
    cfg = load_config(None)
    assert isinstance(cfg, SearchConfig)
    assert (
        cfg.search.lambda_ == 0.3
        and cfg.data.name == "digits"
        and cfg.accelerator.buffer_kb.W == [32, 128, 512]
    )
    assert DEFAULTS["search"]["lambda"] == 0.3  # the YAML spelling of the keyword field


@pytest.mark.parametrize(
    "user, names",
    [
        ({"search": {"epochz": 3}}, "search.epochz"),
        ({"serach": {}}, "serach"),
        ({"accelerator": {"buffer_kb": {"X": [1]}}}, "accelerator.buffer_kb.X"),
        ({"network": {"stages": [{"width": 8, "depth": 1, "strid": 1}]}}, r"network.stages\[0\]\.strid"),
        ({"accelerator": {"fixed": {"rows": 8, "cols": 8}}}, "accelerator.fixed.buffer_kb is required"),
    ],
)
def test_unknown_and_missing_keys_are_named(user, names):
    with pytest.raises(ConfigError, match=names):
        load_config(user)


def test_misspelled_key_suggests_the_field():
    with pytest.raises(ConfigError, match="Did you mean 'batch_size'"):
        load_config({"search": {"batch_sise": 8}})


@pytest.mark.parametrize(
    "user, message",
    [
        ({"search": {"epochs": "3"}}, "search.epochs must be an integer, got '3'"),
        ({"search": {"epochs": True}}, "search.epochs must be an integer"),
        ({"search": {"a_lr": "fast"}}, "search.a_lr must be a number"),
        (
            {"search": {"objective": "speed"}},
            "search.objective must be 'latency', 'energy', 'edp' or 'flops'",
        ),
        ({"data": {"name": "mnist"}}, "data.name must be 'digits', 'cifar10', 'cifar100' or 'imagefolder'"),
        ({"accelerator": {"dataflow": ["row-stationary"]}}, r"accelerator.dataflow\[0\] must be"),
        ({"bits": {"choices": 8}}, "bits.choices must be a list of an integer"),
        ({"search": {"recompute": "yes"}}, "search.recompute must be 'auto', True or False"),
        ({"search": {"warmup_epochs": 30}}, "search.warmup_epochs must be between 0 and search.epochs"),
        ({"data": {"workers": -1}}, "data.workers must be >= 0"),
        ({"search": "fast"}, "search must be a mapping of epochs, "),
    ],
)
def test_wrong_values_are_named(user, message):
    with pytest.raises(ConfigError, match=message):
        load_config(user)


def test_one_accelerator_draw_is_enough_for_one_engine_only():
    # one engine: local expectations, unbiased from one draw; several: the jointly drawn points'
    # leave-one-out baseline needs two
    assert load_config({"search": {"accel_samples": 1}}).search.accel_samples == 1
    with pytest.raises(
        ConfigError,
        match=r"search.accel_samples must be >= 2 with accelerator.chunks > 1 .* got 1 with 2 engines; "
        r"set search.accel_samples: 2 or accelerator.chunks: 1",
    ):
        load_config({"search": {"accel_samples": 1}, "accelerator": {"chunks": 2}})
    two = load_config({"search": {"accel_samples": 2}, "accelerator": {"chunks": 2}})
    assert (two.search.accel_samples, two.accelerator.chunks) == (2, 2)
    # a fixed accelerator draws nothing: one sample is not an error with several engines
    fixed = {
        "rows": 8,
        "cols": 8,
        "buffer_kb": {"W": 32, "I": 32, "O": 16},
        "dataflow": "weight-stationary",
        "double_buffer": True,
    }
    one = load_config({"search": {"accel_samples": 1}, "accelerator": {"chunks": 2, "fixed": fixed}})
    assert one.search.accel_samples == 1
    with pytest.raises(ConfigError, match="search.accel_samples must be a positive integer, got 0"):
        load_config({"search": {"accel_samples": 0}})
    with pytest.raises(ConfigError, match="search.accel_exact must be >= 0, got -1"):
        load_config({"search": {"accel_exact": -1}})


@settings(max_examples=30, deadline=None)
@given(
    epochs=st.integers(1, 50),
    lam=st.floats(0.0, 10.0, allow_nan=False),
    kernels=st.lists(st.sampled_from([3, 5, 7]), min_size=1, max_size=3, unique=True),
    name=st.sampled_from(["digits", "cifar10", "imagefolder"]),
    target=st.one_of(st.none(), st.floats(1.0, 1e6)),
)
def test_yaml_form_round_trips(epochs, lam, kernels, name, target):
    user = {
        "data": {"name": name},
        "network": {"kernels": kernels},
        "search": {"epochs": epochs, "warmup_epochs": 0, "lambda": lam, "target_fps": target},
    }
    cfg = load_config(user)
    assert cfg.search.epochs == epochs and cfg.search.lambda_ == lam and cfg.network.kernels == kernels
    back = load_config(cfg.to_dict())
    assert back == cfg
    assert load_config(cfg) == cfg and load_config(cfg) is not cfg


def test_preset_and_overrides():
    lay = network_layout(load_config({"network": {"preset": "cifar22"}}))
    assert [s.depth for s in lay.stages] == [1, 4, 4, 4, 4, 4, 1] and sum(s.depth for s in lay.stages) == 22
    assert [s.stride for s in lay.stages] == [1, 1, 2, 2, 1, 2, 1] and lay.stem.stride == 1
    lay = network_layout(load_config({"network": {"preset": "small8", "head": 64, "width_mult": 2.0}}))
    assert lay.head == 64 and lay.stem.width == 16
    with pytest.raises(ConfigError, match="network.preset 'small9' is unknown"):
        load_config({"network": {"preset": "small9"}})


def _search_imports() -> dict[str, set[str]]:
    """codax.search module -> the codax.search modules it imports when it runs, anywhere in its body
    (imports inside functions included: they hide a cycle, they do not remove it)."""
    import ast
    from pathlib import Path

    import codax.search

    graph = {}
    for f in Path(codax.search.__file__).parent.glob("*.py"):
        if f.name == "__init__.py":
            continue
        deps = set()
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):  # annotations only: not imported when the program runs
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
                node.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("codax.search."):
                deps.add(node.module.removeprefix("codax.search."))
            elif isinstance(node, ast.Import):
                deps |= {
                    a.name.removeprefix("codax.search.")
                    for a in node.names
                    if a.name.startswith("codax.search.")
                }
        graph[f.stem] = deps
    return graph


def test_search_modules_import_no_cycle():
    """The search loop's collaborators (baselines, refine, surrogate, finalize, scoring) do not
    import it back: the import graph of codax.search is acyclic."""
    import graphlib

    graph = _search_imports()
    assert "baselines" not in graph["cosearch"] and "cosearch" not in graph["baselines"]
    for m in ("refine", "surrogate", "finalize", "scoring", "ranking"):
        assert "cosearch" not in graph[m], m
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on any cycle


def test_yaml_file_with_a_misspelled_nested_key(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text(
        "search:\n  epochs: 2\n  warmup_epochs: 1\naccelerator:\n  buffer_kb:\n    W: [16]\n    Q: [8]\n"
    )
    with pytest.raises(ConfigError, match=r"accelerator\.buffer_kb\.Q.*Known: I, O, W"):
        load_config(str(path))
    path.write_text("search:\n  epochs: 2\n  warmup_epochs: 1\naccelerator:\n  buffer_kb:\n    W: [16]\n")
    cfg = load_config(path)
    assert cfg.accelerator.buffer_kb.W == [16] and cfg.accelerator.buffer_kb.I == [32, 128, 512]
