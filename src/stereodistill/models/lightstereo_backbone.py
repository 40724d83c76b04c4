"""LightStereo's feature extractor: a MobileNetV2-100 trunk and a top-down path back to 1/4.

The release takes the trunk from ``timm.create_model("mobilenetv2_100", features_only=True)`` and
keeps its stem and six of its seven stages; ours is :class:`~stereodistill.models.mobilenet_v2.MobileNetV2`
under timm's names, its modules directly in the backbone (``backbone.conv_stem``), so the release's
checkpoints load key for key. The release takes ``block0`` … ``block4`` from timm's stages by
indexing (``blocks[0]``, and the slice ``blocks[3:5]`` for ``block3``, which keeps timm's indices),
hence keys such as ``block0.0.conv_dw.weight`` and ``block3.4.0.conv_pw.weight`` (layout
``indexed``). Like the release, the trunk keeps PyTorch's initialisation (the release then loads
timm's ImageNet weights, which this project does not download).

Three top-down merges (transposed conv up ×2, concatenation with the lateral map, 3×3 conv) bring
the 1/32 map back to 1/4, where a 3×3 convolution with replicated borders and instance
normalisation gives the 24-channel matching features.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from stereodistill.models.mobilenet_v2 import MobileNetV2

#: Output channels of the trunk stages kept by the release: 1/2, 1/4, 1/8, 1/16, 1/32.
TRUNK_CHANNELS = MobileNetV2.channels
#: Channels of the matching features (1/4) and of the 1/8 and 1/16 pyramid levels the aggregation reads.
PYRAMID_CHANNELS = (24, 32, 96)

Factory = Callable[[int], nn.Module]


class ConvUnit(nn.Module):
    """Convolution (or transposed convolution), then optional norm and activation, under ``block``.

    The release wraps every such triple in a module whose ``Sequential`` is called ``block``; its
    state-dict keys (``refine_1.0.block.0.weight``) depend on it.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        padding: int = 0,
        norm: Factory | None = None,
        act: Callable[[], nn.Module] | None = None,
        transposed: bool = False,
        **conv_options: str,
    ) -> None:
        super().__init__()
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        layers: list[nn.Module] = [conv(in_ch, out_ch, kernel, stride, padding, bias=False, **conv_options)]
        if norm is not None:
            layers.append(norm(out_ch))
        if act is not None:
            layers.append(act())
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


leaky_02 = partial(nn.LeakyReLU, negative_slope=0.2, inplace=True)


class TopDownMerge(nn.Module):
    """Upsample the coarser map ×2 (4×4 transposed conv), stack it after the finer one, fuse by 3×3."""

    def __init__(self, coarse_ch: int, fine_ch: int) -> None:
        super().__init__()
        self.deconv = ConvUnit(coarse_ch, fine_ch, 4, 2, 1, nn.BatchNorm2d, leaky_02, transposed=True)
        self.conv = ConvUnit(2 * fine_ch, fine_ch, 3, 1, 1, nn.BatchNorm2d, leaky_02)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((fine, self.deconv(coarse)), dim=1))


class LightStereoBackbone(MobileNetV2):
    """Image → ``s2`` (trunk at 1/2, 16 ch), ``s4`` (matching features, 24 ch), ``s8`` (32 ch),
    ``s16`` (96 ch) and ``s32`` (trunk at 1/32, 160 ch).

    The trunk is this module's base class, not a child: the release's keys have no level for it.
    """

    def __init__(self) -> None:
        super().__init__(layout="indexed")
        _, c4, c8, c16, c32 = TRUNK_CHANNELS
        self.fpn_layer4 = TopDownMerge(c32, c16)
        self.fpn_layer3 = TopDownMerge(c16, c8)
        self.fpn_layer2 = TopDownMerge(c8, c4)
        self.out_conv = ConvUnit(c4, c4, 3, 1, 1, nn.InstanceNorm2d, padding_mode="replicate")

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        s2, c4, c8, c16, s32 = super().forward(image)
        s16 = self.fpn_layer4(s32, c16)
        s8 = self.fpn_layer3(s16, c8)
        s4 = self.out_conv(self.fpn_layer2(s8, c4))
        return {"s2": s2, "s4": s4, "s8": s8, "s16": s16, "s32": s32}
