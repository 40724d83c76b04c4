"""Learned ×k upsampling of a low-resolution disparity map (RAFT's convex upsampling).

Each full-resolution pixel is a convex combination of the 3×3 low-resolution disparities around
its cell, with weights predicted from image features. Unlike bilinear upsampling it keeps depth
edges sharp (a pixel takes its value from the side of the edge it belongs to), and unlike a
full-resolution refinement network it costs one 3×3 convolution at low resolution. The 3×3
neighbourhood is gathered by nine shifted slices (no ``unfold``), which every runtime exports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.models.mobile_blocks import conv_bn_act


def neighbourhood3x3(x: torch.Tensor) -> torch.Tensor:
    """B×1×h×w → B×9×h×w: each cell's 3×3 neighbours (edges replicated), row-major."""
    height, width = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return torch.cat([padded[..., i : i + height, j : j + width] for i in range(3) for j in range(3)], dim=1)


def convex_combine(low: torch.Tensor, weights: torch.Tensor, factor: int) -> torch.Tensor:
    """B×h×w values and B×(9·k²)×h×w logits → B×(k·h)×(k·w): softmax over the 9 neighbours per subpixel."""
    batch, _, height, width = weights.shape
    # One Softmax op over the 9 neighbours. (Written out as max, subtract, exp, sum and divide it ran
    # faster in ONNX Runtime, but ONNX Runtime's int8 quantiser then emitted an invalid graph.)
    weights = F.softmax(weights.view(batch, 9, factor * factor, height, width), dim=1)
    neighbours = neighbourhood3x3(low.unsqueeze(1)).unsqueeze(2)  # B×9×1×h×w
    subpixels = (weights * neighbours).sum(1)  # B×k²×h×w
    return F.pixel_shuffle(subpixels, factor).squeeze(1)


class ConvexUpsample(nn.Module):
    """Predicts the convex weights from low-resolution features and applies them to ``factor``·disparity."""

    def __init__(self, in_channels: int, factor: int = 4, hidden: int = 32) -> None:
        super().__init__()
        self.factor = factor
        self.mask = nn.Sequential(
            conv_bn_act(in_channels, hidden, kernel=3), nn.Conv2d(hidden, 9 * factor * factor, kernel_size=1)
        )

    def forward(self, disparity: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """B×h×w disparity in low-resolution pixels → B×(k·h)×(k·w) in full-resolution pixels."""
        return convex_combine(disparity * self.factor, self.mask(features), self.factor)
