"""Textures cut from real photographs that ship inside scikit-image: the edges, fine detail, shading
and text of natural images, which procedural noise lacks and real matching depends on.

The evaluation pair (Middlebury Motorcycle, also in scikit-image) is never among them.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from stereodistill.errors import ConfigError

#: scikit-image's loaders of the photographs and textures used (all read files inside its wheel).
PHOTO_NAMES = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)
MAX_SIDE = 512  # larger photographs are reduced (block average) to about this size when loaded
LEVELS = 3  # each photograph at full, 1/2 and 1/4 size: a texture drawn smaller reads the level nearest above


def _reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """Block average by a whole ``factor`` (the edges that do not fill a block are cut)."""
    height, width = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    blocks = image[:height, :width].astype(np.float32).reshape(height // factor, factor, width // factor, factor, 3)
    return np.ascontiguousarray(blocks.mean(axis=(1, 3)), dtype=np.float32)


def _as_rgb(image: np.ndarray) -> tuple[np.ndarray, ...]:
    """H×W×3 float32 in [0, 1], reduced by whole factors until its longest side is at most MAX_SIDE,
    and its LEVELS − 1 successive halvings (a mip pyramid)."""
    rgb = image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    levels = [_reduce(rgb.astype(np.float32) / 255.0, max(1, math.ceil(max(rgb.shape[:2]) / MAX_SIDE)))]
    for _ in range(LEVELS - 1):
        levels.append(_reduce(levels[-1], 2))
    return tuple(levels)


@functools.cache
def photo_bank() -> tuple[tuple[np.ndarray, ...], ...]:
    """Each photograph's levels (H×W×3 float32, full size first), loaded once per process (about
    0.15 s, 53 MB)."""
    from skimage import data

    photos = []
    for name in PHOTO_NAMES:
        try:
            photos.append(_as_rgb(np.asarray(getattr(data, name)())))
        except (AttributeError, OSError, ValueError) as error:  # an older or trimmed scikit-image
            raise ConfigError(
                f"synthetic photo textures need scikit-image's image {name!r}, which could not be read "
                f"({error}); set photo_prob: 0 to render procedural textures only"
            ) from error
    return tuple(photos)


def photo_params(rng: np.random.Generator) -> dict[str, Any]:
    """Which photograph, at what scale, orientation and offset, and a colour transform: a random
    3×3 mix around a grey-to-saturated axis, a contrast and a mean level."""
    saturation = rng.uniform(0.0, 1.3)
    mix = saturation * np.eye(3) + (1.0 - saturation) / 3.0 * np.ones((3, 3)) + rng.normal(0.0, 0.08, (3, 3))
    return {
        "kind": "photo",
        "photo": int(rng.integers(0, len(PHOTO_NAMES))),
        "scale": math.exp(rng.uniform(math.log(0.15), math.log(0.6))),  # downsampled: detail at every pixel
        "flip": (bool(rng.integers(0, 2)), bool(rng.integers(0, 2)), bool(rng.integers(0, 2))),
        "origin": (float(rng.uniform(0, 1)), float(rng.uniform(0, 1))),
        "colour": (rng.uniform(0.5, 1.3) * mix).astype(np.float32),
        "level": rng.uniform(0.2, 0.8, 3).astype(np.float32),
    }


def _reflect(u: np.ndarray, size: int) -> np.ndarray:
    """Coordinates mirrored into [0, size − 1], so a block larger than the photograph tiles it seamlessly."""
    period = 2.0 * (size - 1)
    u = np.mod(u, period)
    return (size - 1) - np.abs(u - (size - 1))


def _lerp_axis(image: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """``image`` resampled along ``axis`` at fractional ``coords`` by linear interpolation."""
    i0 = np.floor(coords).astype(np.intp)
    i1 = np.minimum(i0 + 1, image.shape[axis] - 1)
    shape = [1, 1, 1]
    shape[axis] = coords.size
    frac = (coords - i0).astype(np.float32).reshape(shape)
    low = np.take(image, i0, axis=axis)
    low += (np.take(image, i1, axis=axis) - low) * frac
    return low


def photo_block(params: dict[str, Any], ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The layer's colours (len(ys) × len(xs) × 3) on canvas rows ``ys`` and columns ``xs``.

    A photograph drawn at ``scale`` < 1 is read from the pyramid level whose pixels are nearest to,
    and no smaller than, the canvas's: fewer texels to gather, and less aliasing than sampling
    the full-size photograph every few pixels."""
    level = min(LEVELS - 1, max(0, math.floor(-math.log2(params["scale"]))))
    image = photo_bank()[params["photo"]][level]
    flip_y, flip_x, transpose = params["flip"]
    if transpose:
        image = image.transpose(1, 0, 2)
    image = image[:: -1 if flip_y else 1, :: -1 if flip_x else 1]
    scale = params["scale"] * 2**level
    oy, ox = params["origin"]
    height, width = image.shape[:2]
    rows = _reflect(ys / scale + oy * height, height)
    cols = _reflect(xs / scale + ox * width, width)
    # Only the source columns the block reads, then rows, then columns: two small gathers.
    first, last = int(np.floor(cols.min())), min(width - 1, int(np.floor(cols.max())) + 1)
    block = _lerp_axis(image[:, first : last + 1], rows, axis=0)
    block = _lerp_axis(block, cols - first, axis=1)
    flat = block.reshape(-1, 3)
    centred = flat - flat.mean(axis=0)
    return (centred @ params["colour"].T + params["level"]).reshape(block.shape)
