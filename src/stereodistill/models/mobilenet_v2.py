"""MobileNetV2 (width 1.0) in plain PyTorch, laid out as timm's ``mobilenetv2_100``.

CoEx, Fast-ACVNet+ and LightStereo take their feature pyramid from timm's MobileNetV2 (Sandler et
al., 2018); the project cannot depend on timm, so the trunk is rebuilt here, once for the three,
with timm's module names (``conv_stem``, ``bn1``; per block ``conv_pw``/``bn1``,
``conv_dw``/``bn2``, ``conv_pwl``/``bn3``) so that a release's state dict loads key for key. The
three releases keep the stem and stages 0–5 (the 320-channel last stage is never attached, so it is
neither built nor counted) and regroup timm's ``blocks`` as ``block0`` … ``block4``, stages 3 and 4
sharing ``block3`` (1/16); how they regroup them decides their keys (:data:`LAYOUTS`). Unlike
``mobile_blocks`` (the project's own students) the batch norms stay separate modules and nothing is
folded: the point here is to compute what timm computes, in the same order.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

#: MobileNetV2's stages: (output channels, blocks, stride of the first block, expansion). Stage 0 is
#: timm's depthwise-separable block; the last one (320 channels) is not needed for a 1/32 pyramid.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (16, 1, 1, 1),
    (24, 2, 2, 6),
    (32, 3, 2, 6),
    (64, 4, 2, 6),
    (96, 3, 1, 6),
    (160, 3, 2, 6),
    (320, 1, 1, 6),
)
STEM_CHANNELS = 32
#: Which of :data:`STAGES` each ``blockN`` holds: one per output stride, 1/2 … 1/32.
GROUPS: tuple[tuple[int, ...], ...] = ((0,), (1,), (2,), (3, 4), (5,))

Layout = Literal["rewrapped", "indexed"]
#: How a release takes its ``blockN`` from timm's ``blocks``, and the keys that follow:
#: ``rewrapped`` (CoEx, Fast-ACVNet+): ``nn.Sequential(*blocks[a:b])``, stages numbered from 0
#: (``block0.0.0.conv_dw``, ``block3.1.2.bn3``); ``indexed`` (LightStereo): ``blocks[i]`` itself for
#: one stage and the slice ``blocks[3:5]``, which keeps timm's indices (``block0.0.conv_dw``,
#: ``block3.4.2.bn3``).
LAYOUTS: tuple[Layout, ...] = ("rewrapped", "indexed")


def depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False)


def pointwise(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, bias=False)


class SeparableBlock(nn.Module):
    """Depthwise 3×3 → BN → ReLU6 → pointwise 1×1 → BN (linear), residual when the shape is kept:
    timm's ``DepthwiseSeparableConv`` as stage 0 uses it (no squeeze-excitation)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = depthwise(in_ch, stride)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv_pw = pointwise(in_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(F.relu6(self.bn1(self.conv_dw(x)))))
        return y + x if self.residual else y


class InvertedResidual(nn.Module):
    """Expand 1×1 → depthwise 3×3 (strided) → linear project 1×1, each with its BN; ReLU6 after the
    first two; residual when the shape is kept."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.conv_pw = pointwise(in_ch, hidden)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv_dw = depthwise(hidden, stride)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv_pwl = pointwise(hidden, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn1(self.conv_pw(x)))
        y = F.relu6(self.bn2(self.conv_dw(y)))
        y = self.bn3(self.conv_pwl(y))
        return y + x if self.residual else y


def mobilenet_v2_stage(index: int, in_ch: int) -> nn.Sequential:
    """Stage ``index`` of :data:`STAGES` (its first block strides and changes the width)."""
    out_ch, blocks, stride, expansion = STAGES[index]
    layers: list[nn.Module] = []
    for k in range(blocks):
        block_in, block_stride = (in_ch, stride) if k == 0 else (out_ch, 1)
        if expansion == 1:
            layers.append(SeparableBlock(block_in, out_ch, block_stride))
        else:
            layers.append(InvertedResidual(block_in, out_ch, block_stride, expansion))
    return nn.Sequential(*layers)


def stage_group(stages: dict[int, nn.Sequential], layout: Layout) -> nn.Sequential:
    """One ``blockN`` of ``stages`` (timm index → stage), keyed as the release's ``layout`` keys it."""
    if layout == "rewrapped":
        return nn.Sequential(*stages.values())
    if len(stages) == 1:
        return next(iter(stages.values()))
    return nn.Sequential(OrderedDict((str(index), stage) for index, stage in stages.items()))


class MobileNetV2(nn.Module):
    """Stem and stages 0–5 of MobileNetV2 as ``block0`` (1/2, 16 ch), ``block1`` (1/4, 24),
    ``block2`` (1/8, 32), ``block3`` (stages 3 and 4, 1/16, 96), ``block4`` (1/32, 160), keyed as
    ``layout`` says (see :data:`LAYOUTS`). Returns the maps at 1/2 … 1/32.

    Built with PyTorch's default initialisation; :meth:`init_timm_weights` is timm's, for the releases
    that start from it.
    """

    #: Output channels at 1/2, 1/4, 1/8, 1/16, 1/32.
    channels: ClassVar[tuple[int, ...]] = tuple(STAGES[group[-1]][0] for group in GROUPS)

    def __init__(self, layout: Layout = "rewrapped") -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        width = STEM_CHANNELS
        for n, group in enumerate(GROUPS):
            stages = {}
            for index in group:
                stages[index] = mobilenet_v2_stage(index, width)
                width = STAGES[index][0]
            self.add_module(f"block{n}", stage_group(stages, layout))

    def init_timm_weights(self) -> None:
        """timm's initialisation of an untrained MobileNetV2: N(0, 2/fan-out) convolutions (fan-out per
        group), identity batch norms. (The releases start from timm's ImageNet weights, which this
        project does not download.) Only the trunk's modules, should a subclass add others."""
        trunk = (self.conv_stem, self.bn1, *(self.get_submodule(f"block{n}") for n in range(len(GROUPS))))
        for module in (m for part in trunk for m in part.modules()):
            if isinstance(module, nn.Conv2d):
                fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image → the maps at 1/2, 1/4, 1/8, 1/16, 1/32 (:attr:`channels`)."""
        x = self.block0(F.relu6(self.bn1(self.conv_stem(x))))
        pyramid = [x]
        for block in (self.block1, self.block2, self.block3, self.block4):
            pyramid.append(block(pyramid[-1]))
        return pyramid
