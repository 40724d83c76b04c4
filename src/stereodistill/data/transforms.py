"""Transforms on sample dicts (training augmentation) and the padding helper every model uses.

Augmentations keep the stereo geometry intact: crops cut both views and the ground truth at the
same place, a vertical flip flips all of them (rows stay rectified), colour jitter never moves a
pixel. Randomness comes from ``torch``'s generator, which the data loader seeds per worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

Sample = dict[str, Any]
_SPATIAL = ("left", "right", "disp", "valid", "occlusion")


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for transform in self.transforms:
            sample = transform(sample)
        return sample


def _rand(low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high))


# ------------------------------------------------------------------------------------- padding
@dataclass(frozen=True)
class Padding:
    """Pixels added on each side; :meth:`crop` removes exactly them from a prediction."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def crop(self, tensor: torch.Tensor) -> torch.Tensor:
        """Crop the last two dims back to the size before padding."""
        height, width = tensor.shape[-2:]
        return tensor[..., self.top : height - self.bottom, self.left : width - self.right]

    def crop_scaled(self, tensor: torch.Tensor, padded: tuple[int, int]) -> torch.Tensor:
        """Crop a map of the padded input (``padded``: its H×W) held at a coarser scale s (last two
        dims H/s × W/s): the cells wholly in the padding go, so any network's s-scale tap of an H×W
        image is ceil(H/s) × ceil(W/s) whatever its padding multiple. Maps at no integer scale of
        the padded input are returned as they are."""
        height, width = tensor.shape[-2:]
        scale = padded[0] // height
        if not height or scale * height != padded[0] or scale * width != padded[1]:
            return tensor
        top, bottom = self.top // scale, self.bottom // scale
        left, right = self.left // scale, self.right // scale
        return tensor[..., top : height - bottom, left : width - right]

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.top, self.bottom, self.left, self.right)


def padding_for(height: int, width: int, multiple: int, mode: str = "top_right") -> Padding:
    """The padding that makes H and W multiples of ``multiple``.

    ``top_right`` pads above and to the right (the left image border, where the disparity search
    starts, stays put, as PSMNet/GwcNet do); ``symmetric`` splits it between both sides.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be ≥ 1, got {multiple}")
    pad_h = -height % multiple
    pad_w = -width % multiple
    if mode == "top_right":
        return Padding(top=pad_h, bottom=0, left=0, right=pad_w)
    if mode == "symmetric":
        return Padding(top=pad_h // 2, bottom=pad_h - pad_h // 2, left=pad_w // 2, right=pad_w - pad_w // 2)
    raise ValueError(f"unknown padding mode {mode!r} (expected 'top_right' or 'symmetric')")


def pad_to_multiple(
    tensor: torch.Tensor, multiple: int, mode: str = "top_right", value: float = 0.0
) -> tuple[torch.Tensor, Padding]:
    """Pad the last two dims of ``tensor`` to multiples of ``multiple`` with a constant.

    Returns the padded tensor and the :class:`Padding` whose ``crop`` undoes it exactly.
    """
    padding = padding_for(tensor.shape[-2], tensor.shape[-1], multiple, mode)
    if padding == Padding():
        return tensor, padding
    padded = F.pad(tensor, (padding.left, padding.right, padding.top, padding.bottom), value=value)
    return padded, padding


class PadToMultiple:
    """Pad a sample's views (with 0) and ground truth (invalid) to a multiple; records ``meta['pad']``."""

    def __init__(self, multiple: int, mode: str = "top_right") -> None:
        self.multiple = multiple
        self.mode = mode

    def __call__(self, sample: Sample) -> Sample:
        height, width = sample["left"].shape[-2:]
        padding = padding_for(height, width, self.multiple, self.mode)
        out = _pad_sample(sample, padding)
        out["meta"] = {**sample.get("meta", {}), "pad": padding.as_tuple()}
        return out


def _pad_sample(sample: Sample, padding: Padding) -> Sample:
    """Pad every spatial entry with zeros (ground truth padding is therefore invalid)."""
    out = dict(sample)
    sides = (padding.left, padding.right, padding.top, padding.bottom)
    for key in _SPATIAL:
        if key in sample:
            out[key] = F.pad(sample[key], sides)
    return out


# ---------------------------------------------------------------------------------- augmentation
class RandomCrop:
    """Crop both views and the ground truth at one random window; pads first if the image is smaller."""

    def __init__(self, height: int, width: int) -> None:
        self.height = height
        self.width = width

    def __call__(self, sample: Sample) -> Sample:
        height, width = sample["left"].shape[-2:]
        if height < self.height or width < self.width:
            grow = Padding(bottom=max(0, self.height - height), right=max(0, self.width - width))
            sample = _pad_sample(sample, grow)
            height, width = sample["left"].shape[-2:]
        top = int(torch.randint(0, height - self.height + 1, ()))
        left = int(torch.randint(0, width - self.width + 1, ()))
        out = dict(sample)
        for key in _SPATIAL:
            if key in sample:
                out[key] = sample[key][..., top : top + self.height, left : left + self.width]
        return out


class VerticalFlip:
    """Flip both views and the ground truth upside down (keeps rows rectified) with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: Sample) -> Sample:
        if _rand(0.0, 1.0) >= self.p:
            return sample
        out = dict(sample)
        for key in _SPATIAL:
            if key in sample:
                out[key] = sample[key].flip(-2)
        return out


class ColorJitter:
    """Brightness, contrast, saturation and gamma jitter.

    With probability ``asymmetric_p`` each view gets its own parameters (the views of real stereo
    rigs differ photometrically); otherwise both share one draw.
    """

    def __init__(
        self,
        brightness: float = 0.3,
        contrast: float = 0.3,
        saturation: float = 0.3,
        gamma: tuple[float, float] = (0.8, 1.2),
        asymmetric_p: float = 0.2,
    ) -> None:
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.gamma = gamma
        self.asymmetric_p = asymmetric_p

    def _draw(self) -> tuple[float, float, float, float]:
        return (
            _rand(1 - self.brightness, 1 + self.brightness),
            _rand(1 - self.contrast, 1 + self.contrast),
            _rand(1 - self.saturation, 1 + self.saturation),
            _rand(*self.gamma),
        )

    @staticmethod
    def _apply(image: torch.Tensor, params: tuple[float, float, float, float]) -> torch.Tensor:
        brightness, contrast, saturation, gamma = params
        image = image * brightness
        gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0)
        image = (image - gray.mean()) * contrast + gray.mean()
        gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0)
        image = (image - gray) * saturation + gray
        return image.clamp(0.0, 1.0).pow(gamma)

    def __call__(self, sample: Sample) -> Sample:
        left_params = self._draw()
        right_params = self._draw() if _rand(0.0, 1.0) < self.asymmetric_p else left_params
        out = dict(sample)
        out["left"] = self._apply(sample["left"], left_params)
        out["right"] = self._apply(sample["right"], right_params)
        return out
