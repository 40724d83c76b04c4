"""Fast-ACVNet+ (Xu et al., TPAMI 2023): a sparse attention concatenation volume, as released
(gangweiX/Fast-ACVNet, ``Fast_ACV_plus.py``).

Features: MobileNetV2 to 1/32 (:mod:`~stereodistill.models.mobilenet_v2`), decoded back to 1/4 by
transposed convolutions with skip concatenations, and joined at 1/4 with a small two-stride image
stem (96 channels); the release took these blocks, and its channel gates, over from CoEx's code
(:mod:`~stereodistill.models.coex_blocks`). Matching runs at 1/4 in two passes:

1. **Attention.** A one-channel normalised (cosine) correlation volume over all D/4 disparities
   goes through a three-level 3-D hourglass whose every stage is gated per channel by the left
   image's features (``channelAtt``). Its output is one logit per disparity.
2. **Sparse concatenation.** Of each pixel's attention distribution only the ``top_k`` (24) most
   likely disparities are kept, in increasing order. A 32-channel concatenation volume is built at
   exactly those disparities (left features, right features shifted by each), weighted by their
   attention probabilities and aggregated by a two-level guided hourglass; the final 1/4 estimate
   is the soft-argmax over the two best of the k hypotheses.

A full-resolution map of 3×3 weights, predicted from the image stems, turns the 1/4 disparity into
the output: each pixel mixes the nine 1/4 estimates around its cell ("context upsampling",
:mod:`~stereodistill.models.neighbour_upsample`).

The release supervises four outputs; ``aux`` holds the three intermediate ones at full resolution
(see :meth:`FastACVNetPlus.predict`). The attention pass alone (the release's
``att_weights_only`` training stage) is not offered: this is the network the paper evaluates.

Taps: ``feat.*.s2`` (the 1/2 image stem, 32 ch), ``feat.*.s4`` (the 96-ch 1/4 map every branch
reads), ``volume.cost`` (B×1×D/4×H/4×W/4 cosine correlation), ``volume.attention`` (the attention
logits, same shape) and ``logits.0`` (the same, B×D/4×H/4×W/4: the one head over a fixed disparity
axis; the final cost is over each pixel's own k hypotheses), ``prob`` (the B×D×H×W distribution
whose mean is the output: the top-2 softmax of each 1/4 cell at disparities 4·d, mixed by the
upsampling weights; sparse, unlike the trilinear distributions of the GwcNet family).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.errors import ConfigError
from stereodistill.models.base import FEATURE_TAPS, StereoModel
from stereodistill.models.blocks import init_release_weights
from stereodistill.models.coex_blocks import ChannelGate, FeatureDecoder, UpConcat, conv2d, conv3d, deconv3d, stem
from stereodistill.models.cost_volume import correlation_volume
from stereodistill.models.mobilenet_v2 import MobileNetV2
from stereodistill.models.neighbour_upsample import neighbour_distribution, neighbour_upsample
from stereodistill.models.numerics import reference
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS

#: Added to the feature norms before the cosine correlation, as the release does.
NORM_EPS = 1e-5


def channel_gate(volume_channels: int, image_channels: int) -> ChannelGate:
    """A :class:`ChannelGate` initialised as it is built: the release runs its ``weight_init`` in
    each ``channelAtt``'s constructor (which fixes the order of the random draws)."""
    gate = ChannelGate(volume_channels, image_channels)
    init_release_weights(gate)
    return gate


