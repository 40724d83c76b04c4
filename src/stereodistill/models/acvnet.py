"""ACVNet (Xu et al., CVPR 2022): an attention concatenation volume, as released (gangweiX/ACVNet).

A group-wise correlation volume (40 groups over the 320-ch GwcNet features) goes through ACVNet's
multi-level patch convolutions and a small attention branch (``dres1_att_``, an attention
hourglass ``dres2_att_``, ``classif_att_``) that yields one logit per disparity. Their softmax over
disparity weighs a 64-ch concatenation volume (32-ch ``concatconv`` features per view), which three
stages aggregate (``dres0``+``dres1``, then the hourglasses ``dres2``, ``dres3``); every hourglass
carries a windowed 3-D self-attention block at its bottleneck. Heads ``classif0..2`` turn the
stages into disparity logits.

The release trains in three runs (attention branch alone, then the rest with the branch frozen,
then everything); this port is the network those runs end in and the paper evaluates: all heads,
attention weights times the concatenation volume.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.errors import ConfigError
from stereodistill.models.attention3d import WindowAttention3d
from stereodistill.models.base import FEATURE_TAPS, StereoModel
from stereodistill.models.blocks import (
    Hourglass,
    apply_attention_patches,
    attention_patch_convs,
    classifier,
    conv_bn,
    conv_bn_pair_3d,
    init_release_weights,
    regress,
)
from stereodistill.models.cost_volume import concat_volume, groupwise_correlation_volume
from stereodistill.models.features import ResNetFeatures
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS


class AttentionHourglass(Hourglass):
    """GwcNet's hourglass with windowed self-attention (16 heads, 4×4×4 windows) at its bottleneck."""

    def __init__(self, channels: int, num_heads: int = 16, window: tuple[int, int, int] = (4, 4, 4)) -> None:
        super().__init__(channels)
        self.attention_block = WindowAttention3d(4 * channels, num_heads, window)

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention_block(x)


@MODELS.register("acvnet")
class ACVNet(StereoModel):
    """ACVNet as released; parameter names follow the release's state dict."""

    arch = "acvnet"
    release_params: ClassVar[int | None] = 7_173_488
    cost_volume_kind: ClassVar[str | None] = "correlation"
    #: Features are at 1/4 and the hourglasses halve twice more; the attention pads its own windows.
    pad_multiple = 16
    #: main.py / models/loss.py ``model_loss_train``: attention prediction, heads 0, 1, final head 2.
    loss_weights = (0.5, 0.5, 0.7, 1.0)
    num_groups: ClassVar[int] = 40
    concat_channels: ClassVar[int] = 32
    #: Width of the attention branch, and the suffix of its module names in the release.
    attention_channels: ClassVar[int] = 32
    attention_suffix: ClassVar[str] = "_"

    def __init__(self, max_disp: int = 192) -> None:
        super().__init__(max_disp=max_disp)
        if max_disp % 16:
            raise ConfigError(f"{self.arch}: max_disp must be a multiple of 16 (the hourglasses halve D/4 twice)")
        self.feature_extraction = ResNetFeatures(blocks=(3, 16, 3, 3))
        self.concatconv = nn.Sequential(
            conv_bn(320, 128, 3, 1, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, self.concat_channels, kernel_size=1, padding=0, stride=1, bias=False),
        )
        for name, conv in attention_patch_convs(self.num_groups).items():
            self.add_module(name, conv)
        att, suffix = self.attention_channels, self.attention_suffix
        self.add_module(f"dres1_att{suffix}", conv_bn_pair_3d(self.num_groups, att, att, final_relu=False))
        self.add_module(f"dres2_att{suffix}", AttentionHourglass(att))
        self.add_module(f"classif_att{suffix}", classifier(att))
        self.dres0 = conv_bn_pair_3d(2 * self.concat_channels, 32, 32, final_relu=True)
        self.dres1 = conv_bn_pair_3d(32, 32, 32, final_relu=False)
        self.dres2 = AttentionHourglass(32)
        self.dres3 = AttentionHourglass(32)
        self.classif0 = classifier(32)
        self.classif1 = classifier(32)
        self.classif2 = classifier(32)
        init_release_weights(self)

    def offered_taps(self) -> tuple[str, ...]:
        return (
            *FEATURE_TAPS,
            "volume.cost",
            "volume.attention",
            *(f"volume.agg.{k}" for k in range(3)),
            *(f"logits.{k}" for k in range(3)),
            "prob",
        )

    # -- stages ----------------------------------------------------------------------------------------
    def attention_logits(self, cost: torch.Tensor) -> torch.Tensor:
        """Group-wise volume → B×1×D/4×H/4×W/4 attention logits over disparity."""
        suffix = self.attention_suffix
        volume = apply_attention_patches(cost, self.patch, self.patch_l1, self.patch_l2, self.patch_l3)
        volume = self.get_submodule(f"dres1_att{suffix}")(volume)
        volume = self.get_submodule(f"dres2_att{suffix}")(volume)
        return self.get_submodule(f"classif_att{suffix}")(volume)

    def aggregate(self, volume: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Attention concatenation volume → (stage outputs ``volume.agg.0..2``, the volumes heads 0..2 read)."""
        first = self.dres0(volume)
        stage0 = self.dres1(first) + first
        stage1 = self.dres2(stage0)
        stage2 = self.dres3(stage1)
        return [stage0, stage1, stage2], self.head_inputs(first, [stage0, stage1, stage2])

    def head_inputs(self, dres0_out: torch.Tensor, stages: list[torch.Tensor]) -> list[torch.Tensor]:
        """ACVNet's heads read the three stage outputs."""
        return stages

    # -- the network -----------------------------------------------------------------------------------
    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        height, width = left.shape[-2:]
        feats_left, feats_right = self.feature_extraction(left), self.feature_extraction(right)
        for side, feats in (("left", feats_left), ("right", feats_right)):
            taps.record(f"feat.{side}.s2", feats["s2"])
            taps.record(f"feat.{side}.s4", feats["gwc"])

        disp4 = self.max_disp // 4
        cost = groupwise_correlation_volume(feats_left["gwc"], feats_right["gwc"], disp4, self.num_groups)
        taps.record("volume.cost", cost)
        attention = self.attention_logits(cost)
        taps.record("volume.attention", attention)

        concat = concat_volume(
            self.concatconv(feats_left["gwc"]), self.concatconv(feats_right["gwc"]), disp4, keep_left=True
        )
        stages, head_inputs = self.aggregate(F.softmax(attention, dim=2) * concat)
        for k, stage in enumerate(stages):
            taps.record(f"volume.agg.{k}", stage)

        heads = (self.classif0, self.classif1, self.classif2)
        logits: dict[int, torch.Tensor] = {}
        for k, head in enumerate(heads):
            # Eval runs only the final head, unless a tap asks for another one.
            if self.training or k == len(heads) - 1 or f"logits.{k}" in taps:
                logits[k] = head(head_inputs[k]).squeeze(1)
                taps.record(f"logits.{k}", logits[k])

        prob, disparity = regress(logits[len(heads) - 1], self.max_disp, height, width)
        taps.record("prob", prob)
        aux: list[torch.Tensor] = []
        if self.training:
            aux.append(regress(attention, self.max_disp, height, width)[1])
            aux += [regress(logits[k], self.max_disp, height, width)[1] for k in range(len(heads) - 1)]
        return StereoOutput(disparity=disparity, aux=aux)
