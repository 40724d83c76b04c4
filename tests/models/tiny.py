"""A tiny network that follows the model contract, for tests of the machinery around models."""

from __future__ import annotations

from torch import nn

from stereodistill.models.base import StereoModel
from stereodistill.models.blocks import regress
from stereodistill.models.cost_volume import correlation_volume
from stereodistill.models.output import StereoOutput, TapRecorder


class TinyNet(StereoModel):
    """Features, correlation, one 3-D conv, soft-argmin."""

    arch = "tiny"
    pad_multiple = 8

    def __init__(self, max_disp: int = 16) -> None:
        super().__init__(max_disp=max_disp)
        self.features = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.head = nn.Conv3d(1, 1, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.calls: list[str] = []

    def offered_taps(self):
        return ("feat.left.s4", "volume.cost", "prob")

    def predict(self, left, right, taps: TapRecorder) -> StereoOutput:
        fl, fr = self.bn(self.features(left)), self.bn(self.features(right))
        taps.record("feat.left.s4", fl)
        volume = correlation_volume(fl, fr, self.max_disp // 4)
        taps.record("volume.cost", lambda: self.calls.append("volume") or volume)
        prob, disp = regress(self.head(volume), self.max_disp, left.shape[-2], left.shape[-1])
        taps.record("prob", prob)
        return StereoOutput(disparity=disp, aux=[disp * 0.5] if self.training else [])
