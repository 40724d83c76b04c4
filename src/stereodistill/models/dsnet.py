"""The DSNet student (Rahim et al., IJCNN 2023) and its family: a lean GwcNet with ACV-style attention.

Released as ``gwcnet-xsfe-2hg-slied16``: a slim ResNet backbone (blocks 2, 4, 1, 1) gives the
320-channel ``gwc_feature`` at 1/4; one group-wise correlation volume (40 groups) feeds both an
attention branch and the aggregation. The attention branch (ACVNet's multi-level patch convolutions
``patch``/``patch_l1..3``, ``dres1_att``, one hourglass ``dres2_att``, classifier ``classif_att``)
yields one logit per disparity, whose softmax over disparity weights the group-wise volume.
Aggregation is ``dres0`` (40 → 32 → width), residual ``dres1`` and two hourglasses (``dres2``,
``dres3``) at width 16, with a classifier on each stage (``classif0``..``classif2``).

Family knobs, all in ``config``: ``hourglass_channels`` (the release explored 8/16/24; only the
aggregation width changes with it, the attention branch keeps its own ``attention_channels``, 16 in
the release), ``num_hourglasses`` (the number of heads follows: one per stage) and ``attention``
(``dsnet-noatt``, the release's ``_wo`` variant: the whole attention branch is removed and the raw
group-wise volume is aggregated).

Differences from the release, none of which changes an output:
- the release builds the group-wise volume twice (once inside its attention branch); it is built once;
- modules the release creates but the forward pass never calls are not built: the feature
  transform ``feature_extraction.feat_trans`` (always built, since the release hard-codes
  ``transform_feats = True``), and, under some distillation configs, ``attention_weights`` and
  ``cost_trans32a/b/c``. An original checkpoint's copies of them are dropped by name on import.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from stereodistill.errors import ConfigError
from stereodistill.models.base import FEATURE_TAPS
from stereodistill.models.blocks import (
    Hourglass,
    apply_attention_patches,
    attention_patch_convs,
    check_hourglass_disparity,
    classifier,
    conv_bn_pair_3d,
    init_release_weights,
)
from stereodistill.models.features import ResNetFeatures
from stereodistill.models.gwcnet import GroupwiseStereoNet
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS

#: Tensors of an original checkpoint that belong to modules the forward pass never calls.
UNUSED_ORIGINAL_PREFIXES = (
    "feature_extraction.feat_trans.",
    "cost_trans32a.",
    "cost_trans32b.",
    "cost_trans32c.",
)
UNUSED_ORIGINAL_KEYS = ("attention_weights",)
PATCH_SPLITS = (8, 16, 16)  # group slices of the patch convs at dilations 1, 2, 3


def dsnet_loss_weights(num_predictions: int) -> tuple[float, ...]:
    """The release's ``model_loss`` weighs 2 predictions (0.5, 1.0), 3 (0.5, 0.7, 1.0) and 4
    (0.5, 0.5, 0.7, 1.0). Extended: the final one 1.0, the one before 0.7, every earlier one 0.5
    (a lone prediction gets 1.0)."""
    if num_predictions == 1:
        return (1.0,)
    if num_predictions == 2:
        return (0.5, 1.0)
    return (0.5,) * (num_predictions - 2) + (0.7, 1.0)


@MODELS.register("dsnet")
class DSNet(GroupwiseStereoNet):
    """The DSNet student; ``DSNet()`` is the released network (1.81 M parameters in use)."""

    arch: ClassVar[str] = "dsnet"
    unused_release_keys = UNUSED_ORIGINAL_KEYS
    unused_release_prefixes = UNUSED_ORIGINAL_PREFIXES
    release_params: ClassVar[int | None] = 1_856_256
    #: With the default two hourglasses: pred0, pred1, pred2 (``utils/losses.py`` of the release).
    loss_weights: ClassVar[tuple[float, ...]] = (0.5, 0.7, 1.0)
    backbone_blocks: ClassVar[tuple[int, int, int, int]] = (2, 4, 1, 1)
    entry_channels: ClassVar[int] = 32

    def __init__(
        self,
        max_disp: int = 192,
        hourglass_channels: int = 16,
        num_hourglasses: int = 2,
        attention: bool = True,
        attention_channels: int = 16,
    ) -> None:
        super().__init__(
            max_disp=max_disp,
            hourglass_channels=hourglass_channels,
            num_hourglasses=num_hourglasses,
            attention=attention,
            attention_channels=attention_channels,
        )
        if hourglass_channels < 1 or attention_channels < 1 or num_hourglasses < 0:
            raise ConfigError(
                f"{self.arch}: hourglass_channels and attention_channels must be ≥ 1 and num_hourglasses ≥ 0, "
                f"got {hourglass_channels}, {attention_channels}, {num_hourglasses}"
            )
        if attention or num_hourglasses:
            check_hourglass_disparity(self.arch, max_disp)
        self.attention = attention
        self.feature_extraction = ResNetFeatures(self.backbone_blocks)
        if attention:
            self.build_attention(attention_channels)
        self.build_aggregation(self.num_groups, self.entry_channels, hourglass_channels, num_hourglasses)
        # Per instance: the number of predictions follows num_hourglasses.
        self.loss_weights = dsnet_loss_weights(num_hourglasses + 1)
        init_release_weights(self)

    def build_attention(self, channels: int) -> None:
        for name, conv in attention_patch_convs(self.num_groups, PATCH_SPLITS).items():
            self.add_module(name, conv)  # patch, patch_l1, patch_l2, patch_l3 as released
        self.dres1_att = conv_bn_pair_3d(self.num_groups, channels, channels, final_relu=False)
        self.dres2_att = Hourglass(channels)
        self.classif_att = classifier(channels)

    def offered_taps(self) -> tuple[str, ...]:
        attention = ("volume.attention",) if self.attention else ()
        return (*FEATURE_TAPS, "volume.cost", *attention, *self.stage_taps())

    def attention_logits(self, cost: torch.Tensor) -> torch.Tensor:
        """B×1×D/4×H/4×W/4 logits over disparity from the (patch-filtered) group-wise volume."""
        patches = apply_attention_patches(cost, self.patch, self.patch_l1, self.patch_l2, self.patch_l3)
        return self.classif_att(self.dres2_att(self.dres1_att(patches)))

    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        features_left, features_right = self.extract(left, right, taps)
        volume = self.cost_volume(features_left, features_right, taps)
        if self.attention:
            logits = self.attention_logits(volume)
            taps.record("volume.attention", logits)
            volume = F.softmax(logits, dim=2) * volume
        stages = self.aggregate(volume, taps)
        return self.regress_heads(stages, taps, left.shape[-2], left.shape[-1])


@MODELS.register("dsnet-noatt")
class DSNetNoAttention(DSNet):
    """DSNet without the attention branch (the release's ``gwcnet-xsfe-2hg-slied16-wo``)."""

    arch: ClassVar[str] = "dsnet-noatt"
    release_params: ClassVar[int | None] = 1_545_568

    def __init__(
        self,
        max_disp: int = 192,
        hourglass_channels: int = 16,
        num_hourglasses: int = 2,
        attention: bool = False,
        attention_channels: int = 16,
    ) -> None:
        if attention:
            raise ConfigError("dsnet-noatt has no attention branch; use dsnet")
        super().__init__(max_disp, hourglass_channels, num_hourglasses, False, attention_channels)
