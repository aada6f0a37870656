"""Small, dependency-free PyTorch definitions of ResNet-18 and MobileNetV2 (torchvision layout).

`width` scales every channel count so tests and demos run at CI speed; the layer structure (strides,
groups, residuals, Relu/Relu6) is that of the original networks.
"""

from __future__ import annotations

from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000, width: int = 64, in_ch: int = 3):
        super().__init__()
        w = [width, width * 2, width * 4, width * 8]
        self.conv1 = nn.Conv2d(in_ch, w[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, c = [], w[0]
        for i, co in enumerate(w):
            s = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(c, co, s), BasicBlock(co, co, 1)))
            c = co
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _conv_bn(c_in: int, c_out: int, k: int, s: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    mods = [nn.Conv2d(c_in, c_out, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*mods, nn.ReLU6(inplace=True)) if act else nn.Sequential(*mods)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        self.use_res = stride == 1 and c_in == c_out
        layers = [] if expand == 1 else [_conv_bn(c_in, hidden, 1, 1)]
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, c_out, 1, 1, act=False),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    # (expansion t, channels c, repeats n, stride s) as in the paper
    CFG = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, in_ch: int = 3):
        super().__init__()

        def ch(c: float) -> int:
            return max(8, int(c * width_mult + 4) // 8 * 8)

        c = ch(32)
        feats: list[nn.Module] = [_conv_bn(in_ch, c, 3, 2)]
        for t, co, n, s in self.CFG:
            for i in range(n):
                feats.append(InvertedResidual(c, ch(co), s if i == 0 else 1, t))
                c = ch(co)
        last = ch(1280) if width_mult > 1.0 else max(ch(1280), 1280) if width_mult == 1.0 else ch(1280)
        feats.append(_conv_bn(c, last, 1, 1))
        self.features = nn.Sequential(*feats)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics, so BN folding is exercised (fresh BN layers are identities)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + 0.1 * torch.rand(m.running_var.shape, generator=g))
    return model.eval()


def resnet18(num_classes: int = 1000, width: int = 64, in_ch: int = 3, seed: int = 0) -> ResNet18:
    """ResNet-18 with random weights (seeded) and randomized BatchNorm statistics, in eval mode."""
    import torch

    torch.manual_seed(seed)
    return _randomize_bn(ResNet18(num_classes, width, in_ch), seed)


def mobilenet_v2(
    num_classes: int = 1000, width_mult: float = 1.0, in_ch: int = 3, seed: int = 0
) -> MobileNetV2:
    """MobileNetV2 with random weights (seeded) and randomized BatchNorm statistics, in eval mode."""
    import torch

    torch.manual_seed(seed)
    return _randomize_bn(MobileNetV2(num_classes, width_mult, in_ch), seed)
