"""CFNet (Shen et al., "Cascade and Fused Cost Volume for Robust Stereo Matching", CVPR 2021).

The network the release builds as ``CFNet(maxdisp)`` (gallenszl/CFNet, ``models/cfnet.py``, i.e.
``cfnet(maxdisp, use_concat_volume=True)``), every activation a Mish:

1. **Features.** A ResNet encoder of one basic block per stage (``layer2`` at 1/2 … ``layer6`` at
   1/32), ICNet-style pyramid pooling on the 1/32 map (``pyramid_pooling``: four pooled paths summed
   into the map), and a U-Net decoder back to 1/2 (``upconv6``/``iconv5`` … ``iconv2``). 1×1 heads
   give group-wise features ``gw2``…``gw6`` and 12-channel concatenation features ``concat3``…``6``
   (6 channels for ``concat2``).
2. **Fused cost volume.** Group-wise correlation (40 groups) + concatenation volumes at 1/8, 1/16 and
   1/32 over D/8, D/16 and D/32 disparities, each pre-aggregated (``dres0``/``dres1``,
   ``dres0_5``/``dres1_5``, ``dres0_6``/``dres1_6``), fused coarse-into-fine by ``combine1`` (an
   hourglass whose encoder concatenates the coarser volumes) and refined by the hourglass ``dres3``;
   ``classif2`` gives the distribution over D/8 disparities at 1/8.
3. **Cascade.** From a distribution, mean ∓ ((γ + 1)·σ + β) (σ its standard deviation, γ and β
   learned) is upsampled to the next scale, widened to the stage's minimum width, and sampled at
   ``count + 2`` integer disparity hypotheses per pixel (the range's floor, ``count`` uniform
   samples truncated, its ceiling). The right features are warped to each hypothesis; group-wise
   correlation, the concatenation of both views and the hypothesis itself form the stage's volume,
   which two 3-D blocks and two hourglasses aggregate; a softmax over the hypotheses regresses the
   disparity. Stage 1/4 (``*_s3``) takes 14 + 2 hypotheses (``gw3``, 40 groups), stage 1/2
   (``*_s2``) 10 + 2 (``gw2``, 20 groups). The hypotheses are integers, so no gradient reaches the
   range: as in the release, ``gamma_*``/``beta_*`` get none and the range is computed without one.

Training returns the release's nine predictions (1/8: ``classif0``, ``classif1``, ``classif2``;
1/4 and 1/2: the pre-aggregation head ``confidence_classif0_*``, the first hourglass's
``confidence_classifmid_*`` and the final ``confidence_classif1_*``), eval only the 1/2 stage's.
The 1/8 heads regress over D/8 bins; ``classif0``/``classif1`` are first upsampled trilinearly to
D×H×W (corner-aligned, as the release does), every other prediction is upsampled bilinearly
(corner-aligned) times its scale.

Taps (shapes for a B×3×H×W input, D = ``max_disp``):

- ``feat.{left,right}.s2``: ``iconv2``'s output, the decoder's 64-ch feature at 1/2 that the 1/2
  matching features are projected from (B×64×H/2×W/2).
- ``feat.{left,right}.s4``: ``gw3``, the 160-ch group-wise matching feature at 1/4 (B×160×H/4×W/4).
- ``volume.cost``: the finest group-wise correlation volume of the fused cost volume, **at 1/8**
  (B×40×D/8×H/8×W/8); CFNet builds no full-range volume at 1/4.
- ``volume.agg.0/1/2``: the 1/8 aggregation stages, ``dres1(dres0(v)) + dres0(v)``, ``combine1``'s
  output and ``dres3``'s (B×32×D/8×H/8×W/8).
- ``logits.0/1/2``: ``classif0/1/2`` on them (B×D/8×H/8×W/8); in eval ``classif0/1`` run only when
  their tap is asked for.

Not offered: ``prob``, since the final disparity is a softmax over 12 per-pixel hypotheses at 1/2,
not a distribution over a fixed disparity axis; nor the cascade volumes as ``volume.agg.K``, whose
disparity axis is per-pixel and so not comparable with any other network's; ``volume.attention``
does not exist in CFNet.

Sides are padded to multiples of 32 (the decoder doubles 1/32 back exactly); ``max_disp`` must be a
multiple of 32 (the fused volumes' D/8, D/16 and D/32 must halve exactly), as in the release.

Differences from the release: ``combine1.combine3`` and ``combine1.redir3`` (680,448 parameters),
which it builds but never calls, are left out, and an original checkpoint's copies are dropped by
name on import; cost volumes are built without a loop over disparities; the pyramid pooling, which
fails in the release on a 1/32 map under 2 px (inputs under 64 px), pools over 1-px cells there.

Rounding: the hypotheses are integers, so the output is a discontinuous function of the weights
and the input. In float32, rounding noise of 1 ulp moves a few hypotheses, and each moved one
shifts the disparity of a neighbourhood: on random weights the release differs *from itself* by up
to 6 px between 1 and 2 CPU threads. Ours was therefore checked against the release in float64
(the same disparity to the last bit, taps to 1e-12) and in float32 given the same hypotheses (1e-4
px). It keeps the release's op-by-op Mish in inference (as fast as the fused one on CPU), while its
convolutions and volumes round as the rest of the zoo's do.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.errors import ConfigError
from stereodistill.models.base import FEATURE_TAPS, StereoModel, extract_both_views
from stereodistill.models.blocks import Conv3d, conv_bn, conv_bn_3d, init_release_weights, soft_argmin
from stereodistill.models.cost_volume import concat_volume, groupwise_correlation_volume
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS

NUM_GROUPS = 40
CONCAT_CHANNELS = 12
#: Tensors of an original checkpoint that belong to modules the release builds but never calls.
UNUSED_ORIGINAL_PREFIXES = ("combine1.combine3.", "combine1.redir3.")
#: The release's ``model_loss`` weights, in the order of its training outputs (1/8, 1/4, 1/2 stages).
CFNET_LOSS_WEIGHTS = (0.5 * 0.5, 0.5 * 0.7, 0.5 * 1.0, 1 * 0.5, 1 * 0.7, 1 * 1.0, 2 * 0.5, 2 * 0.7, 2 * 1.0)


class CascadeSpec(NamedTuple):
    """One cascade stage: module suffix, resolution divisor, feature level (``gw{level}``,
    ``concat{level}``), uniform samples (plus floor and ceiling), correlation groups, channels of
    ``concat{level}`` and aggregation width."""

    name: str
    divisor: int
    level: int
    samples: int
    groups: int
    concat_channels: int
    channels: int


CASCADE = (
    CascadeSpec("s3", 4, 3, 14, NUM_GROUPS, CONCAT_CHANNELS, 32),
    CascadeSpec("s2", 2, 2, 10, NUM_GROUPS // 2, CONCAT_CHANNELS // 2, 16),
)
CASCADE_PARTS = (
    "confidence0",
    "confidence1",
    "confidence2",
    "confidence3",
    "confidence_classif0",
    "confidence_classifmid",
    "confidence_classif1",
)


# ------------------------------------------------------------------------------------------ arithmetic
def mish(x: torch.Tensor) -> torch.Tensor:
    """Mish, x·tanh(softplus(x)). With autograd, the fused ``F.mish`` (it keeps only x for the
    backward pass); in inference the release's op chain, in place: faster than the fused kernel on
    CPU, and rounded as the release rounds."""
    if torch.is_grad_enabled() and x.requires_grad:
        return F.mish(x)
    return F.softplus(x).tanh_().mul_(x)


class Mish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mish(x)


def groupwise_correlation(left: torch.Tensor, right: torch.Tensor, groups: int) -> torch.Tensor:
    """Mean of left·right over each group's channels, along dim 1 of B×C×… tensors."""
    product = left * right
    batch, channels = product.shape[:2]
    return product.view(batch, groups, channels // groups, *product.shape[2:]).mean(2)


# ------------------------------------------------------------------------------------------ 2-D parts
def conv_bn_mish(in_ch: int, out_ch: int) -> nn.Sequential:
    """3×3 conv + BN + Mish, laid out as the release's ``Sequential(convbn(...), Mish())``."""
    return nn.Sequential(conv_bn(in_ch, out_ch, 3, 1, 1, 1), Mish())


def up_conv_bn_mish(in_ch: int, out_ch: int) -> nn.Sequential:
    """Nearest ×2 upsampling, then conv + BN + Mish (``upconvK``)."""
    return nn.Sequential(nn.Upsample(scale_factor=2), conv_bn(in_ch, out_ch, 3, 1, 1, 1), Mish())


def feature_head(in_ch: int, mid_ch: int, out_ch: int) -> nn.Sequential:
    """conv + BN + Mish, then a 1×1 projection (``gwK``, ``concatK``)."""
    return nn.Sequential(conv_bn(in_ch, mid_ch, 3, 1, 1, 1), Mish(), nn.Conv2d(mid_ch, out_ch, 1, bias=False))


class MishBasicBlock(nn.Module):
    """ResNet basic block with Mish and a projecting shortcut, no activation after the sum."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(conv_bn(in_ch, out_ch, 3, stride, 1, 1), Mish())
        self.conv2 = conv_bn(out_ch, out_ch, 3, 1, 1, 1)
        self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + self.downsample(x)


class PoolPath(nn.Module):
    """1×1 conv + BN + Mish of one pyramid path (the release's ``conv2DBatchNormRelu``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.cbr_unit = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), Mish())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbr_unit(x)


def pyramid_windows(height: int, width: int) -> list[tuple[int, int]]:
    """The release's pooling windows for an ``height``×``width`` map, path 0 first.

    Cell counts n = linspace(2, min(h, w), 4) truncated; window (h // n, w // n), finest first. A
    side shorter than n (maps under 2 px, where the release fails) gets 1-px cells.
    """
    counts = np.linspace(2, min(height, width), 4, dtype=int)
    windows = [(max(height // int(n), 1), max(width // int(n), 1)) for n in counts]
    return windows[::-1]


class PyramidPooling(nn.Module):
    """ICNet fusion: x + ¼·Σ_paths upsample(path(avgpool(x))), halved, then Mish."""

    def __init__(self, channels: int, paths: int = 4) -> None:
        super().__init__()
        self.path_module_list = nn.ModuleList(PoolPath(channels) for _ in range(paths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        fused = x
        for path, window in zip(self.path_module_list, pyramid_windows(*size), strict=True):
            pooled = path(F.avg_pool2d(x, window, stride=window))
            fused = fused + 0.25 * F.interpolate(pooled, size=size, mode="bilinear", align_corners=False)
        return mish(fused / 2.0)


class CFNetFeatures(nn.Module):
    """The release's ``feature_extraction`` (with concatenation features).

    Returns ``{"s2": iconv2 output (64 ch, 1/2), "gw2".."gw6", "concat2".."concat6"}``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.firstconv = nn.Sequential(
            conv_bn(3, 32, 3, 2, 1, 1),
            Mish(),
            conv_bn(32, 32, 3, 1, 1, 1),
            Mish(),
            conv_bn(32, 32, 3, 1, 1, 1),
            Mish(),
        )
        self.layer2 = nn.Sequential(MishBasicBlock(32, 64, 1))
        self.layer3 = nn.Sequential(MishBasicBlock(64, 128, 2))
        self.layer4 = nn.Sequential(MishBasicBlock(128, 192, 2))
        self.layer5 = nn.Sequential(MishBasicBlock(192, 256, 2))
        self.layer6 = nn.Sequential(MishBasicBlock(256, 512, 2))
        self.pyramid_pooling = PyramidPooling(512)
        self.upconv6 = up_conv_bn_mish(512, 256)
        self.iconv5 = conv_bn_mish(512, 256)
        self.upconv5 = up_conv_bn_mish(256, 192)
        self.iconv4 = conv_bn_mish(384, 192)
        self.upconv4 = up_conv_bn_mish(192, 128)
        self.iconv3 = conv_bn_mish(256, 128)
        self.upconv3 = up_conv_bn_mish(128, 64)
        self.iconv2 = conv_bn_mish(128, 64)
        self.gw2 = feature_head(64, 80, 80)
        self.gw3 = feature_head(128, 160, 160)
        self.gw4 = feature_head(192, 160, 160)
        self.gw5 = feature_head(256, 320, 320)
        self.gw6 = feature_head(512, 320, 320)
        self.concat2 = feature_head(64, 32, CONCAT_CHANNELS // 2)
        self.concat3 = feature_head(128, 128, CONCAT_CHANNELS)
        self.concat4 = feature_head(192, 128, CONCAT_CHANNELS)
        self.concat5 = feature_head(256, 128, CONCAT_CHANNELS)
        self.concat6 = feature_head(512, 128, CONCAT_CHANNELS)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        l2 = self.layer2(self.firstconv(x))
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        l5 = self.layer5(l4)
        l6 = self.pyramid_pooling(self.layer6(l5))
        decoded = {6: l6}
        decoded[5] = self.iconv5(torch.cat((l5, self.upconv6(l6)), dim=1))
        decoded[4] = self.iconv4(torch.cat((l4, self.upconv5(decoded[5])), dim=1))
        decoded[3] = self.iconv3(torch.cat((l3, self.upconv4(decoded[4])), dim=1))
        decoded[2] = self.iconv2(torch.cat((l2, self.upconv3(decoded[3])), dim=1))
        out = {"s2": decoded[2]}
        for k, feature in decoded.items():
            out[f"gw{k}"] = getattr(self, f"gw{k}")(feature)
            out[f"concat{k}"] = getattr(self, f"concat{k}")(feature)
        return out


# ------------------------------------------------------------------------------------------ 3-D parts
def conv_bn_mish_3d(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(conv_bn_3d(in_ch, out_ch, 3, stride, 1), Mish())


def pre_aggregation(in_ch: int, out_ch: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The entry block (two conv+BN+Mish) and the residual block (conv+BN+Mish, conv+BN) that open
    every aggregation: ``dres0``/``dres1``, ``confidence0_*``/``confidence1_*``."""
    entry = nn.Sequential(conv_bn_3d(in_ch, out_ch, 3, 1, 1), Mish(), conv_bn_3d(out_ch, out_ch, 3, 1, 1), Mish())
    residual = nn.Sequential(conv_bn_3d(out_ch, out_ch, 3, 1, 1), Mish(), conv_bn_3d(out_ch, out_ch, 3, 1, 1))
    return entry, residual


def run_pre_aggregation(entry: nn.Module, residual: nn.Module, volume: torch.Tensor) -> torch.Tensor:
    cost = entry(volume)
    return residual(cost) + cost


def transposed_bn_3d(in_ch: int, out_ch: int) -> nn.Sequential:
    """Stride-2 transposed 3×3×3 conv + BN: exactly doubles D, H and W."""
    return nn.Sequential(
        nn.ConvTranspose3d(in_ch, out_ch, 3, padding=1, output_padding=1, stride=2, bias=False),
        nn.BatchNorm3d(out_ch),
    )


def mish_classifier(channels: int) -> nn.Sequential:
    """conv+BN+Mish, then a conv to one logit per disparity (``classifK``, ``confidence_classif*``)."""
    return nn.Sequential(conv_bn_3d(channels, channels, 3, 1, 1), Mish(), Conv3d(channels, 1, 3, padding=1, bias=False))


class MishHourglass(nn.Module):
    """GwcNet's 3-D hourglass with Mish activations (the release's ``hourglass``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.conv1 = conv_bn_mish_3d(c, 2 * c, 2)
        self.conv2 = conv_bn_mish_3d(2 * c, 2 * c)
        self.conv3 = conv_bn_mish_3d(2 * c, 4 * c, 2)
        self.conv4 = conv_bn_mish_3d(4 * c, 4 * c)
        self.conv5 = transposed_bn_3d(4 * c, 2 * c)
        self.conv6 = transposed_bn_3d(2 * c, c)
        self.redir1 = conv_bn_3d(c, c, 1, 1, 0)
        self.redir2 = conv_bn_3d(2 * c, 2 * c, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv2 = self.conv2(self.conv1(x))
        conv4 = self.conv4(self.conv3(conv2))
        conv5 = mish(self.conv5(conv4) + self.redir2(conv2))
        return mish(self.conv6(conv5) + self.redir1(x))


class FusionHourglass(nn.Module):
    """``combine1`` (the release's ``hourglassup``): an hourglass over the 1/8 volume whose two
    stride-2 stages concatenate the pre-aggregated 1/16 and 1/32 volumes before convolving on."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.conv1 = Conv3d(c, 2 * c, 3, stride=2, padding=1, bias=False)
        self.conv2 = conv_bn_mish_3d(2 * c, 2 * c)
        self.conv3 = Conv3d(2 * c, 4 * c, 3, stride=2, padding=1, bias=False)
        self.conv4 = conv_bn_mish_3d(4 * c, 4 * c)
        self.conv8 = transposed_bn_3d(4 * c, 2 * c)
        self.conv9 = transposed_bn_3d(2 * c, c)
        self.combine1 = conv_bn_mish_3d(4 * c, 2 * c)
        self.combine2 = conv_bn_mish_3d(6 * c, 4 * c)
        self.redir1 = conv_bn_3d(c, c, 1, 1, 0)
        self.redir2 = conv_bn_3d(2 * c, 2 * c, 1, 1, 0)

    def forward(self, x: torch.Tensor, volume16: torch.Tensor, volume32: torch.Tensor) -> torch.Tensor:
        conv2 = self.conv2(self.combine1(torch.cat((self.conv1(x), volume16), dim=1)))
        conv4 = self.conv4(self.combine2(torch.cat((self.conv3(conv2), volume32), dim=1)))
        conv8 = mish(self.conv8(conv4) + self.redir2(conv2))
        return mish(self.conv9(conv8) + self.redir1(x))


# ------------------------------------------------------------------------------------------ cascade
def upsample(x: torch.Tensor, size: tuple[int, int], scale: float) -> torch.Tensor:
    """Disparities to a finer map: values times ``scale``, corner-aligned bilinear resampling."""
    return F.interpolate(x * scale, size=size, mode="bilinear", align_corners=True)


def search_range(
    mean: torch.Tensor,
    spread: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    size: tuple[int, int],
    min_width: int,
    upper: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds mean ∓ ((γ + 1)·σ + β) at the next (×2) scale, widened symmetrically to at least
    ``min_width`` and clamped to [0, ``upper``] (the release's ``generate_search_range``)."""
    low = upsample(mean - (gamma + 1) * spread - beta, size, 2.0)
    high = upsample(mean + (gamma + 1) * spread + beta, size, 2.0)
    widen = torch.clamp(min_width - high + low, min=0) / 2.0
    return torch.clamp(low - widen, min=0, max=upper), torch.clamp(high + widen, min=0, max=upper)


def disparity_hypotheses(low: torch.Tensor, high: torch.Tensor, count: int) -> torch.Tensor:
    """B×(count+2)×H×W integer hypotheses: ⌊low⌋, ``count`` uniform samples strictly inside
    (truncated), ⌈high⌉ (the release's ``generate_disparity_samples``)."""
    step = (high - low) / (count + 1)
    ranks = torch.arange(1, count + 1, dtype=low.dtype, device=low.device).view(count, 1, 1)
    return torch.cat((torch.floor(low), low + step * ranks, torch.ceil(high)), dim=1).trunc()


def sampled_volume(
    left: dict[str, torch.Tensor], right: dict[str, torch.Tensor], level: int, hypotheses: torch.Tensor, groups: int
) -> torch.Tensor:
    """The cascade volume at one scale, B×(groups + 2·C + 1)×S×H×W: group-wise correlation of
    ``gw{level}``, the concatenation of ``concat{level}``, each with the right view warped to every
    hypothesis (0 where x − d leaves the image), and the hypothesis itself (the release's
    ``cost_volume_generator``).

    The mask is applied after the group mean, on G rather than C channels (exactly the same values).
    """
    batch, samples, height, width = hypotheses.shape
    columns = torch.arange(width, dtype=hypotheses.dtype, device=hypotheses.device)
    source = columns - hypotheses
    inside = ((source >= 0) & (source <= width - 1)).unsqueeze(1).to(hypotheses.dtype)
    index = source.clamp(0, width - 1).long().unsqueeze(1)

    def warp(features: torch.Tensor) -> torch.Tensor:
        shape = (batch, features.shape[1], samples, height, width)
        return torch.gather(features.unsqueeze(2).expand(shape), 4, index.expand(shape))

    correlation = groupwise_correlation(left[f"gw{level}"].unsqueeze(2), warp(right[f"gw{level}"]), groups)
    cat_left = left[f"concat{level}"].unsqueeze(2)
    cat_left = cat_left.expand(batch, cat_left.shape[1], samples, height, width)
    cat_right = warp(right[f"concat{level}"])
    return torch.cat((correlation * inside, cat_left, cat_right * inside, hypotheses.unsqueeze(1)), dim=1)


def expectation(prob: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Σ p·d over dim 1, kept as B×1×H×W."""
    return torch.sum(prob * values, dim=1, keepdim=True)


def spread(prob: torch.Tensor, values: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Standard deviation √(Σ p·(d − mean)²) over dim 1, B×1×H×W."""
    return torch.sum(prob * (mean - values) ** 2, dim=1, keepdim=True).sqrt()


def cascade_modules(in_ch: int, channels: int) -> dict[str, nn.Module]:
    """The aggregation of one cascade volume, keyed as the release names it (before ``_s3``/``_s2``):
    entry + residual block, two hourglasses, and the heads on the residual output (``classif0``),
    the first hourglass (``classifmid``) and the second (``classif1``)."""
    entry, residual = pre_aggregation(in_ch, channels)
    return {
        "confidence0": entry,
        "confidence1": residual,
        "confidence2": MishHourglass(channels),
        "confidence3": MishHourglass(channels),
        "confidence_classif0": mish_classifier(channels),
        "confidence_classif1": mish_classifier(channels),
        "confidence_classifmid": mish_classifier(channels),
    }


# ------------------------------------------------------------------------------------------ network
@MODELS.register("cfnet")
class CFNet(StereoModel):
    """CFNet as released (22.37 M parameters in use; the release counts 23.05 M with two unused
    modules); module names follow the release's state dict."""

    arch: ClassVar[str] = "cfnet"
    unused_release_prefixes = UNUSED_ORIGINAL_PREFIXES
    release_params: ClassVar[int | None] = 23_051_396
    cost_volume_kind: ClassVar[str | None] = "correlation"
    #: Features go down to 1/32 and are upsampled back by exact ×2 steps: sides must divide by 32.
    pad_multiple: ClassVar[int] = 32
    #: ``models/loss.py``: 1/8 heads ×0.5, 1/4 ×1, 1/2 ×2, each (0.5, 0.7, 1.0) within a scale.
    loss_weights: ClassVar[tuple[float, ...]] = CFNET_LOSS_WEIGHTS

    def __init__(self, max_disp: int = 192) -> None:
        super().__init__(max_disp=max_disp)
        if max_disp % 32:
            raise ConfigError(
                f"{self.arch}: max_disp must be a multiple of 32 (its fused volumes span D/8, D/16 and D/32 "
                f"disparities, each half the previous), got {max_disp}"
            )
        volume_ch = NUM_GROUPS + 2 * CONCAT_CHANNELS
        self.feature_extraction = CFNetFeatures()
        self.dres0, self.dres1 = pre_aggregation(volume_ch, 32)
        self.dres0_5, self.dres1_5 = pre_aggregation(volume_ch, 64)
        self.dres0_6, self.dres1_6 = pre_aggregation(volume_ch, 64)
        self.combine1 = FusionHourglass(32)
        self.dres3 = MishHourglass(32)
        for spec in CASCADE:
            in_ch = spec.groups + 2 * spec.concat_channels + 1  # correlation, both views, the hypothesis
            for key, module in cascade_modules(in_ch, spec.channels).items():
                self.add_module(f"{key}_{spec.name}", module)
        self.classif0 = mish_classifier(32)
        self.classif1 = mish_classifier(32)
        self.classif2 = mish_classifier(32)
        self.gamma_s3 = nn.Parameter(torch.zeros(1))
        self.beta_s3 = nn.Parameter(torch.zeros(1))
        self.gamma_s2 = nn.Parameter(torch.zeros(1))
        self.beta_s2 = nn.Parameter(torch.zeros(1))
        init_release_weights(self)

    def offered_taps(self) -> tuple[str, ...]:
        stages = range(3)
        return (*FEATURE_TAPS, "volume.cost", *(f"volume.agg.{k}" for k in stages), *(f"logits.{k}" for k in stages))

    # -- forward pieces ------------------------------------------------------------------------------
    def extract(
        self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return extract_both_views(self.feature_extraction, left, right, taps, s2="s2", s4="gw3")

    def fused_volume(
        self, left: dict[str, torch.Tensor], right: dict[str, torch.Tensor], taps: TapRecorder
    ) -> list[torch.Tensor]:
        """The 1/8 aggregation stages ``volume.agg.0..2`` of the fused (1/8, 1/16, 1/32) volume."""
        costs = []
        blocks = ((self.dres0, self.dres1), (self.dres0_5, self.dres1_5), (self.dres0_6, self.dres1_6))
        for k, (entry, residual) in zip((4, 5, 6), blocks, strict=True):
            disparities = self.max_disp // 2 ** (k - 1)
            gwc = groupwise_correlation_volume(left[f"gw{k}"], right[f"gw{k}"], disparities, NUM_GROUPS)
            if k == 4:
                taps.record("volume.cost", gwc)
            cat = concat_volume(left[f"concat{k}"], right[f"concat{k}"], disparities)
            costs.append(run_pre_aggregation(entry, residual, torch.cat((gwc, cat), dim=1)))
        fused = self.combine1(*costs)
        stages = [costs[0], fused, self.dres3(fused)]
        for k, stage in enumerate(stages):
            taps.record(f"volume.agg.{k}", stage)
        return stages

    def cascade(
        self,
        spec: CascadeSpec,
        left: dict[str, torch.Tensor],
        right: dict[str, torch.Tensor],
        coarse: tuple[torch.Tensor, torch.Tensor],
        size: tuple[int, int],
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """One cascade stage from the coarser (mean, σ): its predictions at its own scale (final last;
        only the final one in eval), the final distribution over the hypotheses, the hypotheses."""
        with torch.no_grad():  # the hypotheses are integers: no gradient reaches the range
            low, high = search_range(
                *coarse,
                getattr(self, f"gamma_{spec.name}"),
                getattr(self, f"beta_{spec.name}"),
                (size[0] // spec.divisor, size[1] // spec.divisor),
                spec.samples + 1,
                self.max_disp // spec.divisor - 1,
            )
            hypotheses = disparity_hypotheses(low, high, spec.samples)
        volume = sampled_volume(left, right, spec.level, hypotheses, spec.groups)
        part = {key: getattr(self, f"{key}_{spec.name}") for key in CASCADE_PARTS}
        cost = run_pre_aggregation(part["confidence0"], part["confidence1"], volume)
        middle = part["confidence2"](cost)
        final = part["confidence3"](middle)
        heads = [(cost, "confidence_classif0"), (middle, "confidence_classifmid")] if self.training else []
        predictions = [expectation(F.softmax(part[head](x).squeeze(1), dim=1), hypotheses) for x, head in heads]
        prob = F.softmax(part["confidence_classif1"](final).squeeze(1), dim=1)
        predictions.append(expectation(prob, hypotheses))
        return predictions, prob, hypotheses

    def coarse_logits(self, stages: list[torch.Tensor], taps: TapRecorder) -> dict[int, torch.Tensor]:
        """``classifK`` on the 1/8 stages, B×D/8×H/8×W/8: ``classif2`` always (it starts the cascade),
        ``classif0``/``classif1`` in training or when their tap is asked for."""
        logits = {}
        for k, stage in enumerate(stages):
            if self.training or k == 2 or f"logits.{k}" in taps:
                logits[k] = getattr(self, f"classif{k}")(stage).squeeze(1)
                taps.record(f"logits.{k}", logits[k])
        return logits

    def full_range_regression(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """1/8 logits upsampled (corner-aligned trilinear) to D×H×W, then soft-argmin."""
        full = F.interpolate(logits.unsqueeze(1), size=(self.max_disp, *size), mode="trilinear", align_corners=True)
        return soft_argmin(F.softmax(full.squeeze(1), dim=1))

    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        size = (left.shape[-2], left.shape[-1])
        features_left, features_right = self.extract(left, right, taps)
        logits = self.coarse_logits(self.fused_volume(features_left, features_right, taps), taps)
        prob = F.softmax(logits[2], dim=1)
        values = torch.arange(prob.shape[1], dtype=prob.dtype, device=prob.device).view(1, -1, 1, 1)
        mean8 = expectation(prob, values)
        with torch.no_grad():
            coarse = (mean8, spread(prob, values, mean8))
        outputs: list[torch.Tensor] = []
        if self.training:
            outputs = [self.full_range_regression(logits[k], size) for k in (0, 1)]
            outputs.append(upsample(mean8, size, 8.0).squeeze(1))
        for spec in CASCADE:
            predictions, prob, hypotheses = self.cascade(spec, features_left, features_right, coarse, size)
            if self.training or spec is CASCADE[-1]:
                outputs += [upsample(p, size, float(spec.divisor)).squeeze(1) for p in predictions]
            if spec is not CASCADE[-1]:  # the next stage's range (the release computes none after the last)
                with torch.no_grad():
                    coarse = (predictions[-1], spread(prob, hypotheses, predictions[-1]))
        return StereoOutput(disparity=outputs[-1], aux=outputs[:-1])