class GuidedHourglass(nn.Module):
    """A 3-D encoder-decoder whose every level is gated by the left image's features at that scale.

    Level k (1 … L) halves D, H and W (two 3×3×3 units, the first strided) and gates with the 1/2^(k+2)
    guide; the decoder goes back up by transposed units, concatenates the encoder's map of that level,
    fuses (1×1×1 then two 3×3×3 units), gates again, and a last transposed unit emits one logit channel.
    ``widths`` are the level widths as multiples of the input width; ``fuse_names`` the release's
    names of the fusion stages, coarsest first (``hourglass_att``: ``agg_0``, ``agg_1``;
    ``hourglass``: ``agg``).
    """

    def __init__(
        self,
        channels: int,
        widths: tuple[int, ...],
        guide_channels: tuple[int, ...],
        fuse_names: tuple[str, ...],
    ) -> None:
        super().__init__()
        levels = len(widths)
        if len(fuse_names) != levels - 1 or len(guide_channels) < levels:
            raise ValueError("one fusion stage per decoder level and one guide per level are needed")
        width = [channels] + [channels * m for m in widths]
        self.levels = levels
        self.fuse_names = fuse_names
        for k in range(1, levels + 1):
            scale = 4 * 2**k
            self.add_module(
                f"conv{k}", nn.Sequential(conv3d(width[k - 1], width[k], stride=2), conv3d(width[k], width[k]))
            )
            self.add_module(f"feature_att_{scale}", channel_gate(width[k], guide_channels[k - 1]))
        for k in range(levels, 1, -1):
            scale = 4 * 2 ** (k - 1)
            self.add_module(f"conv{k}_up", deconv3d(width[k], width[k - 1]))
            fuse = nn.Sequential(
                conv3d(2 * width[k - 1], width[k - 1], kernel=1),
                conv3d(width[k - 1], width[k - 1]),
                conv3d(width[k - 1], width[k - 1]),
            )
            self.add_module(fuse_names[levels - k], fuse)
            self.add_module(f"feature_att_up_{scale}", channel_gate(width[k - 1], guide_channels[k - 2]))
        self.conv1_up = deconv3d(width[1], 1, norm=False, act=False)  # the one-logit head

    def forward(self, volume: torch.Tensor, guides: list[torch.Tensor]) -> torch.Tensor:
        """``guides``: the left image's maps at 1/8, 1/16, 1/32 (as many as levels)."""
        encoded = []
        x = volume
        for k in range(1, self.levels + 1):
            x = getattr(self, f"conv{k}")(x)
            x = getattr(self, f"feature_att_{4 * 2**k}")(x, guides[k - 1])
            encoded.append(x)
        for k in range(self.levels, 1, -1):
            x = torch.cat((getattr(self, f"conv{k}_up")(x), encoded[k - 2]), dim=1)
            x = getattr(self, self.fuse_names[self.levels - k])(x)
            x = getattr(self, f"feature_att_up_{4 * 2 ** (k - 1)}")(x, guides[k - 2])
        return self.conv1_up(x)


def unit_normalised(features: torch.Tensor) -> torch.Tensor:
    """Each pixel's feature vector divided by (its L2 norm + 1e-5): the mean product of two such
    vectors is the release's ``norm_correlation``."""
    return features / (torch.linalg.vector_norm(features, dim=1, keepdim=True) + NORM_EPS)


