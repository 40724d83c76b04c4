"""A perceptually ordered colour map for disparity and error images, without plotting libraries.

Anchors run dark blue (far, small disparity) → cyan → green → yellow → red (near); values are
scaled by one ``vmax`` for every image of a comparison, so that colours mean the same disparity.
"""

from __future__ import annotations

import numpy as np

_ANCHORS = np.array(
    [
        [0.05, 0.03, 0.30],
        [0.10, 0.25, 0.80],
        [0.05, 0.65, 0.90],
        [0.20, 0.80, 0.40],
        [0.95, 0.90, 0.15],
        [0.95, 0.45, 0.05],
        [0.60, 0.02, 0.02],
    ],
    dtype=np.float32,
)


def colorize(values: np.ndarray, vmax: float, vmin: float = 0.0, invalid: np.ndarray | None = None) -> np.ndarray:
    """H×W values → H×W×3 float32 RGB in [0, 1]; ``invalid`` (or non-finite) pixels are black."""
    values = np.asarray(values, dtype=np.float32)
    t = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    position = t * (len(_ANCHORS) - 1)
    low = np.minimum(position.astype(np.int64), len(_ANCHORS) - 2)
    frac = (position - low)[..., None]
    rgb = _ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac
    bad = ~np.isfinite(values)
    if invalid is not None:
        bad |= invalid
    rgb[bad] = 0.0
    return rgb.astype(np.float32)


def with_colorbar(rgb: np.ndarray, vmax: float, vmin: float = 0.0, unit: str = "px") -> np.ndarray:
    """``rgb`` (H×W×3) with a colour bar below it, labelled with its range, so a map can be read
    without knowing the scale it was drawn with."""
    from PIL import Image, ImageDraw

    height, width = rgb.shape[:2]
    bar_height, label_height = max(6, height // 24), 12
    ramp = colorize(np.tile(np.linspace(vmin, vmax, width, dtype=np.float32), (bar_height, 1)), vmax, vmin)
    labels = Image.new("RGB", (width, label_height), (255, 255, 255))
    draw = ImageDraw.Draw(labels)
    low, high = f"{vmin:g} {unit}", f"{vmax:g} {unit}"
    draw.text((1, 0), low, fill=(0, 0, 0))
    draw.text((max(1, width - 1 - int(draw.textlength(high))), 0), high, fill=(0, 0, 0))
    return np.concatenate([rgb, ramp, np.asarray(labels, dtype=np.float32) / 255.0], axis=0)
