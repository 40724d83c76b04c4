"""The building blocks CoEx and Fast-ACVNet+ share, one place each.

Fast-ACVNet+'s release builds on CoEx's code and keeps these blocks and their state-dict names: the
convolution unit (``BasicConv``: ``conv``, ``bn``), the ×2 upsample-and-concatenate step (``Conv2x``:
``conv1``, ``conv2``), the feature decoder from 1/32 back to 1/4 (``FeatUp``), the guided channel
gate (``channelAtt``: ``im_att``) and the two-convolution stems. Neither network initialises them
here: each release does so at its own point of construction (see ``init_release_weights`` in
``blocks``), and the order of those random draws is kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.models.blocks import Conv3d

#: The releases' activation after a convolution + BN unit (``nn.LeakyReLU()``'s default slope).
LEAKY_SLOPE = 0.01


class ConvUnit(nn.Module):
    """Convolution (no bias) → batch norm → LeakyReLU(0.01), either of the last two optional: the
    releases' ``BasicConv``. Where the release switches its batch norm off, it still builds one
    (never called); ours leaves it out, and the networks' imports drop its tensors."""

    def __init__(self, conv: nn.Module, channels: int, norm: bool = True, act: bool = True) -> None:
        super().__init__()
        self.conv = conv
        is_3d = isinstance(conv, nn.Conv3d | nn.ConvTranspose3d)
        self.bn = (nn.BatchNorm3d if is_3d else nn.BatchNorm2d)(channels) if norm else None
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.leaky_relu(x, LEAKY_SLOPE) if self.act else x


def conv2d(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> ConvUnit:
    """2-D conv unit, padded to keep the size at stride 1."""
    return ConvUnit(nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False), out_ch)


def deconv2d(in_ch: int, out_ch: int) -> ConvUnit:
    """×2 transposed convolution (kernel 4, padding 1)."""
    return ConvUnit(nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False), out_ch)


def conv3d(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> ConvUnit:
    """3-D conv unit (oneDNN-routed for batch-1 inference, see ``blocks.Conv3d``)."""
    return ConvUnit(Conv3d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False), out_ch)


def deconv3d(in_ch: int, out_ch: int, norm: bool = True, act: bool = True) -> ConvUnit:
    """×2 transposed 3-D convolution (kernel 4, padding 1) along disparity, height and width; the
    releases' one-logit heads have neither batch norm nor activation."""
    conv = nn.ConvTranspose3d(in_ch, out_ch, 4, stride=2, padding=1, bias=False)
    return ConvUnit(conv, out_ch, norm=norm, act=act)


def stem(in_ch: int, out_ch: int, stride: int = 2) -> nn.Sequential:
    """A 3×3 conv unit (strided), then a 3×3 conv, batch norm and plain ReLU: the releases' image
    stems ``stem_2``/``stem_4`` (a shallow second view of the image that keeps the fine detail the
    backbone has pooled away) and, at stride 1, the upsampling branch's ``spx_4``."""
    return nn.Sequential(
        conv2d(in_ch, out_ch, 3, stride=stride),
        nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(),
    )


def resize_like(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Nearest resampling to ``target``'s spatial size where a stride-2 round trip missed it
    (odd sizes): what the releases do, and a no-op otherwise."""
    size = target.shape[2:]
    return x if x.shape[2:] == size else F.interpolate(x, size=tuple(size), mode="nearest")


class UpConcat(nn.Module):
    """Upsample ×2 by a transposed conv unit to ``out_ch``, concatenate the finer map (``out_ch``
    channels), fuse with a 3×3 unit to 2·``out_ch``: the releases' ``Conv2x`` with
    ``deconv=True, concat=True``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = deconv2d(in_ch, out_ch)
        self.conv2 = conv2d(2 * out_ch, 2 * out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.cat((resize_like(self.conv1(x), skip), skip), dim=1))


class FeatureDecoder(nn.Module):
    """MobileNetV2's 1/4…1/32 maps (``channels``) → [1/4 (48 ch), 1/8 (64), 1/16 (192), 1/32 (160)]
    by three :class:`UpConcat` steps and a 3×3 unit at 1/4: the releases' ``FeatUp``."""

    def __init__(self, channels: tuple[int, ...] = (24, 32, 96, 160)) -> None:
        super().__init__()
        c4, c8, c16, c32 = channels
        self.deconv32_16 = UpConcat(c32, c16)
        self.deconv16_8 = UpConcat(2 * c16, c8)
        self.deconv8_4 = UpConcat(2 * c8, c4)
        self.conv4 = conv2d(2 * c4, 2 * c4)

    def forward(self, pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
        x4, x8, x16, x32 = pyramid
        x16 = self.deconv32_16(x32, x16)
        x8 = self.deconv16_8(x16, x8)
        x4 = self.conv4(self.deconv8_4(x8, x4))
        return [x4, x8, x16, x32]


class ChannelGate(nn.Module):
    """Scales each channel of a B×C×D×H×W volume by a sigmoid gate computed per pixel from the left
    image's features, one gate for all disparities: CoEx's guided cost excitation, the releases'
    ``channelAtt``."""

    def __init__(self, volume_channels: int, image_channels: int) -> None:
        super().__init__()
        self.im_att = nn.Sequential(
            conv2d(image_channels, image_channels // 2, kernel=1), nn.Conv2d(image_channels // 2, volume_channels, 1)
        )

    def forward(self, volume: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.im_att(image)).unsqueeze(2) * volume
