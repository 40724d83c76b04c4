"""Full-resolution refinement guided by the images (StereoNet's and StereoDRNet's idea, made cheap).

A disparity estimated at 1/4 and upsampled cannot, however good at 1/4, place a depth edge or a
thin structure more finely than its cells, nor use the pixels' own photometric evidence. Here the
right image is warped to the left view by the upsampled disparity; the left image, that warp's
photometric error and the disparity itself enter a few depthwise-separable residual blocks with
growing dilation at full resolution, which predict a residual. Where the warp matches, the residual
learns to stay near zero; where it does not (a wrong surface bled across an edge, a hole filled in)
the error says so at the pixel. Depthwise-separable convolutions keep the cost to about 1,000
multiply-adds a pixel for the entry convolution and 800 for each block (4,352 in all with 4
blocks). The head starts at zero: an untrained refinement is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.models.mobile_blocks import conv_bn_act

#: Dilations of the residual blocks, in order; ``blocks`` takes the first ones.
DILATIONS = (1, 2, 4, 8, 1, 1)


def warp_right(right: torch.Tensor, disparity: torch.Tensor) -> torch.Tensor:
    """B×C×H×W right view sampled at (x − d, y) for the B×H×W left-view disparity (bilinear, border
    replicated): the right view as the left camera would see it if the disparity were true."""
    batch, _, height, width = right.shape
    xs = torch.arange(width, dtype=right.dtype, device=right.device).view(1, 1, width)
    ys = torch.arange(height, dtype=right.dtype, device=right.device).view(1, height, 1)
    x = (xs - disparity) * (2.0 / max(width - 1, 1)) - 1.0
    y = (ys * (2.0 / max(height - 1, 1)) - 1.0).expand(batch, height, width)
    grid = torch.stack((x, y), dim=-1)
    return F.grid_sample(right, grid, mode="bilinear", padding_mode="border", align_corners=True)


class SeparableResidual(nn.Module):
    """Depthwise 3×3 (dilated) → pointwise 1×1, twice, plus the input."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()

        def separable(act: bool) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=False),
                conv_bn_act(channels, channels, kernel=1, act=act),
            )

        self.body = nn.Sequential(separable(True), separable(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + self.body(x))


class GuidedRefinement(nn.Module):
    """(B×H×W disparity, B×3×H×W left, B×3×H×W right) → refined B×H×W disparity in [0, upper]."""

    def __init__(self, upper: float, channels: int = 16, blocks: int = 4, dilations: Sequence[int] = DILATIONS) -> None:
        super().__init__()
        if not 1 <= blocks <= len(dilations):
            raise ValueError(f"blocks must be 1–{len(dilations)}, got {blocks}")
        self.upper = float(upper)
        self.entry = conv_bn_act(7, channels, kernel=3)
        self.body = nn.Sequential(*(SeparableResidual(channels, d) for d in dilations[:blocks]))
        self.head = nn.Conv2d(channels, 1, kernel_size=3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, disparity: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        error = left - warp_right(right, disparity)
        x = torch.cat((disparity.unsqueeze(1) / self.upper, left, error), 1)
        x = self.body(self.entry(x.contiguous(memory_format=torch.channels_last)))
        return (disparity + self.head(x).squeeze(1)).clamp(0.0, self.upper)
