"""PSMNet (Chang & Chen, "Pyramid Stereo Matching Network", CVPR 2018), stacked-hourglass variant.

A ResNet feature extractor with spatial pyramid pooling gives 32-channel features at 1/4; the
left features and the shifted right features are concatenated into a 64-channel volume over
D/4 disparities, which two residual 3-D blocks and three stacked hourglasses regularise. Each
hourglass feeds a classifier whose logits are added to the previous head's, and every head is
upsampled trilinearly to full resolution and regressed by soft-argmin. In training the three
predictions are returned (loss weights 0.5, 0.7, 1.0); in eval only the last one.

Module names follow the release's ``state_dict`` (``feature_extraction.branch1``, ``dres0``,
``dres2``…``dres4``, ``classif1``…``classif3``), so an original checkpoint loads as it is.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.errors import ConfigError
from stereodistill.models.base import FEATURE_TAPS, StereoModel
from stereodistill.models.blocks import (
    classifier,
    conv_bn,
    conv_bn_3d,
    conv_bn_pair_3d,
    conv_bn_relu_3d,
    init_release_weights,
    soft_argmin,
)
from stereodistill.models.cost_volume import concat_volume
from stereodistill.models.features import ResNetFeatures
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS

#: Pooling windows of the pyramid branches ``branch1``…``branch4``, in pixels of the 1/4 map.
PYRAMID_WINDOWS = (64, 32, 16, 8)
HOURGLASSES = 3


class PyramidPool(nn.Module):
    """Average pooling over non-overlapping ``window``×``window`` cells (remainder dropped).

    The release pools with a fixed window, which fails on maps smaller than the window (inputs
    under 256 px at 1/4); there we pool over the whole extent of that side instead. On every map
    the release accepts the result is identical.
    """

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cell = (min(self.window, x.shape[-2]), min(self.window, x.shape[-1]))
        return F.avg_pool2d(x, cell, stride=cell)

    def extra_repr(self) -> str:
        return f"window={self.window}"


def pyramid_branch(window: int) -> nn.Sequential:
    """Pool the 128-channel 1/4 map, then project it to 32 channels (``branchK``)."""
    return nn.Sequential(PyramidPool(window), conv_bn(128, 32, 1, 1, 0, 1), nn.ReLU(inplace=True))


class PSMNetFeatures(ResNetFeatures):
    """The release's ``feature_extraction``: ResNet stages (3, 16, 3, 3), spatial pyramid pooling
    over ``layer4`` and ``lastconv`` fusing everything into 32-channel matching features.

    Returns ``{"s2": layer1 output (32 ch, 1/2), "s4": lastconv output (32 ch, 1/4)}``.
    """

    def __init__(self, align_corners: bool = False) -> None:
        super().__init__(blocks=(3, 16, 3, 3))
        self.align_corners = align_corners
        self.branch1 = pyramid_branch(PYRAMID_WINDOWS[0])
        self.branch2 = pyramid_branch(PYRAMID_WINDOWS[1])
        self.branch3 = pyramid_branch(PYRAMID_WINDOWS[2])
        self.branch4 = pyramid_branch(PYRAMID_WINDOWS[3])
        self.lastconv = nn.Sequential(
            conv_bn(320, 128, 3, 1, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(128, 32, 1, padding=0, bias=False)
        )

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pooled context at four scales, upsampled back to ``x``'s size; finest window first."""
        size = (x.shape[-2], x.shape[-1])
        return [
            F.interpolate(branch(x), size=size, mode="bilinear", align_corners=self.align_corners)
            for branch in (self.branch4, self.branch3, self.branch2, self.branch1)
        ]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # The stages are run here rather than through ``backbone``, whose 320-ch GwcNet
        # concatenation PSMNet does not use.
        s2 = self.layer1(self.firstconv(x))
        raw = self.layer2(s2)
        skip = self.layer4(self.layer3(raw))
        fused = torch.cat((raw, skip, *self.pyramid(skip)), dim=1)
        return {"s2": s2, "s4": self.lastconv(fused)}


