"""CoEx (Bangunharcana et al., IROS 2021, "Correlate-and-Excite"): real-time stereo with guided
cost-volume excitation and top-k soft-argmax, as the release (antabangun/coex) configures it for
SceneFlow (``configs/stereo/cfg_coex.yaml``).

Pipeline, both views as one batch wherever the release batches them (batch norm statistics in
training depend on it):

1. **Features**: a MobileNetV2 (:mod:`~stereodistill.models.mobilenet_v2`: timm's
   ``mobilenetv2_100``, its stages up to 1/32; the 320-channel last stage is not part of the model)
   gives 16/24/32/96/160 channels at 1/2…1/32. A U-Net decoder (``up``) merges them back to 1/4
   (48 ch), refining the 1/8 (64 ch) and 1/16 (192 ch) maps on the way. A separate shallow image
   stem (``stem_2``, ``stem_4``) adds 48 channels at 1/4.
2. **Correlation volume** (``cost_volume``): a 3×3 conv and a 1×1 projection to 48 channels, L2
   normalised per pixel; the volume is the cosine similarity of left (x) and right (x − d) for
   D/4 disparities, one channel.
3. **Aggregation** (``cost_agg``): a light 3-D U-Net (8→16→32→48 channels, disparity strided with
   the image). After the stem, every down level and the two inner up levels, the cost is *excited*
   (GCE): multiplied by a sigmoid gate computed per pixel and channel from the left image's
   feature at that scale. The last transposed convolution leaves one channel: the cost.
4. **Top-k soft-argmax**: per 1/4 pixel only the k = 2 best disparities are kept, softmaxed, and
   their expectation is the 1/4 disparity.
5. **Superpixel upsampling** (:mod:`stereodistill.models.neighbour_upsample`): nine weights per
   full-resolution pixel, predicted from the 1/4 features and the 1/2 stem (``spx_4``, ``spx_2``,
   ``spx``), mix the 3×3 neighbourhood of its 1/4 cell; times 4 gives the disparity.

Training returns the 1/4 prediction too (×4, bilinearly upsampled to the input size as the
release's loss does); the release weighs the two smooth-L1 terms 1 (full) and 0.3 (1/4) and divides
by their sum, hence ``loss_weights = (0.3/1.3, 1/1.3)``.

Input: the release's loader reads images with OpenCV (BGR order) and applies the ImageNet
normalisation (mean 0.485, 0.456, 0.406, …) to the channels in that order; :meth:`CoEx.normalize`
does the same to our RGB input (flip, then normalise). The release pads below and to the right to
a multiple of 32; ours pads above and to the right, as the zoo does.

Unused parts: the release builds the finest level of three aggregation lists (``conv_skip.0``,
``conv_agg.0``, ``channelAtt.0``) and a batch norm in the last transposed convolution
(``conv_up.0.bn``) but never calls them (5,034 parameters of its 2,727,027). They are not created
here; :meth:`CoEx.map_original_state` drops exactly their tensors from a released checkpoint.
Module names otherwise follow the release's state dict (timm's names inside the backbone); the
building blocks Fast-ACVNet+'s release took over from CoEx's are in
:mod:`~stereodistill.models.coex_blocks`.

Taps (h = H/4, w = W/4 of the padded input, D' = max_disp // 4):

- ``feat.left.s2``/``feat.right.s2``: the backbone's 1/2 feature, B×16×2h×2w.
- ``feat.left.s4``/``feat.right.s4``: the 1/4 matching feature the volume is built from (decoder
  output and image stem, concatenated), B×96×h×w.
- ``volume.cost``: the cosine correlation volume, B×1×D'×h×w (``cost_volume_kind``: correlation).
- ``logits.0``: the aggregated cost the top-k soft-argmax reads, B×D'×h×w.
- ``prob``: the full-resolution distribution whose mean is the output, B×max_disp×H×W. Its mass
  lies on multiples of 4 only (CoEx's hypotheses are the D' disparities of the 1/4 volume, ×4), at
  most 2 per neighbour cell: the superpixel mixture of the cells' top-2 softmax.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.errors import ConfigError
from stereodistill.models.base import StereoModel
from stereodistill.models.blocks import init_release_weights
from stereodistill.models.coex_blocks import (
    ChannelGate,
    FeatureDecoder,
    UpConcat,
    conv2d,
    conv3d,
    deconv3d,
    resize_like,
    stem,
)
from stereodistill.models.cost_volume import correlation_volume
from stereodistill.models.mobilenet_v2 import MobileNetV2
from stereodistill.models.neighbour_upsample import neighbour_distribution, neighbour_upsample
from stereodistill.models.numerics import reference
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS

#: Backbone channels at 1/2, 1/4, 1/8, 1/16, 1/32 (``configs/backbone.yaml``, ``mobilenetv2_100``).
BACKBONE_CHANNELS = MobileNetV2.channels
#: Channels of the image stem at 1/2 and 1/4 (``spixel.branch_channels``).
STEM_CHANNELS = (32, 48)
#: Aggregation widths below the 8-channel stem (``aggregation.channels``).
AGG_CHANNELS = (8, 16, 32, 48)
TOP_K = 2
#: The release's loss: (1 · full + 0.3 · quarter) / 1.3, aux (1/4) first.
COEX_LOSS_WEIGHTS = (0.3 / 1.3, 1.0 / 1.3)
#: Tensors of modules the release builds but never calls (see the module docstring).
UNUSED_ORIGINAL_PREFIXES = (
    "cost_agg.conv_skip.0.",
    "cost_agg.conv_agg.0.",
    "cost_agg.channelAtt.0.",
    "cost_agg.conv_up.0.bn.",
)
#: Prefixes of the release's checkpoints: PyTorch Lightning's module attribute (``stereo.``).
ORIGINAL_KEY_PREFIXES = ("stereo.", "model.")


# ---------------------------------------------------------------------------------- cost volume
class CosineCorrelation(nn.Module):
    """3×3 conv unit and 1×1 projection per view, unit L2 norm per pixel, then Σ_c left·right over
    D' disparities: a one-channel volume of cosine similarities (the release's ``AttentionCostVolume``
    with one head). The release builds D' + 1 planes and drops the last; this builds D'."""

    def __init__(self, in_ch: int, channels: int) -> None:
        super().__init__()
        self.conv = conv2d(in_ch, channels)
        self.desc = nn.Conv2d(channels, channels, 1)

    def describe(self, x: torch.Tensor) -> torch.Tensor:
        x = self.desc(self.conv(x))
        return x / torch.norm(x, 2, 1, True)

    def forward(self, left: torch.Tensor, right: torch.Tensor, disparities: int) -> torch.Tensor:
        # Each view separately, as the release does (its batch norm sees one view at a time in training).
        left, right = self.describe(left), self.describe(right)
        if reference():
            return cosine_volume_loop(left, right, disparities)
        return correlation_volume(left, right, disparities) * left.shape[1]  # mean → sum over channels


def cosine_volume_loop(left: torch.Tensor, right: torch.Tensor, disparities: int) -> torch.Tensor:
    """Reference: the release's summation order, one C×D×H×W product summed over its channels
    (a per-disparity sum rounds differently on narrow maps)."""
    width = left.shape[-1]
    shifted = right.new_zeros(*right.shape[:2], disparities, *right.shape[2:])
    for d in range(min(disparities, width)):
        shifted[:, :, d, :, d:] = right[..., : width - d]
    return (left.unsqueeze(2) * shifted).sum(1, keepdim=True)


# ---------------------------------------------------------------------------------- aggregation
class CostAggregation(nn.Module):
    """3-D U-Net with guided excitation at every level it visits (the release's ``Aggregation``)."""

    def __init__(self, guide_channels: tuple[int, int, int, int]) -> None:
        super().__init__()
        ch = AGG_CHANNELS
        down_guides = (2 * BACKBONE_CHANNELS[2], 2 * BACKBONE_CHANNELS[3], BACKBONE_CHANNELS[4])
        self.conv_stem = conv3d(1, ch[0])
        self.channelAttStem = ChannelGate(ch[0], guide_channels[0])
        self.conv_down = nn.ModuleList(
            nn.Sequential(conv3d(ch[i], ch[i + 1], stride=2), conv3d(ch[i + 1], ch[i + 1])) for i in range(3)
        )
        self.channelAttDown = nn.ModuleList(ChannelGate(ch[i + 1], down_guides[i]) for i in range(3))
        # Level 0 ends in a bare transposed convolution to one channel; levels 1, 2 fuse a skip.
        self.conv_up = nn.ModuleList(
            [deconv3d(ch[1], 1, norm=False, act=False), deconv3d(ch[2], ch[1]), deconv3d(ch[3], ch[2])]
        )
        self.conv_skip = nn.ModuleDict({str(i): conv3d(2 * ch[i], ch[i], kernel=1) for i in (1, 2)})
        self.conv_agg = nn.ModuleDict(
            {str(i): nn.Sequential(conv3d(ch[i], ch[i]), conv3d(ch[i], ch[i])) for i in (1, 2)}
        )
        self.channelAtt = nn.ModuleDict({str(i): ChannelGate(ch[i], guide_channels[i]) for i in (1, 2)})

    def forward(self, volume: torch.Tensor, guides: list[torch.Tensor]) -> torch.Tensor:
        """B×1×D'×h×w volume, left-view guides at 1/4…1/32 → B×1×D'×h×w cost."""
        levels = [self.channelAttStem(self.conv_stem(volume), guides[0])]
        for i in range(3):
            levels.append(self.channelAttDown[i](self.conv_down[i](levels[-1]), guides[i + 1]))
        cost = levels[-1]
        for i in (2, 1):
            cost = resize_like(self.conv_up[i](cost), levels[i])
            cost = self.conv_agg[str(i)](self.conv_skip[str(i)](torch.cat((cost, levels[i]), dim=1)))
            cost = self.channelAtt[str(i)](cost, guides[i])
        return resize_like(self.conv_up[0](cost), levels[0])


def top_k_soft_argmax(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax over each pixel's k largest logits only: (B×1×h×w expected index, the k indices,
    their probabilities). Which of two exactly equal logits is kept does not change the result."""
    values, index = logits.topk(k, dim=1)
    prob = F.softmax(values, dim=1)
    return (prob * index.to(prob.dtype)).sum(1, keepdim=True), index, prob


# ---------------------------------------------------------------------------------- CoEx
@MODELS.register("coex")
class CoEx(StereoModel):
    """CoEx as released for SceneFlow (max disparity 192, MobileNetV2 backbone, top-2 regression)."""

    arch: ClassVar[str] = "coex"
    unused_release_prefixes = UNUSED_ORIGINAL_PREFIXES
    pad_multiple: ClassVar[int] = 32  # the backbone reaches 1/32
    loss_weights: ClassVar[tuple[float, ...]] = COEX_LOSS_WEIGHTS
    cost_volume_kind: ClassVar[str | None] = "correlation"
    #: sum(p.numel()) of the release's ``CoEx(cfg)`` for ``cfg_coex.yaml``; 5,034 of them unused.
    release_params: ClassVar[int | None] = 2_727_027

    def __init__(self, max_disp: int = 192) -> None:
        super().__init__(max_disp=max_disp)
        if max_disp // 4 < TOP_K:
            raise ConfigError(f"coex: max_disp must be at least {4 * TOP_K} (top-{TOP_K} of D/4), got {max_disp}")
        c, stem_ch = BACKBONE_CHANNELS, STEM_CHANNELS
        match_ch = 2 * c[1] + stem_ch[1]  # 96: decoder output and image stem at 1/4
        self.feature = MobileNetV2()
        self.up = FeatureDecoder(c[1:])
        self.cost_volume = CosineCorrelation(match_ch, 2 * c[1])
        self.cost_agg = CostAggregation((match_ch, 2 * c[2], 2 * c[3], c[4]))
        self.stem_2 = stem(3, stem_ch[0])
        self.stem_4 = stem(stem_ch[0], stem_ch[1])
        self.spx = nn.Sequential(nn.ConvTranspose2d(2 * 32, 9, kernel_size=4, stride=2, padding=1))
        self.spx_2 = UpConcat(c[1], 32)
        self.spx_4 = stem(match_ch, c[1], stride=1)
        # The release: timm's init in the backbone (it then loads ImageNet weights, which this
        # project does not download), its own N(0, 2/n) in the decoder and the aggregation,
        # PyTorch's defaults elsewhere.
        self.feature.init_timm_weights()
        init_release_weights(self.up)
        init_release_weights(self.cost_agg)

    def offered_taps(self) -> tuple[str, ...]:
        return (
            "feat.left.s2",
            "feat.right.s2",
            "feat.left.s4",
            "feat.right.s4",
            "volume.cost",
            "logits.0",
            "prob",
        )

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """RGB → BGR, then ImageNet statistics in that channel order: what the release's OpenCV
        loader feeds the network."""
        return (image.flip(1) - self.mean) / self.std

    def map_original_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Strip the Lightning module's ``stereo.`` prefix; drop, by name, the never-called modules."""
        stripped = {}
        for key, value in state.items():
            for prefix in ORIGINAL_KEY_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    break
            stripped[key] = value
        return super().map_original_state(stripped)

    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        batch = left.shape[0]
        both = torch.cat((left, right), dim=0)  # one batch through the shared 2-D layers, as released
        backbone = self.feature(both)
        pyramid = self.up(backbone[1:])
        stem_2 = self.stem_2(both)
        stem_4 = self.stem_4(stem_2)
        match = torch.cat((pyramid[0], stem_4), dim=1)
        for side, part in (("left", slice(0, batch)), ("right", slice(batch, None))):
            taps.record(f"feat.{side}.s2", lambda part=part: backbone[0][part])
            taps.record(f"feat.{side}.s4", lambda part=part: match[part])
        guides = [match[:batch], *(level[:batch] for level in pyramid[1:])]

        volume = self.cost_volume(match[:batch], match[batch:], self.max_disp // 4)
        taps.record("volume.cost", volume)
        logits = self.cost_agg(volume, guides).squeeze(1)
        taps.record("logits.0", logits)

        weights = F.softmax(self.spx(self.spx_2(self.spx_4(match[:batch]), stem_2[:batch])), dim=1)
        quarter, index, prob = top_k_soft_argmax(logits, TOP_K)
        disparity = neighbour_upsample(quarter, weights).squeeze(1) * 4
        taps.record("prob", lambda: neighbour_distribution(index * 4, prob, weights, self.max_disp))
        aux = []
        if self.training:
            size = tuple(left.shape[-2:])
            aux.append(F.interpolate(quarter * 4, size=size, mode="bilinear", align_corners=False).squeeze(1))
        return StereoOutput(disparity=disparity, aux=aux)
