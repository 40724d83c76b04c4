"""2-D building blocks of the mobile networks (the ``lean`` family): MobileNetV2's inverted residual.

An inverted residual expands its input ``expansion`` times with a 1×1 convolution, filters each
expanded channel with a depthwise 3×3 convolution, and projects back with a linear 1×1 convolution
(Sandler et al., 2018). The expansion is the "channel boost" that lets a narrow tensor (a volume of
D/4 disparity channels) be filtered in a wide space at the price of cheap depthwise arithmetic.
ReLU6 keeps activations bounded, which int8 quantisation relies on.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_act(
    in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Convolution (no bias) + batch norm (+ ReLU6), padded to keep the size at stride 1."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1×1 expand → depthwise 3×3 (stride 1 or 2) → linear 1×1 project; residual when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, expansion: int = 4) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_act(in_ch, hidden, kernel=1))
        layers.append(conv_bn_act(hidden, hidden, kernel=3, stride=stride, groups=hidden))
        layers.append(conv_bn_act(hidden, out_ch, kernel=1, act=False))
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


def inverted_residual_stage(in_ch: int, out_ch: int, blocks: int, stride: int, expansion: int) -> nn.Sequential:
    """``blocks`` inverted residuals; the first changes channels (and strides), the rest are residual."""
    layers = [InvertedResidual(in_ch, out_ch, stride, expansion)]
    layers += [InvertedResidual(out_ch, out_ch, 1, expansion) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)
