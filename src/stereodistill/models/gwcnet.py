"""GwcNet (Guo et al., CVPR 2019): group-wise correlation, optionally with a concatenation volume.

``gwcnet-g`` builds its cost volume from group-wise correlation alone (40 groups of the 320-channel
``gwc_feature``); ``gwcnet-gc`` also concatenates a 12-channel compressed feature of both views
(``feature_extraction.lastconv``). Aggregation is a pre-hourglass stage (``dres0``, residual
``dres1``) and three stacked hourglasses (``dres2``..``dres4``); a classifier head sits on each of the
four stages (``classif0``..``classif3``). Training returns all four predictions, eval only the last.

The module names follow the release so that its checkpoints load one to one. The pieces every
group-wise network of the zoo shares (features and taps, the aggregation stack, the heads) live in
:class:`GroupwiseStereoNet`, which the DSNet student reuses.

``volume.cost`` is the group-wise correlation volume for both variants (not the gwc + concat
stack of ``gwcnet-gc``), so that a distillation term on it reads the same for every network of the
family.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from stereodistill.errors import ConfigError
from stereodistill.models.base import FEATURE_TAPS, StereoModel, extract_both_views
from stereodistill.models.blocks import (
    Hourglass,
    check_hourglass_disparity,
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

GWC_CHANNELS = 320  # cat(layer2, layer3, layer4) = 64 + 128 + 128


# ---------------------------------------------------------------------------------- building blocks
class GwcFeatures(ResNetFeatures):
    """ResNet features plus, when ``concat_channels`` > 0, the ``lastconv`` that compresses the
    320-channel ``gwc_feature`` into the small feature the concatenation volume is built from."""

    def __init__(self, blocks: tuple[int, int, int, int] = (3, 16, 3, 3), concat_channels: int = 0) -> None:
        super().__init__(blocks)
        self.concat_channels = concat_channels
        if concat_channels:
            self.lastconv = nn.Sequential(
                conv_bn(GWC_CHANNELS, 128, 3, 1, 1, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(128, concat_channels, kernel_size=1, padding=0, stride=1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)
        if self.concat_channels:
            features["concat"] = self.lastconv(features["gwc"])
        return features


# ---------------------------------------------------------------------------------- shared network
class GroupwiseStereoNet(StereoModel):
    """What GwcNet and its lean descendants share: features → group-wise volume → ``dres0``/``dres1``
    → hourglasses ``dres2``, ``dres3``, … → one classifier ``classifK`` per aggregation stage K.

    Subclasses build ``feature_extraction`` and call :meth:`build_aggregation`; their
    :meth:`predict` then chains :meth:`extract`, :meth:`cost_volume`, :meth:`aggregate` and
    :meth:`regress_heads`.
    """

    num_groups: ClassVar[int] = 40
    cost_volume_kind: ClassVar[str | None] = "correlation"
    pad_multiple: ClassVar[int] = 16  # 1/4 resolution, then two stride-2 hourglass stages: H, W % 16

    feature_extraction: nn.Module
    num_hourglasses: int

    def build_aggregation(self, in_ch: int, entry_ch: int, channels: int, num_hourglasses: int) -> None:
        self.num_hourglasses = num_hourglasses
        self.dres0 = conv_bn_pair_3d(in_ch, entry_ch, channels, final_relu=True)
        self.dres1 = conv_bn_pair_3d(channels, channels, channels, final_relu=False)
        for k in range(num_hourglasses):
            self.add_module(f"dres{k + 2}", Hourglass(channels))
        for k in range(num_hourglasses + 1):
            self.add_module(f"classif{k}", classifier(channels))

    def hourglasses(self) -> list[nn.Module]:
        return [getattr(self, f"dres{k + 2}") for k in range(self.num_hourglasses)]

    def heads(self) -> list[nn.Module]:
        return [getattr(self, f"classif{k}") for k in range(self.num_hourglasses + 1)]

    def stage_taps(self) -> tuple[str, ...]:
        stages = range(self.num_hourglasses + 1)
        return (*(f"volume.agg.{k}" for k in stages), *(f"logits.{k}" for k in stages), "prob")

    # -- forward pieces ------------------------------------------------------------------------------
    def extract(
        self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return extract_both_views(self.feature_extraction, left, right, taps, s2="s2", s4="gwc")

    def cost_volume(
        self, features_left: dict[str, torch.Tensor], features_right: dict[str, torch.Tensor], taps: TapRecorder
    ) -> torch.Tensor:
        volume = groupwise_correlation_volume(
            features_left["gwc"], features_right["gwc"], self.max_disp // 4, self.num_groups
        )
        taps.record("volume.cost", volume)
        return volume

    def aggregate(self, volume: torch.Tensor, taps: TapRecorder) -> list[torch.Tensor]:
        """Stage 0 is ``dres1(dres0(v)) + dres0(v)``; stage K ≥ 1 the output of hourglass K."""
        cost = self.dres0(volume)
        stages = [self.dres1(cost) + cost]
        for hourglass in self.hourglasses():
            stages.append(hourglass(stages[-1]))
        for k, stage in enumerate(stages):
            taps.record(f"volume.agg.{k}", stage)
        return stages

    def regress_heads(self, stages: list[torch.Tensor], taps: TapRecorder, height: int, width: int) -> StereoOutput:
        """Every head in training (aux predictions, coarsest first); in eval only the final one, plus
        the heads whose ``logits.K`` tap is asked for."""
        last = len(stages) - 1
        logits: dict[int, torch.Tensor] = {}
        for k, (stage, classify) in enumerate(zip(stages, self.heads(), strict=True)):
            if self.training or k == last or f"logits.{k}" in taps:
                logits[k] = classify(stage).squeeze(1)
                taps.record(f"logits.{k}", logits[k])
        prob, disparity = regress(logits[last], self.max_disp, height, width)
        taps.record("prob", prob)
        aux = [regress(logits[k], self.max_disp, height, width)[1] for k in range(last)] if self.training else []
        return StereoOutput(disparity=disparity, aux=aux)


# ---------------------------------------------------------------------------------- GwcNet
class GwcNet(GroupwiseStereoNet):
    """GwcNet with or without the concatenation volume; use the registered ``gwcnet-g``/``gwcnet-gc``."""

    arch: ClassVar[str] = "gwcnet"
    #: ``models/loss.py`` of the release: pred0..pred3.
    loss_weights: ClassVar[tuple[float, ...]] = (0.5, 0.5, 0.7, 1.0)
    concat_channels_when_used: ClassVar[int] = 12
    channels: ClassVar[int] = 32

    def __init__(self, max_disp: int = 192, use_concat_volume: bool = False) -> None:
        super().__init__(max_disp=max_disp, use_concat_volume=use_concat_volume)
        check_hourglass_disparity(self.arch, max_disp)
        self.use_concat_volume = use_concat_volume
        self.concat_channels = self.concat_channels_when_used if use_concat_volume else 0
        self.feature_extraction = GwcFeatures((3, 16, 3, 3), self.concat_channels)
        self.build_aggregation(self.num_groups + 2 * self.concat_channels, self.channels, self.channels, 3)
        init_release_weights(self)

    def offered_taps(self) -> tuple[str, ...]:
        return (*FEATURE_TAPS, "volume.cost", *self.stage_taps())

    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        features_left, features_right = self.extract(left, right, taps)
        volume = self.cost_volume(features_left, features_right, taps)
        if self.use_concat_volume:
            concat = concat_volume(features_left["concat"], features_right["concat"], self.max_disp // 4)
            volume = torch.cat((volume, concat), dim=1)
        stages = self.aggregate(volume, taps)
        return self.regress_heads(stages, taps, left.shape[-2], left.shape[-1])


@MODELS.register("gwcnet-g")
class GwcNetG(GwcNet):
    """GwcNet-g: group-wise correlation volume only."""

    arch: ClassVar[str] = "gwcnet-g"
    release_params: ClassVar[int | None] = 6_518_560

    def __init__(self, max_disp: int = 192, use_concat_volume: bool = False) -> None:
        if use_concat_volume:
            raise ConfigError("gwcnet-g has no concatenation volume; use gwcnet-gc")
        super().__init__(max_disp=max_disp, use_concat_volume=False)


@MODELS.register("gwcnet-gc")
class GwcNetGC(GwcNet):
    """GwcNet-gc: group-wise correlation stacked with a 2×12-channel concatenation volume."""

    arch: ClassVar[str] = "gwcnet-gc"
    release_params: ClassVar[int | None] = 6_909_728

    def __init__(self, max_disp: int = 192, use_concat_volume: bool = True) -> None:
        if not use_concat_volume:
            raise ConfigError("gwcnet-gc always uses the concatenation volume; use gwcnet-g")
        super().__init__(max_disp=max_disp, use_concat_volume=True)
