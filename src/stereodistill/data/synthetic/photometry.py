"""How two cameras differ: per-view gamma, per-channel gain and bias, sensor noise."""

from __future__ import annotations

import math

import numpy as np


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
