"""The ``lean`` family: the project's own real-time students, built for CPUs and edge devices.

What makes them fast is what the deployed fast networks share (LightStereo, CoEx, Fast-ACVNet,
MobileStereoNet), arranged as feature → cost → aggregation → estimation:

- **features**: a MobileNetV2-style pyramid (:mod:`~stereodistill.models.mobile_features`) with a
  top-down path to 1/4, shared by both views;
- **cost**: one group-wise correlation volume at 1/4 (8 groups), B×8×D/4×H/4×W/4, whose groups
  and disparities become the channels of a 2-D map; optionally (``census``, off in every preset) a
  census matching cost beside it (:mod:`~stereodistill.models.census_cost`), which does not depend
  on the domain the features were learned on: with a 3×3 window, 0.10–0.24 px better on Motorcycle
  for 7–24 % more latency;
- **aggregation**: 2-D inverted residuals in an encoder-decoder, guided and excited by the left
  image's features (:mod:`~stereodistill.models.lean_aggregation`), ending in one logit per
  disparity at 1/4, to which a matching score shared by every disparity is added;
- **estimation**: soft-argmin at 1/4 (optionally over the top-k logits, as CoEx does), a sub-pixel
  refinement from the volume's costs around that estimate
  (:mod:`~stereodistill.models.local_refine`), then a learned convex ×4 upsampling
  (:mod:`~stereodistill.models.convex_upsample`); optionally (``guide``, off in every preset) a
  full-resolution refinement from the images' photometric error
  (:mod:`~stereodistill.models.guided_refine`), worth 0.05–0.11 px on Motorcycle for 37–83 % more latency.

No 3-D convolution runs anywhere. Members differ only in their knobs (``width``, ``depth``,
``agg_channels``, ``agg_blocks``, ``expansion``, ``groups``, ``topk``, ``refine``, ``guide``,
``census``): ``lean`` is the recommended student, ``lean-s`` and ``lean-xs`` trade accuracy for
speed, ``lean-l`` the other way. Their shared taps (``feat.*.s2``, ``feat.*.s4``, ``volume.cost``
as B×G×D/4×H/4×W/4, ``logits.0`` and ``prob``) have the shapes of the teachers' taps, up to
channels (a ``conv`` adapter) and the teachers' group axis
(``group_pool``), so any teacher of the zoo distils into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F

from stereodistill.errors import ConfigError
from stereodistill.models.base import FEATURE_TAPS, StereoModel, extract_both_views
from stereodistill.models.blocks import regress, soft_argmin
from stereodistill.models.census_cost import census_cost_quarter
from stereodistill.models.convex_upsample import ConvexUpsample
from stereodistill.models.cost_volume import groupwise_correlation_volume
from stereodistill.models.guided_refine import DILATIONS, GuidedRefinement
from stereodistill.models.lean_aggregation import MatchingScore, VolumeAggregation2d
from stereodistill.models.local_refine import LocalRefinement
from stereodistill.models.mobile_features import MobileFeatures
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS

#: Backbone widths at 1/2, 1/4, 1/8, 1/16 and of the 1/4 matching features, at ``width`` 1.
BASE_CHANNELS = (16, 24, 32, 64, 48)
#: The widest multiplier accepted (lean-l is 1.5); beyond it the network is no longer lean, and a stray
#: exponent in a config (``1e9``) would otherwise ask the allocator for terabytes.
MAX_WIDTH = 4.0


def scaled(channels: int, width: float) -> int:
    """Channels × width, rounded to a multiple of 8 (the vector width CPUs and int8 kernels like)."""
    return max(8, round(channels * width / 8) * 8)


def topk_logits(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per pixel (the rest −inf), so soft-argmin ignores far modes."""
    if k <= 0 or k >= logits.shape[1]:
        return logits
    kth = logits.topk(k, dim=1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


@dataclass(frozen=True)
class LeanKnobs:
    """The knobs of a ``lean`` member; every member is a preset of them."""

    width: float = 1.0  # channel multiplier of the backbone
    depth: tuple[int, int, int] = (2, 3, 3)  # inverted residuals of the 1/4, 1/8 and 1/16 stages
    agg_channels: int = 32  # aggregation width at 1/4 (doubled below)
    agg_blocks: int = 2  # inverted residuals per aggregation level
    expansion: int = 4  # channel boost of every inverted residual
    groups: int = 8  # groups of the correlation volume: G·D/4 channels enter the aggregation
    topk: int = 0  # soft-argmin over the k largest logits (0: over all)
    refine: int = 2  # inverted residuals of the sub-pixel refinement at 1/4 (0: none)
    guide: int = 0  # residual blocks of the image-guided refinement at full resolution (0: none)
    census: int = 0  # window of a census cost for the aggregation and the matching score (0: none)

    def problems(self) -> list[str]:
        found = []
        if not (isinstance(self.width, int | float) and 0 < self.width <= MAX_WIDTH):
            found.append(f"width must be a positive number up to {MAX_WIDTH}, got {self.width!r}")
        if len(self.depth) != 3 or not all(isinstance(v, int) and v >= 1 for v in self.depth):
            found.append(f"depth must be three block counts ≥ 1 (1/4, 1/8, 1/16), got {list(self.depth)}")
        if not (isinstance(self.refine, int) and self.refine >= 0):
            found.append(f"refine must be an integer ≥ 0 (0: no refinement), got {self.refine!r}")
        if not (isinstance(self.guide, int) and 0 <= self.guide <= len(DILATIONS)):
            found.append(f"guide must be an integer 0–{len(DILATIONS)} (0: no guided refinement), got {self.guide!r}")
        if not (isinstance(self.census, int) and (self.census == 0 or (self.census >= 3 and self.census % 2))):
            found.append(f"census must be 0 (none) or an odd window ≥ 3, got {self.census!r}")
        for key in ("agg_channels", "agg_blocks", "expansion", "groups"):
            value = getattr(self, key)
            if not (isinstance(value, int) and value >= 1):
                found.append(f"{key} must be an integer ≥ 1, got {value!r}")
        if not (isinstance(self.topk, int) and self.topk >= 0):
            found.append(f"topk must be an integer ≥ 0 (0: all disparities), got {self.topk!r}")
        if not found and scaled(BASE_CHANNELS[-1], self.width) % self.groups:
            channels = scaled(BASE_CHANNELS[-1], self.width)
            found.append(f"groups ({self.groups}) must divide the {channels} matching-feature channels")
        return found


@MODELS.register("lean")
class LeanStereo(StereoModel):
    """The recommended student (``lean``); the other members are presets of the same knobs."""

    arch: ClassVar[str] = "lean"
    cost_volume_kind: ClassVar[str | None] = "correlation"
    pad_multiple: ClassVar[int] = 16  # 1/4 features, two stride-2 aggregation levels below them
    #: Training supervises the 1/4 soft-argmin before refinement (bilinearly upsampled) and the output.
    loss_weights: ClassVar[tuple[float, ...]] = (0.5, 1.0)
    preset: ClassVar[LeanKnobs] = LeanKnobs()

    def __init__(
        self,
        max_disp: int = 192,
        width: float | None = None,
        depth: Sequence[int] | None = None,
        agg_channels: int | None = None,
        agg_blocks: int | None = None,
        expansion: int | None = None,
        groups: int | None = None,
        topk: int | None = None,
        refine: int | None = None,
        guide: int | None = None,
        census: int | None = None,
    ) -> None:
        given = {
            "width": width,
            "depth": None if depth is None else tuple(depth),
            "agg_channels": agg_channels,
            "agg_blocks": agg_blocks,
            "expansion": expansion,
            "groups": groups,
            "topk": topk,
            "refine": refine,
            "guide": guide,
            "census": census,
        }
        knobs = replace(self.preset, **{key: value for key, value in given.items() if value is not None})
        config = asdict(knobs)
        super().__init__(max_disp=max_disp, **{**config, "depth": list(knobs.depth)})
        problems = knobs.problems()
        if problems:
            raise ConfigError(f"{self.arch}: " + "; ".join(problems))
        self.knobs = knobs
        c2, c4, c8, c16, out = (scaled(c, knobs.width) for c in BASE_CHANNELS)
        agg = scaled(knobs.agg_channels, 1.0)
        self.disparities = max_disp // 4
        census_groups = 1 if knobs.census else 0  # the census cost enters beside the volume's groups
        self.feature_extraction = MobileFeatures((c2, c4, c8, c16), knobs.depth, out, knobs.expansion)
        self.aggregation = VolumeAggregation2d(
            (knobs.groups + census_groups) * self.disparities,
            self.disparities,
            (out, c8, c16),
            channels=agg,
            blocks=knobs.agg_blocks,
            expansion=knobs.expansion,
        )
        self.score = MatchingScore(knobs.groups, extra_groups=census_groups)
        self.refinement = (
            LocalRefinement(knobs.groups, agg, agg, knobs.refine, knobs.expansion, upper=(max_disp - 1) / 4)
            if knobs.refine
            else None
        )
        self.upsample = ConvexUpsample(agg, factor=4)
        self.guided = GuidedRefinement(max_disp - 1.0, blocks=knobs.guide) if knobs.guide else None
        if self.guided is not None:
            # The convex upsampling's output is supervised too, so that the guided stage refines an estimate.
            self.loss_weights = (0.5, 0.7, 1.0)

    def offered_taps(self) -> tuple[str, ...]:
        return (*FEATURE_TAPS, "volume.cost", "logits.0", "prob")

    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        height, width = left.shape[-2:]
        # Channels-last: CPU depthwise convolutions run ~15× faster on it than on NCHW.
        left = left.contiguous(memory_format=torch.channels_last)
        right = right.contiguous(memory_format=torch.channels_last)
        features_left, features_right = extract_both_views(self.feature_extraction, left, right, taps, s2="s2", s4="s4")
        volume = groupwise_correlation_volume(
            features_left["s4"], features_right["s4"], self.disparities, self.knobs.groups
        )  # B×G×D×h×w
        taps.record("volume.cost", volume)
        census = ()
        if self.knobs.census:  # B×D×h×w, beside the volume in the aggregation and the score
            census = (census_cost_quarter(left, right, self.max_disp, self.knobs.census),)
        guides = features_left["g4"], features_left["g8"], features_left["g16"]
        logits, context = self.aggregation(volume.flatten(1, 2), *guides, *census)
        logits = logits + self.score(volume, *census)
        taps.record("logits.0", logits)
        if "prob" in taps:
            taps.record("prob", regress(logits, self.max_disp, height, width)[0])
        low = soft_argmin(F.softmax(topk_logits(logits, self.knobs.topk), dim=1))  # 1/4-resolution pixels
        refined = low
        if self.refinement is not None:
            refined = self.refinement(low, volume, context)
        disparity = self.upsample(refined, context)
        aux = []
        if self.training:
            aux = [
                4
                * F.interpolate(low.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False).squeeze(1)
            ]
        if self.guided is not None:
            if self.training:
                aux.append(disparity)
            disparity = self.guided(disparity, left, right)
        return StereoOutput(disparity=disparity, aux=aux)


@MODELS.register("lean-l")
class LeanStereoL(LeanStereo):
    """Wider and deeper than ``lean``: more capacity for about 1.4–1.5× its latency on a CPU."""

    arch: ClassVar[str] = "lean-l"
    preset: ClassVar[LeanKnobs] = LeanKnobs(width=1.5, agg_channels=48, agg_blocks=3)


@MODELS.register("lean-s")
class LeanStereoS(LeanStereo):
    """Narrower and shallower than ``lean``."""

    arch: ClassVar[str] = "lean-s"
    preset: ClassVar[LeanKnobs] = LeanKnobs(width=0.75, depth=(1, 2, 2), agg_channels=24, agg_blocks=1, refine=1)


@MODELS.register("lean-xs")
class LeanStereoXS(LeanStereo):
    """The fastest member: half-width backbone, one block per level, expansion 3, 4 correlation groups
    (its 24-channel features make the 8-group volume memory-bound: 90 → 56 ms at 256×512)."""

    arch: ClassVar[str] = "lean-xs"
    preset: ClassVar[LeanKnobs] = LeanKnobs(
        width=0.5, depth=(1, 1, 1), agg_channels=16, agg_blocks=1, expansion=3, groups=4, refine=1
    )