class PSMNetHourglass(nn.Module):
    """PSMNet's 3-D hourglass: 1/4 → 1/8 → 1/16 → 1/8 → 1/4, with 2c channels below the top.

    Unlike GwcNet's (:class:`~stereodistill.models.blocks.Hourglass`) it has no 1×1×1 skips: its
    1/8 stages are joined to the previous hourglass instead. ``postsqu`` (the previous hourglass's
    1/8 decoder output) is added to the encoder's 1/8 map, ``presqu`` (the first hourglass's 1/8
    encoder map) to the decoder's; without them the hourglass skips to its own encoder map.
    Returns ``(output at 1/4, encoder 1/8 map "pre", decoder 1/8 map "post")``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.conv1 = conv_bn_relu_3d(c, 2 * c, 3, 2, 1)
        self.conv2 = conv_bn_3d(2 * c, 2 * c, 3, 1, 1)
        self.conv3 = conv_bn_relu_3d(2 * c, 2 * c, 3, 2, 1)
        self.conv4 = conv_bn_relu_3d(2 * c, 2 * c, 3, 1, 1)
        self.conv5 = nn.Sequential(
            nn.ConvTranspose3d(2 * c, 2 * c, 3, padding=1, output_padding=1, stride=2, bias=False),
            nn.BatchNorm3d(2 * c),
        )
        self.conv6 = nn.Sequential(
            nn.ConvTranspose3d(2 * c, c, 3, padding=1, output_padding=1, stride=2, bias=False), nn.BatchNorm3d(c)
        )

    def forward(
        self, x: torch.Tensor, presqu: torch.Tensor | None, postsqu: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pre = self.conv2(self.conv1(x))
        pre = F.relu(pre if postsqu is None else pre + postsqu, inplace=True)
        bottom = self.conv4(self.conv3(pre))
        post = F.relu(self.conv5(bottom) + (pre if presqu is None else presqu), inplace=True)
        return self.conv6(post), pre, post


@MODELS.register("psmnet")
class PSMNet(StereoModel):
    """PSMNet with stacked hourglasses (5.22 M parameters).

    ``align_corners`` applies to every bilinear/trilinear upsampling. The release's code leaves it
    unset, i.e. ``False`` on PyTorch ≥ 0.4, which is the default here; its README advises ``True``
    for its published checkpoints, which were trained with the older (corner-aligned) behaviour.
    """

    arch: ClassVar[str] = "psmnet"
    release_params: ClassVar[int | None] = 5_224_768
    cost_volume_kind: ClassVar[str | None] = "concatenation"
    # Two stride-2 stages in 2-D, then two in the hourglasses, each undone exactly by a
    # transposed convolution: sides must be multiples of 4·4 = 16.
    pad_multiple: ClassVar[int] = 16
    loss_weights: ClassVar[tuple[float, ...]] = (0.5, 0.7, 1.0)

    def __init__(self, max_disp: int = 192, align_corners: bool = False) -> None:
        super().__init__(max_disp=max_disp, align_corners=align_corners)
        if max_disp % 16:
            raise ConfigError(
                f"psmnet: max_disp must be a multiple of 16 (its hourglasses halve D/4 twice), got {max_disp}"
            )
        self.align_corners = align_corners
        self.feature_extraction = PSMNetFeatures(align_corners)
        self.dres0 = conv_bn_pair_3d(64, 32, 32, final_relu=True)
        self.dres1 = conv_bn_pair_3d(32, 32, 32, final_relu=False)
        self.dres2 = PSMNetHourglass(32)
        self.dres3 = PSMNetHourglass(32)
        self.dres4 = PSMNetHourglass(32)
        self.classif1 = classifier(32)
        self.classif2 = classifier(32)
        self.classif3 = classifier(32)
        init_release_weights(self)

    def offered_taps(self) -> tuple[str, ...]:
        return (
            *FEATURE_TAPS,
            "volume.cost",
            *(f"volume.agg.{k}" for k in range(HOURGLASSES + 1)),
            *(f"logits.{k}" for k in range(1, HOURGLASSES + 1)),
            "prob",
        )

    def features(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> torch.Tensor:
        """Both views' features (one pass each, so batch norm sees what the release's does) → volume."""
        ref = self.feature_extraction(left)
        target = self.feature_extraction(right)
        for view, feats in (("left", ref), ("right", target)):
            taps.record(f"feat.{view}.s2", feats["s2"])
            taps.record(f"feat.{view}.s4", feats["s4"])
        cost = concat_volume(ref["s4"], target["s4"], self.max_disp // 4)
        taps.record("volume.cost", cost)
        return cost

    def aggregate(self, cost: torch.Tensor, taps: TapRecorder) -> list[torch.Tensor]:
        """Cost volume → the logits of the three heads (B×1×D/4×H/4×W/4 each), first head first."""
        cost0 = self.dres0(cost)
        cost0 = self.dres1(cost0) + cost0
        taps.record("volume.agg.0", cost0)
        volume, presqu, postsqu = cost0, None, None
        logits: list[torch.Tensor] = []
        heads = zip((self.dres2, self.dres3, self.dres4), (self.classif1, self.classif2, self.classif3), strict=True)
        for k, (hourglass, classify) in enumerate(heads, start=1):
            volume, pre, postsqu = hourglass(volume, presqu, postsqu)
            # Every later hourglass is joined to the FIRST one's encoder map, as in the release.
            presqu = pre if presqu is None else presqu
            volume = volume + cost0
            taps.record(f"volume.agg.{k}", volume)
            # Each head refines the previous head's logits (the release's cost2 = classif2(out2) + cost1).
            head = classify(volume)
            logits.append(head if not logits else head + logits[-1])
            taps.record(f"logits.{k}", logits[-1].squeeze(1))
        return logits

    def regress(self, logits: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """B×1×D/4×H/4×W/4 logits → (B×D×H×W distribution, B×H×W soft-argmin disparity)."""
        full = F.interpolate(
            logits, size=(self.max_disp, height, width), mode="trilinear", align_corners=self.align_corners
        )
        prob = F.softmax(full.squeeze(1), dim=1)
        return prob, soft_argmin(prob)

    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        height, width = left.shape[-2:]
        logits = self.aggregate(self.features(left, right, taps), taps)
        prob, disparity = self.regress(logits[-1], height, width)
        taps.record("prob", prob)
        aux = [self.regress(head, height, width)[1] for head in logits[:-1]] if self.training else []
        return StereoOutput(disparity=disparity, aux=aux)