def top_k_hypotheses(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B×1×D×H×W attention logits → (indices of the k most probable disparities, increasing,
    B×1×k×H×W; their softmax probabilities over all D).

    Ranked on the softmax, not the logits, as the release does: the ranking is the same except where
    probabilities tie after rounding (e.g. several underflow to 0), and there the tie must break the
    same way for the same hypotheses to be kept.
    """
    prob = F.softmax(logits, dim=2)
    ranked = prob.sort(dim=2, descending=True).indices[:, :, :k]
    chosen = ranked.sort(dim=2).values
    return chosen, torch.gather(prob, 2, chosen)


def sampled_concat_volume(left: torch.Tensor, right: torch.Tensor, disparities: torch.Tensor) -> torch.Tensor:
    """B×2C×K×H×W: left features repeated over the K hypotheses, and right features at x − d for each
    pixel's own integer hypotheses d (B×K×H×W); 0 where x − d < 0.

    The release warps with ``grid_sample`` (bilinear, corner-aligned, zero padding) at these integer
    positions, which reads the same single pixel up to rounding of the normalised coordinates; a
    gather reads it exactly. Inside ``reference_numerics`` the release's warp is used instead.
    """
    batch, channels, height, width = right.shape
    shape = (batch, channels, disparities.shape[1], height, width)
    if reference():
        return torch.cat((left.unsqueeze(2).expand(shape), grid_warp(right, disparities)), dim=1)
    columns = torch.arange(width, device=right.device).view(1, 1, 1, width)
    source = columns - disparities
    index = source.clamp(min=0).unsqueeze(1).expand(shape)
    warped = torch.gather(right.unsqueeze(2).expand(shape), 4, index)
    warped = torch.where((source >= 0).unsqueeze(1), warped, 0.0)
    return torch.cat((left.unsqueeze(2).expand(shape), warped), dim=1)


def grid_warp(right: torch.Tensor, disparities: torch.Tensor) -> torch.Tensor:
    """B×C×K×H×W: right features at (x − d, y) read by ``grid_sample`` through normalised coordinates,
    rounding as the release's ``SpatialTransformer_grid`` does (for bit-for-bit comparisons)."""
    batch, channels, height, width = right.shape
    count = disparities.shape[1]
    dtype = right.dtype
    rows = torch.arange(height, dtype=dtype, device=right.device).view(1, 1, height, 1)
    cols = torch.arange(width, dtype=dtype, device=right.device).view(1, 1, 1, width)
    x = (cols - disparities.to(dtype)) / ((width - 1.0) / 2.0) - 1.0
    y = (rows / ((height - 1.0) / 2.0) - 1.0).expand_as(x)
    grid = torch.stack((x, y), dim=-1).view(batch, count * height, width, 2)
    warped = F.grid_sample(right, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return warped.view(batch, channels, count, height, width)


def best_of(cost: torch.Tensor, hypotheses: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B×K×H×W cost over per-pixel hypotheses → (B×1×H×W soft-argmax over the ``n`` best of them,
    those n hypotheses B×n×H×W, their softmax probabilities B×n×H×W)."""
    best = cost.sort(dim=1, descending=True).indices[:, :n]
    prob = F.softmax(torch.gather(cost, 1, best), dim=1)
    values = torch.gather(hypotheses, 1, best)
    return (values * prob).sum(1, keepdim=True), values, prob


def nearest_up(disparity: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """B×1×h×w → B×(f·h)×(f·w), each value repeated over its f×f block."""
    return disparity.squeeze(1).repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)


@MODELS.register("fast-acvnet-plus")
class FastACVNetPlus(StereoModel):
    """Fast-ACVNet+ as released; parameter names follow the release's state dict."""

    arch = "fast-acvnet-plus"
    #: ``sum(p.numel())`` of the release's ``Fast_ACVNet_plus(192, False)``, including the two unused
    #: one-channel batch norms of its ``conv1_up`` heads (4 parameters) that ours does not create.
    release_params: ClassVar[int | None] = 3_203_293
    cost_volume_kind: ClassVar[str | None] = "correlation"
    #: The backbone reaches 1/32, and the attention hourglass halves the 1/4 maps three more times.
    pad_multiple = 32
    #: models/loss.py ``model_loss_train`` weighs (final, final at 1/4, attention, attention at 1/4) by
    #: (1.0, 0.3, 0.5, 0.3); ours lists them coarsest first, final last.
    loss_weights = (0.3, 0.5, 0.3, 1.0)
    #: Hypotheses kept from the attention distribution, and those the final soft-argmax weighs.
    top_k: ClassVar[int] = 24
    final_top_k: ClassVar[int] = 2
    #: Unused tensors of the release (its ``BasicConv`` creates a batch norm even with ``bn=False``).
    unused_release_prefixes = ("hourglass_att.conv1_up.bn.", "hourglass.conv1_up.bn.")

    def __init__(self, max_disp: int = 192) -> None:
        super().__init__(max_disp=max_disp)
        if max_disp % 32:
            raise ConfigError(
                f"{self.arch}: max_disp must be a multiple of 32 (the attention hourglass halves D/4 three "
                f"times), got {max_disp}"
            )
        # The release: timm's init in the backbone (then its ImageNet weights, not downloaded here), its
        # own N(0, 2/n) in the decoder and each channel gate, PyTorch's defaults elsewhere.
        self.feature = MobileNetV2()
        self.feature.init_timm_weights()
        self.feature_up = FeatureDecoder(MobileNetV2.channels[1:])
        init_release_weights(self.feature_up)
        self.stem_2 = stem(3, 32, 2)
        self.stem_4 = stem(32, 48, 2)
        self.spx = nn.Sequential(nn.ConvTranspose2d(2 * 32, 9, kernel_size=4, stride=2, padding=1))
        self.spx_2 = UpConcat(24, 32)
        self.spx_4 = stem(96, 24, 1)
        self.conv = conv2d(96, 48)
        self.desc = nn.Conv2d(48, 48, kernel_size=1)
        self.corr_stem = conv3d(1, 8)
        self.corr_feature_att_4 = channel_gate(8, 96)
        self.hourglass_att = GuidedHourglass(8, (2, 4, 6), (64, 192, 160), ("agg_0", "agg_1"))
        self.concat_feature = nn.Sequential(conv2d(96, 32), nn.Conv2d(32, 16, 3, 1, 1, bias=False))
        self.concat_stem = conv3d(32, 16)
        self.concat_feature_att_4 = channel_gate(16, 96)
        self.hourglass = GuidedHourglass(16, (2, 4), (64, 192), ("agg",))

    def offered_taps(self) -> tuple[str, ...]:
        return (*FEATURE_TAPS, "volume.cost", "volume.attention", "logits.0", "prob")

    # -- stages ----------------------------------------------------------------------------------------
    def view_features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """One view → ``s2`` (stem, 32 ch), ``s4`` (decoded backbone + stem, 96 ch) and the 1/8, 1/16,
        1/32 decoder maps (64, 192, 160 ch) that gate the hourglasses.

        Views go through separately, as in the release: in training, batch norm takes each view's own
        batch statistics.
        """
        x4, x8, x16, x32 = self.feature_up(self.feature(image)[1:])
        s2 = self.stem_2(image)
        return {"s2": s2, "s4": torch.cat((x4, self.stem_4(s2)), dim=1), "s8": x8, "s16": x16, "s32": x32}

    def upsampling_weights(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """B×9×H×W softmax weights of the context upsampling, from the left view's 1/4 and 1/2 maps."""
        x = self.spx_2(self.spx_4(features["s4"]), features["s2"])
        return F.softmax(self.spx(x), dim=1)

    # -- the network -----------------------------------------------------------------------------------
    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        feats_left, feats_right = self.view_features(left), self.view_features(right)
        for side, feats in (("left", feats_left), ("right", feats_right)):
            taps.record(f"feat.{side}.s2", feats["s2"])
            taps.record(f"feat.{side}.s4", feats["s4"])
        guides = [feats_left["s8"], feats_left["s16"], feats_left["s32"]]

        match_left = unit_normalised(self.desc(self.conv(feats_left["s4"])))
        match_right = unit_normalised(self.desc(self.conv(feats_right["s4"])))
        cost = correlation_volume(match_left, match_right, self.max_disp // 4)
        taps.record("volume.cost", cost)
        volume = self.corr_feature_att_4(self.corr_stem(cost), feats_left["s4"])
        attention = self.hourglass_att(volume, guides)  # B×1×D/4×H/4×W/4
        taps.record("volume.attention", attention)
        taps.record("logits.0", lambda: attention.squeeze(1))

        chosen, chosen_prob = top_k_hypotheses(attention, self.top_k)
        index = chosen.squeeze(1)
        hypotheses = index.to(attention.dtype)
        volume = chosen_prob * sampled_concat_volume(
            self.concat_feature(feats_left["s4"]), self.concat_feature(feats_right["s4"]), index
        )
        volume = self.concat_feature_att_4(self.concat_stem(volume), feats_left["s4"])
        cost_k = self.hourglass(volume, guides).squeeze(1)  # B×K×H/4×W/4, over each pixel's hypotheses
        coarse, final_values, final_prob = best_of(cost_k, hypotheses, self.final_top_k)
        weights = self.upsampling_weights(feats_left)
        disparity = neighbour_upsample(coarse, weights).squeeze(1) * 4
        taps.record("prob", lambda: neighbour_distribution(4 * final_values.long(), final_prob, weights, self.max_disp))
        aux: list[torch.Tensor] = []
        if self.training:
            # The attention's own estimate: soft-argmax of its logits renormalised over the k hypotheses.
            prob = F.softmax(torch.gather(attention, 2, chosen).squeeze(1), dim=1)
            coarse_att = (prob * hypotheses).sum(1, keepdim=True)
            # The release compares its 1/4 outputs with a nearest-downsampled ground truth; ours are
            # full-resolution, each 1/4 value repeated over its 4×4 block.
            aux = [
                nearest_up(coarse_att * 4),
                neighbour_upsample(coarse_att, weights).squeeze(1) * 4,
                nearest_up(coarse * 4),
            ]
        return StereoOutput(disparity=disparity, aux=aux)
