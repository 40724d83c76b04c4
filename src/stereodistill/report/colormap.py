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


#: Errors: a map of its own, so an error map is never read as a disparity map: light (no error)
#: through yellow and orange to dark red (at or beyond the scale's top).
ERROR_ANCHORS = np.array(
    [[0.97, 0.97, 0.95], [0.99, 0.85, 0.45], [0.95, 0.50, 0.15], [0.75, 0.10, 0.05], [0.40, 0.0, 0.0]],
    dtype=np.float32,
)


def colorize(
    values: np.ndarray,
    vmax: float,
    vmin: float = 0.0,
    invalid: np.ndarray | None = None,
    anchors: np.ndarray = _ANCHORS,
) -> np.ndarray:
    """H×W values → H×W×3 float32 RGB in [0, 1]; ``invalid`` (or non-finite) pixels are black.
    ``anchors``: the colour map (disparity by default; :data:`ERROR_ANCHORS` for errors)."""
    values = np.asarray(values, dtype=np.float32)
    t = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    position = t * (len(anchors) - 1)
    low = np.minimum(position.astype(np.int64), len(anchors) - 2)
    frac = (position - low)[..., None]
    rgb = anchors[low] * (1 - frac) + anchors[low + 1] * frac
    bad = ~np.isfinite(values)
    if invalid is not None:
        bad |= invalid
    rgb[bad] = 0.0
    return rgb.astype(np.float32)


def colorbar(
    width: int, vmax: float, vmin: float = 0.0, unit: str = "px", height: int = 8, anchors: np.ndarray = _ANCHORS
) -> np.ndarray:
    """A colour bar ``width`` pixels wide with its range written under it (H×W×3 in [0, 1])."""
    from PIL import Image, ImageDraw

    ramp = colorize(np.tile(np.linspace(vmin, vmax, width, dtype=np.float32), (height, 1)), vmax, vmin, anchors=anchors)
    labels = Image.new("RGB", (width, 12), (255, 255, 255))
    draw = ImageDraw.Draw(labels)
    low, high = f"{vmin:g} {unit}", f"{vmax:g} {unit}"
    draw.text((1, 0), low, fill=(0, 0, 0))
    draw.text((max(1, width - 1 - int(draw.textlength(high))), 0), high, fill=(0, 0, 0))
    return np.concatenate([ramp, np.asarray(labels, dtype=np.float32) / 255.0], axis=0)


def with_colorbar(rgb: np.ndarray, vmax: float, vmin: float = 0.0, unit: str = "px") -> np.ndarray:
    """``rgb`` (H×W×3) with a colour bar below it, labelled with its range, so a map can be read
    without knowing the scale it was drawn with."""
    height, width = rgb.shape[:2]
    return np.concatenate([rgb, colorbar(width, vmax, vmin, unit, height=max(6, height // 24))], axis=0)
