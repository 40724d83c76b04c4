"""A MobileNetV2-style feature pyramid in plain PyTorch, with a light top-down path to 1/4.

Stem (3×3, stride 2) and one inverted residual at 1/2, then inverted-residual stages down to 1/4,
1/8 and 1/16. A top-down path (bilinear ×2, concatenation with the lateral map, one inverted
residual) brings the 1/16 context back to 1/8 and 1/4, where the matching features are read, so the
1/4 features see a large receptive field at the cost of a few depthwise convolutions. The 1/4, 1/8
and 1/16 maps of the left view also guide the cost aggregation (``guides``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.models.mobile_blocks import InvertedResidual, conv_bn_act, inverted_residual_stage


class MobileFeatures(nn.Module):
    """Returns ``{"s2": stem (1/2), "s4": matching features (1/4), "g4", "g8", "g16": guides}``.

    ``channels`` are the widths at 1/2, 1/4, 1/8 and 1/16; ``blocks`` the inverted residuals of the
    1/4, 1/8 and 1/16 stages; ``out_channels`` the width of the matching features at 1/4.
    """

    def __init__(
        self,
        channels: tuple[int, int, int, int] = (16, 24, 32, 64),
        blocks: tuple[int, int, int] = (2, 3, 3),
        out_channels: int = 48,
        expansion: int = 4,
    ) -> None:
        super().__init__()
        c2, c4, c8, c16 = channels
        self.stem = nn.Sequential(conv_bn_act(3, c2, 3, stride=2), InvertedResidual(c2, c2, 1, expansion=1))
        self.down4 = inverted_residual_stage(c2, c4, blocks[0], 2, expansion)
        self.down8 = inverted_residual_stage(c4, c8, blocks[1], 2, expansion)
        self.down16 = inverted_residual_stage(c8, c16, blocks[2], 2, expansion)
        self.up8 = nn.Sequential(conv_bn_act(c16 + c8, c8, kernel=1), InvertedResidual(c8, c8, 1, expansion))
        self.up4 = nn.Sequential(conv_bn_act(c8 + c4, out_channels, kernel=1))
        self.out4 = InvertedResidual(out_channels, out_channels, 1, expansion)
        self.channels = (c2, out_channels, c8, c16)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s2 = self.stem(x)
        s4 = self.down4(s2)
        s8 = self.down8(s4)
        s16 = self.down16(s8)
        t8 = self.up8(torch.cat((F.interpolate(s16, size=s8.shape[-2:], mode="bilinear", align_corners=False), s8), 1))
        t4 = self.up4(torch.cat((F.interpolate(t8, size=s4.shape[-2:], mode="bilinear", align_corners=False), s4), 1))
        return {"s2": s2, "s4": self.out4(t4), "g4": t4, "g8": t8, "g16": s16}
