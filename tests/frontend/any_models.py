"""Small models no fixture resembles, written by the tests: a transformer encoder block, a 1-D
convnet, a transposed-convolution decoder, and their QDQ versions (ONNX Runtime's quantizer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from codax.frontend import export_torch


class EncoderBlock(nn.Module):
    """A ViT encoder block on a few patch tokens: patch embedding, pre-norm multi-head attention and
    a GELU MLP, with residuals, written out so attention's QK^T and AV are plain batched MatMuls."""

    def __init__(self, dim: int = 16, heads: int = 2, patch: int = 4, in_ch: int = 3, classes: int = 10):
        super().__init__()
        self.heads, self.dh = heads, dim // heads
        self.embed = nn.Conv2d(in_ch, dim, patch, stride=patch)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)  # [B, T, D]
        b, n, d = t.shape
        q, k, v = self.qkv(self.norm1(t)).reshape(b, n, 3, self.heads, self.dh).permute(2, 0, 3, 1, 4)
        att = torch.softmax((q @ k.transpose(-2, -1)) * self.dh**-0.5, dim=-1)
        t = t + self.proj((att @ v).transpose(1, 2).reshape(b, n, d))
        t = t + self.fc2(nn.functional.gelu(self.fc1(self.norm2(t))))
        return self.head(t.mean(1))


class KeywordNet(nn.Module):
    """A 1-D keyword-spotting convnet: strided, dilated and depthwise Conv1d, a residual, a dense head."""

    def __init__(self, c_in: int = 8, classes: int = 6):
        super().__init__()
        self.c1 = nn.Conv1d(c_in, 16, 5, stride=2, padding=2)
        self.c2 = nn.Conv1d(16, 16, 3, padding=2, dilation=2)
        self.dw = nn.Conv1d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv1d(16, 16, 1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = torch.relu(self.c2(y))
        y = torch.relu(self.pw(torch.relu(self.dw(y))) + y)
        return self.fc(y.mean(2))


class Decoder(nn.Module):
    """A U-Net-style decoder: ConvTranspose upsampling (stride 2, with and without output padding,
    each followed by a Conv)."""

    def __init__(self, c_in: int = 8):
        super().__init__()
        self.up1 = nn.ConvTranspose2d(c_in, 8, 2, stride=2)
        self.c1 = nn.Conv2d(8, 8, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.c2 = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        y = torch.relu(self.c1(torch.relu(self.up1(x))))
        return self.c2(torch.relu(self.up2(y)))


class SmallCNN(nn.Module):
    """A float CNN: regular, strided and depthwise convolutions, a residual, pooling and a dense head."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        y = torch.relu(self.c2(torch.relu(self.c1(x))))
        y = torch.relu(self.pw(torch.relu(self.dw(y))) + y)
        return self.fc(y.mean((2, 3)))


MODELS = {
    "cnn": (SmallCNN, (1, 3, 16, 16)),
    "encoder": (EncoderBlock, (1, 3, 8, 8)),
    "keyword": (KeywordNet, (1, 8, 32)),
    "decoder": (Decoder, (1, 8, 4, 4)),
}


def export(name: str, path: Path, seed: int = 0) -> Path:
    """Export model `name` with seeded random weights."""
    cls, shape = MODELS[name]
    torch.manual_seed(seed)
    return export_torch(cls().eval(), torch.randn(*shape), path)


def samples(name: str, n: int = 16, seed: int = 1) -> np.ndarray:
    """Calibration / test inputs for model `name`: a [n, ...] float32 batch."""
    _, shape = MODELS[name]
    return np.random.default_rng(seed).standard_normal((n, *shape[1:])).astype(np.float32)


def quantize(float_path: Path, out_path: Path, inputs: np.ndarray) -> Path:
    """ONNX Runtime's static QDQ quantization (per-channel weights) calibrated on `inputs`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"input": inputs[i : i + 1]} for i in range(len(inputs)))

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    return out_path
