"""How two cameras differ: per-view gamma, per-channel gain and bias, sensor noise; and, as optics
and encoders add, vignetting, defocus blur and JPEG artefacts."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image


def photometric(rng: np.random.Generator, image: np.ndarray, noise_std: float) -> np.ndarray:
    """Per-view gamma, per-channel gain and bias, and sensor noise, as two cameras differ (in place)."""
    gamma = np.float32(math.exp(rng.uniform(-0.15, 0.15)))
    gain = (rng.uniform(0.88, 1.12) * rng.uniform(0.95, 1.05, 3)).astype(np.float32)
    bias = (rng.uniform(-0.04, 0.04) + rng.uniform(-0.015, 0.015, 3)).astype(np.float32)
    sigma = float(rng.uniform(0.0, noise_std))
    height, width = image.shape[:2]
    rows = image.reshape(height, width * 3)  # per-channel vectors tiled along a row broadcast fast
    np.maximum(rows, np.float32(1e-4), out=rows)
    np.log(rows, out=rows)
    rows *= gamma
    np.exp(rows, out=rows)
    rows *= np.tile(gain, width)
    rows += np.tile(bias, width)
    if sigma > 0:
        # Uniform noise of std sigma from random bytes: 256 levels are plenty, and it is cheap.
        noise = np.frombuffer(rng.bytes(rows.size), np.uint8).astype(np.float32).reshape(rows.shape)
        step = sigma * math.sqrt(12.0) / 256.0
        noise *= np.float32(step)
        rows += noise
        rows -= np.float32(127.5 * step)
    return image


def _blur3(image: np.ndarray, weight: float) -> np.ndarray:
    """Separable 3-tap blur ``[w, 1 − 2w, w]`` along rows then columns, edges replicated (in place)."""
    w, centre = np.float32(weight), np.float32(1.0 - 2.0 * weight)
    for axis in (0, 1):
        source = image.copy()
        view = np.moveaxis(image, axis, 0)
        src = np.moveaxis(source, axis, 0)
        view *= centre
        view[1:] += w * src[:-1]
        view[:-1] += w * src[1:]
        view[:1] += w * src[:1]
        view[-1:] += w * src[-1:]
    return image


def camera_effects(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """One view through its own lens and encoder (in place): vignetting (up to 35 % darker at half the
    image diagonal from an off-centre optical centre, so up to about 59 % in the farthest corner),
    defocus blur (σ up to about 0.8 px) on half the views, JPEG (quality 55–95) on half the views. The
    views differ, as two real cameras do; the geometry does not change."""
    height, width = image.shape[:2]
    strength = rng.uniform(0.0, 0.35)
    cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
    radius2 = 0.25 * (height * height + width * width)
    ry = ((np.arange(height, dtype=np.float32) - cy) ** 2 / radius2)[:, None]
    rx = ((np.arange(width, dtype=np.float32) - cx) ** 2 / radius2)[None, :]
    image *= (1.0 - np.float32(strength) * (ry + rx))[..., None]
    if rng.uniform() < 0.5:
        _blur3(image, rng.uniform(0.05, 0.3))  # w = 0.3 is a Gaussian of σ ≈ 0.8 px
    if rng.uniform() < 0.5:
        buffer = io.BytesIO()
        Image.fromarray(np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)).save(
            buffer, format="JPEG", quality=int(rng.integers(55, 96))
        )
        buffer.seek(0)
        image[...] = np.asarray(Image.open(buffer), dtype=np.float32) * np.float32(1.0 / 255.0)
    return image
