"""Test fixtures for the passes: a stand-in mapper while codax.hw.mapper.map_layer is being written.

The passes call `codax.hw.mapper.map_layer(layer, accel, objective=...)` -> object with `.mapping` and
`.cost.cycles` / `.cost.energy_pj`. Until that function exists this fixture provides one built from
the naive mapping and the cost model, with exactly that signature.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import codax.hw.mapper as mapper_pkg


def _naive_map_layer(layer, accel, objective="latency"):
    from codax.hw.evaluate import evaluate
    from codax.hw.mapper.naive import naive_mapping

    m = naive_mapping(layer, accel)
    c = evaluate(layer, accel, m)
    return SimpleNamespace(
        mapping=m, cost=SimpleNamespace(cycles=float(c.cycles), energy_pj=float(c.energy_pj))
    )


@pytest.fixture(autouse=True)
def _mapper(monkeypatch):
    if not hasattr(mapper_pkg, "map_layer"):
        monkeypatch.setattr(mapper_pkg, "map_layer", _naive_map_layer, raising=False)
    yield


@pytest.fixture(scope="session")
def resnet_onnx(tmp_path_factory):
    from tests.passes.models import export_resnet

    return export_resnet(tmp_path_factory.mktemp("m") / "resnet18.onnx")


@pytest.fixture(scope="session")
def mobilenet_onnx(tmp_path_factory):
    from tests.passes.models import export_mobilenet

    return export_mobilenet(tmp_path_factory.mktemp("m") / "mobilenetv2.onnx")


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory):
    import torch

    from codax.frontend import export_torch
    from tests.passes.models import train_digits_net

    return export_torch(
        train_digits_net(), torch.zeros(1, 1, 16, 16), tmp_path_factory.mktemp("m") / "digits.onnx"
    )


@pytest.fixture(scope="session", params=[False, True], ids=["per_tensor", "per_channel"])
def digits_qdq(request, digits_onnx, tmp_path_factory):
    from tests.passes.models import quantize_digits

    out = tmp_path_factory.mktemp("q") / f"digits_qdq_{request.param}.onnx"
    return quantize_digits(digits_onnx, out, per_channel=request.param)
