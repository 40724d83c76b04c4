"""OpenCV's semi-global block matching as a network of the zoo: the classical baseline a learned
model must beat on real images, evaluated, benchmarked and run exactly like the networks.

``StereoSGBM`` in its full 8-direction mode (``MODE_HH``), block size 3, smoothness penalties
P1 = 8·3·b² and P2 = 32·3·b² (OpenCV's documented choice for colour images), uniqueness ratio 10,
speckle filtering off. Its number of disparities is ``max_disp`` rounded up to a multiple of 16, as
OpenCV requires, and cut to what the image's width allows (OpenCV refuses a range wider than the
image less 2 px; no pixel can match further than the image is wide anyway). Matches at or beyond
``max_disp``, which the rounded-up search can find, count as unmatched, so that the output stays
in ``[0, max_disp)`` like every network's. Pixels it leaves
without a match (occlusions, left border, failed uniqueness) are filled with the nearest valid
disparity to their left in the row (the background, where the occluder is on the right, as in a
left view), and from the right at the start of a row; a row with no match at all becomes 0. With
``fill_holes=False`` they stay 0, which the metric protocol counts as no value: ``adapt`` labels
with it that way, so that only real matches become labels. Nothing is trained: it has no
parameters and offers no taps. Needs ``opencv-python-headless`` (the ``sgbm`` extra).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from stereodistill.errors import InputError
from stereodistill.models.base import StereoModel
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS


def fill_from_left(disparity: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each invalid pixel takes the nearest valid value to its left in its row (else to its right;
    else 0), vectorised over the whole image."""
    height, width = disparity.shape
    columns = np.arange(width)[None, :].repeat(height, 0)
    left = np.maximum.accumulate(np.where(valid, columns, -1), axis=1)
    right = np.minimum.accumulate(np.where(valid, columns, width)[:, ::-1], axis=1)[:, ::-1]
    source = np.where(left >= 0, left, right)
    rows = np.arange(height)[:, None].repeat(width, 1)
    filled = disparity[rows, np.clip(source, 0, width - 1)]
    return np.where(source < width, filled, 0.0).astype(np.float32)


@MODELS.register("sgbm")
class SGBM(StereoModel):
    """Semi-global block matching (OpenCV): the classical reference, not trainable."""

    arch = "sgbm"
    trainable = False
    pad_multiple: ClassVar[int] = 1
    block_size: ClassVar[int] = 3

    def __init__(self, max_disp: int = 192, fill_holes: bool = True) -> None:
        super().__init__(max_disp=max_disp, fill_holes=fill_holes)
        self.fill_holes = fill_holes

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return image  # OpenCV takes the 8-bit image as it is

    def offered_taps(self) -> tuple[str, ...]:
        return ()

    def tap_shapes(self, *args: object, **kwargs: object) -> dict[str, tuple[int, ...]]:
        return {}  # no taps (and no dry run: OpenCV cannot run on the meta device)

    def prepare(self) -> None:
        self._opencv()

    @staticmethod
    def _opencv() -> Any:
        try:
            import cv2
        except ImportError:
            raise InputError("sgbm needs OpenCV: pip install 'stereodistill[sgbm]'") from None
        return cv2

    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        if left.device.type == "meta":  # a size or MAC count (models, bench): no tensor arithmetic to count
            return StereoOutput(disparity=left.new_empty(left.shape[0], *left.shape[2:]), aux=[])
        cv2 = self._opencv()
        b = self.block_size
        width = left.shape[-1]
        disparities = min(-(-self.max_disp // 16) * 16, (width - 2) // 16 * 16)
        if disparities < 16:
            raise InputError(f"sgbm: images {width} px wide are too narrow (OpenCV needs at least 18 px)")
        matcher = cv2.StereoSGBM_create(
            minDisparity=0,
            numDisparities=disparities,
            blockSize=b,
            P1=8 * 3 * b * b,
            P2=32 * 3 * b * b,
            uniquenessRatio=10,
            speckleWindowSize=0,
            mode=cv2.STEREO_SGBM_MODE_HH,
        )
        outputs = []
        for l_img, r_img in zip(left, right, strict=True):
            views = [
                np.ascontiguousarray((v.detach().float().cpu().clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy())
                for v in (l_img, r_img)
            ]
            raw = matcher.compute(*views).astype(np.float32) / 16.0  # fixed point, 4 fractional bits
            valid = (raw >= 0) & (raw < self.max_disp)  # the search may reach past max_disp (rounded up to 16)
            matched = np.where(valid, raw, 0.0).astype(np.float32)
            outputs.append(torch.from_numpy(fill_from_left(matched, valid) if self.fill_holes else matched))
        return StereoOutput(disparity=torch.stack(outputs).to(left.device), aux=[])
