"""Models for the pass tests, exported once per session into a temp dir."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from codax.frontend import export_torch
from codax.frontend.zoo import mobilenet_v2, resnet18


def export_resnet(path, width: int = 8, hw: int = 32):
    return export_torch(resnet18(10, width), torch.randn(1, 3, hw, hw), path)


def export_mobilenet(path, width: float = 0.35, hw: int = 32):
    return export_torch(mobilenet_v2(10, width), torch.randn(1, 3, hw, hw), path)


class DigitsNet(nn.Module):
    """A small CNN for 16x16 digits: regular, strided, depthwise and dilated convs, a residual, dense."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = torch.relu(self.c2(y))
        z = nn.functional.relu6(self.dw(y))
        y = torch.relu(self.pw(z) + y)
        return self.fc(y.flatten(1))


def digits(n: int = 200) -> np.ndarray:
    """sklearn digits upsampled to 16x16, scaled to [0, 1], NCHW float32."""
    from sklearn.datasets import load_digits

    x = load_digits().images[:n].astype(np.float32) / 16.0
    return np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)[:, None]


def train_digits_net(steps: int = 60) -> DigitsNet:
    """A few SGD steps on digits so activations have realistic ranges for calibration."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    net = DigitsNet()
    x = torch.from_numpy(digits(1000))
    y = torch.from_numpy(load_digits().target[:1000]).long()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for i in range(steps):
        b = slice((i * 64) % 936, (i * 64) % 936 + 64)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[b]), y[b]).backward()
        opt.step()
    return net.eval()


def quantize_digits(float_path, out_path, per_channel: bool):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"input": digits(200)[i : i + 1]} for i in range(0, 200, 2))

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel
    )
    return out_path


def sigmoid_model(path):
    """Conv -> Sigmoid -> Conv: Sigmoid has no accelerator support and must stay on the host."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["a"], ["s"], name="sig"),
        helper.make_node("Conv", ["s", "w2"], ["y"], name="conv_b"),
    ]
    g = helper.make_graph(
        nodes,
        "sig",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
        [w1, w2],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path
