"""Textures painted in left-view coordinates: value noise from a shared bank, stripes, checkers,
gradients, near-flat patches and real photographs (:mod:`.photos`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from stereodistill.data.synthetic.config import BANK_PAD, SynthConfig
from stereodistill.data.synthetic.photos import photo_block
from stereodistill.data.synthetic.render import Placed


def _interp_matrix(n: int, cell: float, phase: float) -> tuple[np.ndarray, int]:
    """n×g matrix that upsamples a g-point random grid to n pixels with smoothstep-weighted lerp."""
    u = np.arange(n, dtype=np.float64) / cell + phase
    i0 = np.floor(u).astype(np.int64)
    f = u - i0
    f = f * f * (3.0 - 2.0 * f)
    g = int(i0.max()) + 2
    m = np.zeros((n, g), np.float32)
    rows = np.arange(n)
    m[rows, i0] = 1.0 - f
    m[rows, i0 + 1] = f
    return m, g


def _value_noise(rng: np.random.Generator, h: int, w: int, cells: Sequence[float]) -> np.ndarray:
    """Multi-octave value noise (h×w, zero mean, unit std) from small random grids and two matmuls each."""
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for cell in cells:
        my, gy = _interp_matrix(h, cell, rng.uniform(0, 1))
        mx, gx = _interp_matrix(w, cell, rng.uniform(0, 1))
        grid = rng.uniform(-amp, amp, (gy, gx)).astype(np.float32)
        # Pick the cheaper association of my @ grid @ mx.T.
        if h * gy * gx + h * gx * w <= gy * gx * w + h * gy * w:
            out += (my @ grid) @ mx.T
        else:
            out += my @ (grid @ mx.T)
        amp *= 0.6
    out -= out[::7, ::7].mean()
    out *= 1.0 / max(float(out[::7, ::7].std()), 1e-6)
    return out


def noise_bank(rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    """Three shared noise fields (fine, medium, coarse) over the canvas plus a margin for offsets."""
    h, w = config.height + BANK_PAD, config.canvas_width + BANK_PAD
    scale = max(1.0, min(config.height, config.width) / 256.0)
    return np.stack(
        [
            _value_noise(rng, h, w, (3.0, 6.0 * scale, 12.0 * scale)),
            _value_noise(rng, h, w, (10.0 * scale, 20.0 * scale, 40.0 * scale)),
            _value_noise(rng, h, w, (48.0 * scale, 96.0 * scale)),
        ]
    )


def _sinusoid(omega: float, angle: float, phase: float, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """sin(ω (x cos θ + y sin θ) + φ) on the ys×xs grid, as a sum of two outer products (no 2-D trig)."""
    ax, ay = omega * math.cos(angle) * xs, omega * math.sin(angle) * ys + phase
    return np.sin(ay)[:, None] * np.cos(ax)[None, :] + np.cos(ay)[:, None] * np.sin(ax)[None, :]


def _pattern(params: dict[str, Any], bank: np.ndarray, p: Placed) -> tuple[np.ndarray, np.ndarray]:
    """Two pattern fields (roughly in [-1, 1]) of a layer over its texture block."""
    oy, ox = params["offset"]
    rows = slice(p.y0 + oy, p.y1 + oy)
    cols = slice(p.tx0 + ox, p.tx1 + ox)
    fine, mid, coarse = bank[:, rows, cols]
    mix = params["mix"]
    kind = params["kind"]
    ys = np.arange(p.y0, p.y1, dtype=np.float32)
    xs = np.arange(p.tx0, p.tx1, dtype=np.float32)
    if kind == "noise":
        first = mix[0] * fine + mix[1] * mid + mix[2] * coarse
        # The medium field again, read at the mirrored offset: a second, independent colour variation.
        other = bank[1, p.y0 + BANK_PAD - oy : p.y1 + BANK_PAD - oy, p.tx0 + BANK_PAD - ox : p.tx1 + BANK_PAD - ox]
        return first, other
    if kind == "flat":
        return fine, coarse
    if kind == "stripes":
        wave = _sinusoid(params["omega"], params["angle"], params["phase"], ys, xs)
        return np.clip(params["sharp"] * wave, -1.0, 1.0, out=wave), mix[0] * fine + mix[1] * mid
    if kind == "checkers":
        angle, omega = params["angle"], params["omega"]
        wave = _sinusoid(omega, angle, params["phase"][0], ys, xs)
        wave *= _sinusoid(omega, angle + np.pi / 2, params["phase"][1], ys, xs)
        return np.clip(params["sharp"] * wave, -1.0, 1.0, out=wave), mix[0] * fine + mix[1] * coarse
    # gradient: a linear ramp across the block, with a little coarse variation
    span = max(p.tx1 - p.tx0, p.y1 - p.y0, 1)
    gx, gy = 2.0 * math.cos(params["angle"]) / span, 2.0 * math.sin(params["angle"]) / span
    ramp = ((ys - ys.mean()) * gy)[:, None] + ((xs - xs.mean()) * gx)[None, :]
    return ramp, 0.5 * coarse + 0.3 * mix[0] * fine


def textures(layers: list[Placed], bank: np.ndarray) -> np.ndarray:
    """All layers' texture blocks in one (rows × 3) buffer: colour = base + P1·col1 + P2·col2."""
    total = sum((p.y1 - p.y0) * p.tex_width for p in layers)
    buffer = np.empty((total + 1, 3), np.float32)  # +1: the interpolation neighbour of the last texel
    buffer[-1] = 0.0
    for p in layers:
        params = p.layer.texture
        if params["kind"] == "photo":
            ys = np.arange(p.y0, p.y1, dtype=np.float32)
            xs = np.arange(p.tx0, p.tx1, dtype=np.float32)
            buffer[p.base : p.base + ys.size * xs.size] = photo_block(params, ys, xs).reshape(-1, 3)
            continue
        first, second = _pattern(params, bank, p)
        block = buffer[p.base : p.base + first.size].reshape(*first.shape, 3)
        channel = np.empty_like(first)
        scratch = np.empty_like(first)
        # One channel at a time on contiguous planes: broadcasting a length-3 axis is several times slower.
        for ch in range(3):
            np.multiply(first, np.float32(params["col1"][ch]), out=channel)
            channel += np.multiply(second, np.float32(params["col2"][ch]), out=scratch)
            channel += np.float32(params["base"][ch])
            block[..., ch] = channel
    return buffer
