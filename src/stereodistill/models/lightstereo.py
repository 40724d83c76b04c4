"""LightStereo (Guo et al., 2024): 2-D cost aggregation made strong by widening its channels.

Port of OpenStereo's ``stereo/modeling/models/lightstereo`` with the S configuration
(``cfgs/lightstereo/lightstereo_s_*.yaml``: max disparity 192, aggregation blocks (1, 2, 4),
expansion 4, left-image attention on). The network:

- **features** (:mod:`~stereodistill.models.lightstereo_backbone`): MobileNetV2 trunk
  (:mod:`~stereodistill.models.mobilenet_v2`) and a top-down path, 24-channel matching features at
  1/4;
- **cost**: the plain correlation (mean over channels) at 1/4 for D/4 disparities, whose
  disparities are then the *channels* of a 2-D map;
- **aggregation** (``cost_agg``): inverted residuals over that map in a 1/4–1/8–1/16
  encoder-decoder whose width doubles at each stride (the "channel boost": D/4, D/2, D channels),
  each level multiplied by an attention map made from the left image's pyramid by large separable
  depthwise kernels; its output is one logit per disparity at 1/4;
- **estimation**: soft-argmin at 1/4, then a ×4 upsampling in which each full-resolution pixel
  takes a softmax-weighted mix of the 3×3 low-resolution disparities around it (zero beyond the
  border, as ``F.unfold`` pads in the release; :mod:`~stereodistill.models.neighbour_upsample`),
  the weights predicted from the 1/4 features and a shallow stem over the left image at 1/2.

Training returns the 1/4 estimate upsampled bilinearly as the auxiliary prediction (the release's
``disp_4``, weight 0.3 in its smooth-L1 loss; the final prediction has weight 1.0).

Module names follow the release, so an OpenStereo checkpoint (``{"model_state": ...}``) loads key
for key: :meth:`~stereodistill.models.base.StereoModel.map_original_state` stays the identity (the
release builds no module it does not call). The release hard-codes 48 aggregation channels (192/4);
here they follow ``max_disp // 4``, identical at the release's 192.

Taps: ``feat.*.s2`` (trunk at 1/2, 16 ch), ``feat.*.s4`` (matching features, 24 ch),
``volume.cost`` (B×1×D/4×H/4×W/4: one correlation group), ``logits.0`` (the aggregated cost,
B×D/4×H/4×W/4) and ``prob`` (those logits upsampled to B×D×H×W and normalised, as the zoo's other
1/4-resolution networks define it; the final disparity is the context-upsampled 1/4 estimate, not
this distribution's mean).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.models.base import FEATURE_TAPS, StereoModel, extract_both_views
from stereodistill.models.blocks import regress, soft_argmin
from stereodistill.models.cost_volume import correlation_volume
from stereodistill.models.lightstereo_backbone import (
    PYRAMID_CHANNELS,
    ConvUnit,
    LightStereoBackbone,
    TopDownMerge,
)
from stereodistill.models.neighbour_upsample import NEIGHBOURS, neighbour_upsample
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS


class BoostResidual(nn.Module):
    """The aggregation's inverted residual (the release's ``MobileV2Residual``): expand by 1×1,
    depthwise 3×3 (stride 1 or 2), project linearly; residual when the shape is kept."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.pwconv = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)
        )
        self.dwconv = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
        )
        self.pwliner = nn.Sequential(nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pwliner(self.dwconv(self.pwconv(x)))
        return x + out if self.skip else out


def boost_stack(channels: int, blocks: int, expansion: int) -> nn.Sequential:
    return nn.Sequential(*(BoostResidual(channels, channels, 1, expansion) for _ in range(blocks)))


class LeftAttention(nn.Module):
    """Gate the cost map by the left image: a 1×1 projection of its features, plus three separable
    depthwise branches (1×k then k×1, k = 7, 11, 21) for wide context, mixed by 1×1, times the cost."""

    KERNELS: ClassVar[tuple[int, ...]] = (7, 11, 21)

    def __init__(self, channels: int, image_channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(image_channels, channels, 1)
        for i, k in enumerate(self.KERNELS):
            self.add_module(f"conv{i}_1", nn.Conv2d(channels, channels, (1, k), padding=(0, k // 2), groups=channels))
            self.add_module(f"conv{i}_2", nn.Conv2d(channels, channels, (k, 1), padding=(k // 2, 0), groups=channels))
        self.conv3 = nn.Conv2d(channels, channels, 1)

    def forward(self, cost: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        base = self.conv0(image_features)
        mixed = base
        for i in range(len(self.KERNELS)):
            row, column = getattr(self, f"conv{i}_1"), getattr(self, f"conv{i}_2")
            mixed = mixed + column(row(base))
        return self.conv3(mixed) * cost


class CostAggregation(nn.Module):
    """The 2-D encoder-decoder over the D/4-channel cost map (the release's ``Aggregation``).

    ``conv0`` at 1/4 (D/4 ch), ``conv1``+``conv2`` down to 1/8 (D/2 ch), ``conv3``+``conv4`` down
    to 1/16 (D ch); transposed convs ``conv5``/``conv6`` come back up, each added to a residual
    ``redir`` of the encoder level (then ReLU). ``att0/2/4`` gate levels 1/4, 1/8 and 1/16 by the
    left image's pyramid.
    """

    def __init__(
        self,
        channels: int,
        blocks: tuple[int, int, int],
        expansion: int,
        pyramid_channels: tuple[int, int, int],
        left_attention: bool = True,
    ) -> None:
        super().__init__()
        c1, c2, c4 = channels, 2 * channels, 4 * channels
        self.left_attention = left_attention
        self.conv0 = boost_stack(c1, blocks[0], expansion)
        self.conv1 = BoostResidual(c1, c2, 2, expansion)
        self.conv2 = boost_stack(c2, blocks[1] - 1, expansion)
        self.conv3 = BoostResidual(c2, c4, 2, expansion)
        self.conv4 = boost_stack(c4, blocks[2] - 1, expansion)
        self.conv5 = nn.Sequential(
            nn.ConvTranspose2d(c4, c2, 3, stride=2, padding=1, output_padding=1, bias=False), nn.BatchNorm2d(c2)
        )
        self.conv6 = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1, bias=False), nn.BatchNorm2d(c1)
        )
        self.redir1 = BoostResidual(c1, c1, 1, expansion)
        self.redir2 = BoostResidual(c2, c2, 1, expansion)
        if left_attention:
            self.att0 = LeftAttention(c1, pyramid_channels[0])
            self.att2 = LeftAttention(c2, pyramid_channels[1])
            self.att4 = LeftAttention(c4, pyramid_channels[2])

    def forward(self, cost: torch.Tensor, pyramid: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """B×D/4×h×w cost and the left 1/4, 1/8, 1/16 features → B×D/4×h×w logits."""
        x = self.conv0(cost)
        if self.left_attention:
            x = self.att0(x, pyramid[0])
        down1 = self.conv2(self.conv1(x))
        if self.left_attention:
            down1 = self.att2(down1, pyramid[1])
        down2 = self.conv4(self.conv3(down1))
        if self.left_attention:
            down2 = self.att4(down2, pyramid[2])
        up1 = F.relu(self.conv5(down2) + self.redir2(down1))
        return F.relu(self.conv6(up1) + self.redir1(x))


class LightStereo(StereoModel):
    """LightStereo with the release's module names; members set the aggregation's knobs."""

    arch: ClassVar[str] = "lightstereo"
    #: The trunk reaches 1/32 and the aggregation's transposed convs need exact halves.
    pad_multiple: ClassVar[int] = 32
    cost_volume_kind: ClassVar[str | None] = "correlation"
    #: The release's ``get_loss``: 0.3 × smooth-L1 of ``disp_4`` + 1.0 × smooth-L1 of ``disp_pred``.
    loss_weights: ClassVar[tuple[float, ...]] = (0.3, 1.0)
    aggregation_blocks: ClassVar[tuple[int, int, int]] = (1, 2, 4)
    expansion: ClassVar[int] = 4

    def __init__(self, max_disp: int = 192) -> None:
        super().__init__(max_disp=max_disp)
        self.disparities = max_disp // 4
        self.backbone = LightStereoBackbone()
        self.cost_agg = CostAggregation(self.disparities, self.aggregation_blocks, self.expansion, PYRAMID_CHANNELS)
        features = PYRAMID_CHANNELS[0]
        self.refine_1 = nn.Sequential(
            ConvUnit(features, 24, 3, 1, 1, nn.InstanceNorm2d, nn.LeakyReLU),
            ConvUnit(24, 24, 3, 1, 1, nn.InstanceNorm2d, nn.ReLU),
        )
        self.stem_2 = nn.Sequential(
            ConvUnit(3, 16, 3, 2, 1, nn.BatchNorm2d, nn.LeakyReLU),
            ConvUnit(16, 16, 3, 1, 1, nn.BatchNorm2d, nn.ReLU),
        )
        self.refine_2 = TopDownMerge(24, 16)
        self.refine_3 = ConvUnit(16, len(NEIGHBOURS), 4, 2, 1, transposed=True)

    def offered_taps(self) -> tuple[str, ...]:
        return (*FEATURE_TAPS, "volume.cost", "logits.0", "prob")

    def upsampling_weights(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """B×9×H×W softmax weights from the 1/4 features and a stem over the (normalised) left image."""
        logits = self.refine_3(self.refine_2(self.refine_1(features), self.stem_2(image)))
        weights = F.softmax(logits, dim=1)
        # The release casts them to float32 (a no-op but under half precision); float64 stays float64.
        return weights.float() if weights.dtype in (torch.float16, torch.bfloat16) else weights

    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        height, width = left.shape[-2:]
        features_left, features_right = extract_both_views(self.backbone, left, right, taps, s2="s2", s4="s4")
        volume = correlation_volume(features_left["s4"], features_right["s4"], self.disparities)  # B×1×D×h×w
        taps.record("volume.cost", volume)
        logits = self.cost_agg(volume.squeeze(1), (features_left["s4"], features_left["s8"], features_left["s16"]))
        taps.record("logits.0", logits)
        if "prob" in taps:
            taps.record("prob", regress(logits, self.max_disp, height, width)[0])
        low = soft_argmin(F.softmax(logits, dim=1))  # 1/4-resolution pixels
        weights = self.upsampling_weights(features_left["s4"], left)
        disparity = neighbour_upsample((low * 4).unsqueeze(1), weights).squeeze(1)
        aux = []
        if self.training:
            coarse = F.interpolate(low.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False)
            aux = [coarse.squeeze(1) * 4]
        return StereoOutput(disparity=disparity, aux=aux)


@MODELS.register("lightstereo-s")
class LightStereoS(LightStereo):
    """LightStereo-S: one block at 1/4, two at 1/8, four at 1/16, expansion 4 (3.44 M parameters)."""

    arch: ClassVar[str] = "lightstereo-s"
    #: ``sum(p.numel())`` of the release's model built from ``lightstereo_s_sceneflow.yaml``.
    release_params: ClassVar[int | None] = 3_441_360
    aggregation_blocks: ClassVar[tuple[int, int, int]] = (1, 2, 4)
    expansion: ClassVar[int] = 4
