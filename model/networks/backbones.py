"""ResNet-50 and MobileNetV3-small ``features``, written out so that run time never imports torchvision.

Importing ``torchvision`` costs about 2.5 CPU-s of every cold start (its package ``__init__`` pulls in
``torchvision.ops`` and ``torch._dynamo``; issue 13), while we only ever used two of its model
constructors with ``weights=None``. This module re-states them after torchvision's own source
(BSD-3-Clause, (c) Soumith Chintala 2016 and the torchvision contributors):

- ``torchvision/models/resnet.py``: ``Bottleneck`` (ResNet v1.5: the stride sits on the 3x3 conv)
  and ``ResNet`` with ``layers=[3, 4, 6, 3]``, less ``avgpool`` and ``fc``;
- ``torchvision/models/mobilenetv3.py`` (``InvertedResidual``, the ``mobilenet_v3_small`` table)
  and ``torchvision/ops/misc.py`` (``Conv2dNormActivation``, ``SqueezeExcitation``): the
  ``features`` Sequential, BatchNorm with eps=0.001, momentum=0.01.

The module trees, parameter and buffer names are torchvision's (``layer4.2.bn3.running_mean``,
``features.4.block.2.fc1.weight``...), so every shipped checkpoint and any torchvision state dict
loads unchanged, and so is the weight initialisation. Both builders also draw, and drop, the
default initialisation of the classifier torchvision builds before its init loop, so a seeded build
gives torchvision's numbers exactly and seeded training runs reproduce (tests/test_backbones.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

# ----------------------------------------------------------------------------------------------
# ResNet-50 (torchvision/models/resnet.py)

RESNET50_BLOCKS = (3, 4, 6, 3)  # bottlenecks per stage


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided: ResNet v1.5) -> 1x1 expand (x4), plus the identity or a projection."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(c_in, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))  # (B, width, H/stride, W/stride)
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


def _resnet_stage(c_in: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    c_out = width * Bottleneck.expansion
    downsample = None
    if stride != 1 or c_in != c_out:
        downsample = nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))
    layers = [Bottleneck(c_in, width, stride, downsample)]
    layers += [Bottleneck(c_out, width) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet50(nn.Module):
    """torchvision's ``resnet50()`` without ``avgpool`` and ``fc``: (B, 3, S, S) -> (B, 2048, S/32, S/32)."""

    out_channels = 2048

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _resnet_stage(64, 64, RESNET50_BLOCKS[0], stride=1)
        self.layer2 = _resnet_stage(256, 128, RESNET50_BLOCKS[1], stride=2)
        self.layer3 = _resnet_stage(512, 256, RESNET50_BLOCKS[2], stride=2)
        self.layer4 = _resnet_stage(1024, 512, RESNET50_BLOCKS[3], stride=2)
        nn.Linear(2048, 1000)  # torchvision's fc: drawn and dropped, so seeded inits stay torchvision's
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, S/4, S/4)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 2048, S/32, S/32)


# ----------------------------------------------------------------------------------------------
# MobileNetV3-small features (torchvision/models/mobilenetv3.py, torchvision/ops/misc.py)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never more than 10% down (the TF MobileNet rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


#: BatchNorm as torchvision's MobileNetV3 builds it
MobileNetBatchNorm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


class Conv2dNormActivation(nn.Sequential):
    """conv (no bias) -> BatchNorm -> activation (in place; none when ``activation`` is None): ``.0 .1 .2``."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: Callable[..., nn.Module] | None = nn.ReLU,
    ):
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            MobileNetBatchNorm(c_out),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = c_out


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018, https://arxiv.org/abs/1709.01507) with a hard sigmoid gate."""

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))  # (B, C, 1, 1)
        return self.scale_activation(scale) * x


@dataclass(frozen=True)
class BneckConfig:
    """One row of Table 2 of the MobileNetV3 paper (Howard et al. 2019, https://arxiv.org/abs/1905.02244)."""

    c_in: int  # input channels
    kernel: int  # depthwise kernel size
    c_exp: int  # expanded channels
    c_out: int  # output channels
    use_se: bool  # squeeze-and-excitation after the depthwise conv
    activation: str  # "RE" (ReLU) or "HS" (hard swish)
    stride: int  # depthwise stride


#: torchvision's ``mobilenet_v3_small`` table (width 1.0: every channel count is already a multiple of 8)
MOBILENET_V3_SMALL: tuple[BneckConfig, ...] = (
    BneckConfig(16, 3, 16, 16, True, "RE", 2),  # C1
    BneckConfig(16, 3, 72, 24, False, "RE", 2),  # C2
    BneckConfig(24, 3, 88, 24, False, "RE", 1),
    BneckConfig(24, 5, 96, 40, True, "HS", 2),  # C3
    BneckConfig(40, 5, 240, 40, True, "HS", 1),
    BneckConfig(40, 5, 240, 40, True, "HS", 1),
    BneckConfig(40, 5, 120, 48, True, "HS", 1),
    BneckConfig(48, 5, 144, 48, True, "HS", 1),
    BneckConfig(48, 5, 288, 96, True, "HS", 2),  # C4
    BneckConfig(96, 5, 576, 96, True, "HS", 1),
    BneckConfig(96, 5, 576, 96, True, "HS", 1),
)
MOBILENET_V3_SMALL_LAST_CHANNEL = 1024  # the classifier's hidden width (only its init draws are used)


class InvertedResidual(nn.Module):
    """MobileNetV3 bottleneck (section 5 of the paper): [1x1 expand] -> depthwise -> [SE] -> 1x1 project."""

    def __init__(self, cnf: BneckConfig):
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.c_in == cnf.c_out
        act = nn.Hardswish if cnf.activation == "HS" else nn.ReLU
        layers: list[nn.Module] = []
        if cnf.c_exp != cnf.c_in:
            layers.append(Conv2dNormActivation(cnf.c_in, cnf.c_exp, kernel_size=1, activation=act))
        layers.append(
            Conv2dNormActivation(
                cnf.c_exp, cnf.c_exp, cnf.kernel, cnf.stride, groups=cnf.c_exp, activation=act
            )
        )
        if cnf.use_se:
            layers.append(SqueezeExcitation(cnf.c_exp, make_divisible(cnf.c_exp // 4)))
        layers.append(Conv2dNormActivation(cnf.c_exp, cnf.c_out, kernel_size=1, activation=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out += x
        return out


def mobilenet_v3_small_features() -> nn.Sequential:
    """torchvision's ``mobilenet_v3_small().features``: (B, 3, S, S) -> (B, 576, S/32, S/32), 13 stages."""
    table = MOBILENET_V3_SMALL
    c_last = 6 * table[-1].c_out  # 576
    features = nn.Sequential(
        Conv2dNormActivation(3, table[0].c_in, kernel_size=3, stride=2, activation=nn.Hardswish),
        *(InvertedResidual(cnf) for cnf in table),
        Conv2dNormActivation(table[-1].c_out, c_last, kernel_size=1, activation=nn.Hardswish),
    )
    # torchvision's classifier: its default init, then its normal_ init after the features', drawn and
    # dropped so that a seeded build gives torchvision's numbers (and every module built after it too)
    head = [
        nn.Linear(c_last, MOBILENET_V3_SMALL_LAST_CHANNEL),
        nn.Linear(MOBILENET_V3_SMALL_LAST_CHANNEL, 1000),
    ]
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in head:
        nn.init.normal_(m.weight, 0, 0.01)
    return features
