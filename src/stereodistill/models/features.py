"""The ResNet-style 2-D feature extractor the PSMNet/GwcNet family shares.

Three 3×3 convolutions (the first with stride 2), then four stages of basic blocks: ``layer1`` at
1/2, ``layer2`` (stride 2) to 1/4, ``layer3`` and the dilated ``layer4``. The number of blocks per
stage is the knob that separates a teacher (3, 16, 3, 3) from the DSNet student (2, 4, 1, 1).
Architectures subclass it to add their own heads (PSMNet's spatial pyramid pooling, GwcNet's
concatenation features) under the module names of their releases.
"""

from __future__ import annotations

import torch
from torch import nn

from stereodistill.models.blocks import conv_bn, make_layer


class ResNetFeatures(nn.Module):
    """Returns ``{"s2": layer1 output (32 ch, 1/2), "l2", "l3", "l4": the 1/4 stages,
    "gwc": cat(l2, l3, l4) (64 + 128 + 128 = 320 ch)}``; ``"s2_first"`` is the stem's output."""

    def __init__(self, blocks: tuple[int, int, int, int] = (3, 16, 3, 3)) -> None:
        super().__init__()
        self.firstconv = nn.Sequential(
            conv_bn(3, 32, 3, 2, 1, 1),
            nn.ReLU(inplace=True),
            conv_bn(32, 32, 3, 1, 1, 1),
            nn.ReLU(inplace=True),
            conv_bn(32, 32, 3, 1, 1, 1),
            nn.ReLU(inplace=True),
        )
        self.layer1 = make_layer(32, 32, blocks[0], 1, 1, 1)
        self.layer2 = make_layer(32, 64, blocks[1], 2, 1, 1)
        self.layer3 = make_layer(64, 128, blocks[2], 1, 1, 1)
        self.layer4 = make_layer(128, 128, blocks[3], 1, 1, 2)

    def backbone(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stem = self.firstconv(x)
        s2 = self.layer1(stem)
        l2 = self.layer2(s2)
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        return {"s2_first": stem, "s2": s2, "l2": l2, "l3": l3, "l4": l4, "gwc": torch.cat((l2, l3, l4), dim=1)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.backbone(x)
