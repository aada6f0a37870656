"""Test fixtures for the passes: the models they compile, exported once per session."""

from __future__ import annotations

import pytest


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
