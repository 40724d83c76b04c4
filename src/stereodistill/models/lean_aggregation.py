"""Cost aggregation in 2-D: the disparity axis of a 1/4-resolution volume kept as channels.

A 3-D hourglass filters a C×D×H×W volume with dense 3×3×3 kernels; on a CPU that is where the
DSNet-style networks spend their time. Here the B×G×D×H×W group-wise correlation volume
(D = max_disp/4) is filtered as a 2-D map with G·D channels, by inverted residuals in an
encoder-decoder at 1/4, 1/8 and 1/16 (the aggregation of LightStereo). Image features guide it
twice: they enter with the volume (so edges and texture are known where matching is ambiguous), and
at every level they excite the aggregated channels through a sigmoid gate computed from the left
view (CoEx's guided cost excitation, here in 2-D). The output is one logit per disparity at 1/4,
and the 1/4 features from which the upsampling weights are computed; :class:`MatchingScore` adds
the one part that treats every disparity alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.models.mobile_blocks import InvertedResidual, conv_bn_act, inverted_residual_stage


class Excitation(nn.Module):
    """``x · sigmoid(conv1×1(guide))``: image features decide which aggregated channels pass."""

    def __init__(self, guide_ch: int, channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(guide_ch, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.gate(guide))


class MatchingScore(nn.Module):
    """B×G×D×h×w group-wise volume → B×D×h×w: one 3×3 filter over the groups, shared by every disparity.

    The aggregation's 2-D convolutions give every disparity channel its own weights, so they must
    learn the same matching rule D times over; this path applies one rule at every disparity
    (a 1×3×3 3-D convolution, written as a grouped 2-D one) and is added to the aggregation's
    logits, so a network starts from a sensible winner-take-all of its features and learns from
    the first step. Initialised to the mean over groups (the plain correlation).

    ``extra_groups`` more B×D×h×w maps (``lean``'s census cost) may be scored beside the volume, as
    if they were more groups of it, without copying the volume to append them.
    """

    def __init__(self, groups: int, extra_groups: int = 0) -> None:
        super().__init__()
        total = groups + extra_groups
        weight = torch.zeros(1, total, 3, 3)
        weight[..., 1, 1] = 1.0 / total
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, volume: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        batch, groups, disparities, height, width = volume.shape
        per_disparity = volume.transpose(1, 2).reshape(batch, disparities * groups, height, width)
        score = F.conv2d(
            per_disparity,
            self.weight[:, :groups].repeat(disparities, 1, 1, 1),
            self.bias.repeat(disparities),
            padding=1,
            groups=disparities,
        )
        for index, more in enumerate(extra, start=groups):
            kernel = self.weight[:, index : index + 1].repeat(disparities, 1, 1, 1)
            score = score + F.conv2d(more, kernel, padding=1, groups=disparities)
        return score


class VolumeAggregation2d(nn.Module):
    """B×V×h×w volume (V: groups × disparities) + left guides (1/4, 1/8, 1/16) → (B×D×h×w logits, B×C×h×w features).

    ``channels`` is the width at 1/4 (×2 at 1/8 and 1/16); ``blocks`` the inverted residuals per
    encoder level; ``expansion`` their channel boost.
    """

    def __init__(
        self,
        volume_channels: int,
        disparities: int,
        guide_channels: tuple[int, int, int],
        channels: int = 32,
        blocks: int = 2,
        expansion: int = 4,
    ) -> None:
        super().__init__()
        g4, g8, g16 = guide_channels
        c1, c2, c3 = channels, 2 * channels, 2 * channels
        self.entry = conv_bn_act(volume_channels + g4, c1, kernel=1)
        self.excite4 = Excitation(g4, c1)
        self.level4 = inverted_residual_stage(c1, c1, blocks, 1, expansion)
        self.level8 = inverted_residual_stage(c1, c2, blocks, 2, expansion)
        self.excite8 = Excitation(g8, c2)
        self.level16 = inverted_residual_stage(c2, c3, blocks, 2, expansion)
        self.excite16 = Excitation(g16, c3)
        self.lateral8 = conv_bn_act(c3, c2, kernel=1)
        self.decode8 = InvertedResidual(c2, c2, 1, expansion)
        self.lateral4 = conv_bn_act(c2, c1, kernel=1)
        self.decode4 = InvertedResidual(c1, c1, 1, expansion)
        self.head = nn.Conv2d(c1, disparities, kernel_size=3, padding=1)

    def forward(
        self,
        volume: torch.Tensor,
        guide4: torch.Tensor,
        guide8: torch.Tensor,
        guide16: torch.Tensor,
        *extra: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``extra``: more volume channels (``lean``'s census cost), entering after the volume's."""
        x4 = self.level4(self.excite4(self.entry(torch.cat((volume, *extra, guide4), 1)), guide4))
        x8 = self.excite8(self.level8(x4), guide8)
        x16 = self.excite16(self.level16(x8), guide16)
        y8 = self.decode8(x8 + _up(self.lateral8(x16), x8))
        y4 = self.decode4(x4 + _up(self.lateral4(y8), x4))
        return self.head(y4), y4


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)
