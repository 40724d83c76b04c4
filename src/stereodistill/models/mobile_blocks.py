"""2-D building blocks of the mobile networks (the ``lean`` family): MobileNetV2's inverted residual.

An inverted residual expands its input ``expansion`` times with a 1×1 convolution, filters each
expanded channel with a depthwise 3×3 convolution, and projects back with a linear 1×1 convolution
(Sandler et al., 2018). The expansion is the "channel boost" that lets a narrow tensor (a volume of
D/4 disparity channels) be filtered in a wide space at the price of cheap depthwise arithmetic.
ReLU6 keeps activations bounded, which int8 quantisation relies on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.models.blocks import onednn_inference


class ConvBNAct(nn.Module):
    """Convolution (no bias) + batch norm (+ ReLU6), padded to keep the size at stride 1.

    In eval mode the batch norm is folded into the convolution's weights and bias on the fly (a few
    hundred multiplies on the weights), so inference runs one convolution instead of a convolution
    and a normalisation pass over the activations: about 15 % of a ``lean`` forward on a CPU. The
    parameters and state-dict keys stay those of the two modules.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolution's weight and bias with the batch norm's running statistics folded in."""
        scale = self.bn.weight * torch.rsqrt(self.bn.running_var + self.bn.eps)
        weight = self.conv.weight * scale.view(-1, 1, 1, 1)
        return weight, self.bn.bias - self.bn.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.bn.running_var is None:
            return self.act(self.bn(self.conv(x)))
        weight, bias = self.folded()
        conv = self.conv
        if onednn_inference(x):
            # PyTorch sends 1×1 convolutions to a GEMM path that copies channels-last tensors; oneDNN
            # takes them as they are (~20 % faster per convolution here).
            return self.act(torch.mkldnn_convolution(x, weight, bias, conv.padding, conv.stride, (1, 1), conv.groups))
        return self.act(F.conv2d(x, weight, bias, conv.stride, conv.padding, 1, conv.groups))


def conv_bn_act(
    in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True
) -> ConvBNAct:
    """See :class:`ConvBNAct`."""
    return ConvBNAct(in_ch, out_ch, kernel, stride, groups, act)


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
