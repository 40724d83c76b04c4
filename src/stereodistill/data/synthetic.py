"""Procedural stereo pairs with exact ground truth: the project's embedded default dataset.

A scene is a background plus a few objects (polygons, ellipses, star-shaped blobs). Every layer lies
on a slanted disparity plane ``D(x, y) = a + b·x + c·y`` given in *left-view* coordinates and carries
a texture painted in left-view coordinates too. Both views are rendered from the same continuous
scene, so the geometry is exact rather than produced by warping one image into the other:

* left view: at each integer pixel the covering layer with the largest disparity (the closest) wins;
* right view: the point of layer k seen at right pixel ``xr`` has left abscissa
  ``x = (xr + a + c·y) / (1 − b)`` (the solution of ``x − D(x, y) = xr``), where the layer's shape
  and plane are evaluated analytically and its texture is sampled by linear interpolation along x;
* occlusion: a left pixel is hidden in the right view when ``x − d`` leaves the frame or another
  layer covers that right-view point with a larger disparity, again evaluated analytically.

Slopes are bounded (``|b| < 1``) so that ``x ↦ x − D`` is increasing: a plane never occludes itself.
Shapes are polygons (ellipses and blobs with many vertices); each row of an image has a constant y,
so the crossings of a row with a polygon's edges are computed once per row and the inside test over
a whole row block is a handful of comparisons. Everything is vectorised NumPy with loops only over
layers, polygon crossings and noise octaves; a 256×512 pair takes about 17 ms on one core of a
Xeon server (see ``benchmarks/bench_synthetic.py``).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from stereodistill.data.formats import write_image, write_pfm
from stereodistill.data.sample import make_sample
from stereodistill.errors import ConfigError, DataError
from stereodistill.fileio import atomic_path, write_text_atomic

__all__ = ["SynthConfig", "SyntheticPair", "SyntheticStereo", "generate_pair", "write_synthetic"]

FRAMES_PER_SCENE = 10
_SPLIT_DIRS = {"train": "TRAIN", "test": "TEST"}
_SPLIT_SEEDS = {"train": 0, "test": 1}
_OCCLUSION_EPS = 0.01  # px: a layer occludes only when clearly closer (float32 rounding is ~1e-4 px)
_BANK_PAD = 48  # px of extra noise canvas, so that layers read the shared noise at different offsets
_TEXTURE_KINDS = ("noise", "stripes", "checkers", "gradient", "flat")


@dataclass
class SyntheticPair:
    """One rendered pair; ``disp[y, x]`` matches the right pixel ``x − disp[y, x]``."""

    left: np.ndarray  # H×W×3 float32 in [0, 1]
    right: np.ndarray  # H×W×3 float32 in [0, 1]
    disp: np.ndarray  # H×W float32, left-view disparity (positive)
    disp_right: np.ndarray  # H×W float32, right-view disparity: right x matches left x + disp_right
    occlusion: np.ndarray  # H×W bool, True where a left pixel is not visible in the right view


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator; every ground-truth disparity lies in ``[min_disp, max_disp)``."""

    height: int = 256
    width: int = 512
    max_disp: int = 64
    n_objects: int = 6
    photometric: bool = True
    min_disp: float = 1.0  # smallest disparity of the background (px)
    background_max_frac: float = 0.35  # background disparities stay below this share of max_disp
    max_slope: float = 0.25  # bound on |∂D/∂x| and |∂D/∂y| of every plane (must be < 1)
    low_texture_prob: float = 0.12  # chance that a layer is nearly uniform
    noise_std: float = 0.01  # largest per-view sensor noise (photometric only)

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ConfigError(f"synthetic size must be at least 8x8, got {self.width}x{self.height}")
        if self.n_objects < 0:
            raise ConfigError(f"n_objects must be >= 0, got {self.n_objects}")
        if not 0 <= self.max_slope < 0.5:
            raise ConfigError(f"max_slope must be in [0, 0.5), got {self.max_slope}")
        if not 0 < self.background_max_frac < 1:
            raise ConfigError(f"background_max_frac must be in (0, 1), got {self.background_max_frac}")
        if self.min_disp <= 0 or self.background_max_frac * self.max_disp <= self.min_disp:
            raise ConfigError(
                f"max_disp {self.max_disp} is too small: the background needs disparities from "
                f"min_disp {self.min_disp} up to background_max_frac × max_disp "
                f"({self.background_max_frac} × {self.max_disp})"
            )
        if not 0 <= self.low_texture_prob <= 1:
            raise ConfigError(f"low_texture_prob must be in [0, 1], got {self.low_texture_prob}")
        if self.noise_std < 0:
            raise ConfigError(f"noise_std must be >= 0, got {self.noise_std}")

    @property
    def canvas_width(self) -> int:
        """Width of the left-coordinate canvas the right view can see (``x = xr + d < W + max_disp``)."""
        return self.width + math.ceil(self.max_disp) + 2

    @property
    def disp_high(self) -> float:
        """Upper bound of generated disparities, strictly below ``max_disp``."""
        return self.max_disp - max(0.25, 0.02 * self.max_disp)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthConfig:
        """Rebuild a config from ``asdict`` output (as stored in ``synth.json``); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown SynthConfig fields: {', '.join(unknown)}")
        return cls(**data)


# ------------------------------------------------------------------------------------- scene model
@dataclass
class _Layer:
    """A planar layer: shape (polygon, None = everywhere), plane, texture parameters, extents."""

    verts: np.ndarray | None  # n×2 (x, y) polygon in left coordinates, or None for the background
    a: float
    b: float
    c: float
    xmin: float
    xmax: float
    ymin: float
    ymax: float
    dlo: float  # plane range over the shape's bounding box
    dhi: float
    texture: dict[str, Any]


def _plane_in_range(
    rng: np.random.Generator, box: tuple[float, float, float, float], lo: float, hi: float, max_slope: float
) -> tuple[float, float, float, float, float]:
    """Random plane whose values over ``box`` (xmin, xmax, ymin, ymax) stay within [lo, hi].

    Returns (a, b, c, dlo, dhi) with dlo/dhi the plane's exact extremes over the box.
    """
    xmin, xmax, ymin, ymax = box
    xc, yc = 0.5 * (xmin + xmax), 0.5 * (ymin + ymax)
    hw, hh = max(0.5 * (xmax - xmin), 1.0), max(0.5 * (ymax - ymin), 1.0)
    dc = float(rng.uniform(lo, hi))
    budget = float(rng.uniform(0.0, 1.0)) * min(dc - lo, hi - dc)  # total variation allowed around dc
    share = float(rng.uniform(0.0, 1.0))
    gx = min(max_slope, budget * share / hw) * float(rng.choice((-1.0, 1.0)))
    gy = min(max_slope, budget * (1.0 - share) / hh) * float(rng.choice((-1.0, 1.0)))
    spread = abs(gx) * hw + abs(gy) * hh
    return dc - gx * xc - gy * yc, gx, gy, dc - spread, dc + spread


def _shape(rng: np.random.Generator, cx: float, cy: float, r0: float) -> np.ndarray:
    """Polygon vertices (n×2) of a random polygon, ellipse or star-shaped blob around (cx, cy)."""
    kind = rng.choice(("polygon", "ellipse", "blob"), p=(0.4, 0.3, 0.3))
    if kind == "polygon":
        n = int(rng.integers(3, 9))
        theta = 2 * np.pi * (np.arange(n) + rng.uniform(-0.3, 0.3, n)) / n
        radius = r0 * rng.uniform(0.55, 1.0, n)
    else:
        n = 48
        theta = 2 * np.pi * np.arange(n) / n
        radius = np.full(n, r0)
        if kind == "blob":  # r(θ) = r0 (1 + Σ a_j cos(jθ + φ_j)), Σ a_j ≤ 0.6 keeps r > 0
            amps = rng.uniform(0.0, 1.0, 4)
            amps *= rng.uniform(0.25, 0.6) / amps.sum()
            phases = rng.uniform(0, 2 * np.pi, 4)
            orders = np.arange(2, 6)
            radius = r0 * (1 + (amps * np.cos(np.outer(theta, orders) + phases)).sum(axis=1))
    stretch = math.exp(rng.uniform(-0.5, 0.5))
    px, py = radius * np.cos(theta) * stretch, radius * np.sin(theta) / stretch
    rot = rng.uniform(0, 2 * np.pi)
    cos, sin = math.cos(rot), math.sin(rot)
    return np.stack([cx + cos * px - sin * py, cy + sin * px + cos * py], axis=1)


def _texture_params(rng: np.random.Generator, config: SynthConfig, background: bool) -> dict[str, Any]:
    """Texture kind and its random parameters; colours are random RGB."""
    if rng.uniform() < config.low_texture_prob:
        kind = "flat"
    else:  # mostly noise; a striped or checkered background everywhere would be a dull scene
        weights = (0.7, 0.1, 0.1, 0.1) if background else (0.5, 0.17, 0.16, 0.17)
        kind = str(rng.choice(_TEXTURE_KINDS[:4], p=weights))
    base = rng.uniform(0.15, 0.85, 3)

    def colour(contrast: float) -> np.ndarray:
        direction = 0.8 + rng.normal(0.0, 0.5, 3)  # mostly luminance, some chroma
        return contrast * direction / max(np.linalg.norm(direction) / math.sqrt(3), 0.3)

    params: dict[str, Any] = {
        "kind": kind,
        "base": base,
        "offset": (int(rng.integers(0, _BANK_PAD + 1)), int(rng.integers(0, _BANK_PAD + 1))),
        "mix": [float(v) for v in rng.dirichlet((1.0, 1.0, 1.0)) * rng.choice((-1.0, 1.0), 3)],
    }
    if kind == "flat":
        params["col1"] = colour(rng.uniform(0.005, 0.02))
        params["col2"] = colour(rng.uniform(0.0, 0.01))
        return params
    params["col1"] = colour(rng.uniform(0.12, 0.3))
    params["col2"] = colour(rng.uniform(0.02, 0.12) if kind != "noise" else rng.uniform(0.05, 0.2))
    params["angle"] = rng.uniform(0, np.pi)
    if kind == "stripes":
        period = math.exp(rng.uniform(math.log(6.0), math.log(40.0)))
        params["omega"] = 2 * np.pi / period
        params["sharp"] = max(1.0, min(rng.uniform(1.0, 4.0), period / (2 * np.pi)))  # edges ≥ ~2 px wide
        params["phase"] = rng.uniform(0, 2 * np.pi)
    elif kind == "checkers":
        period = math.exp(rng.uniform(math.log(10.0), math.log(60.0)))
        params["omega"] = 2 * np.pi / period
        params["sharp"] = max(1.0, min(rng.uniform(2.0, 8.0), period / 8.0))
        params["phase"] = [float(v) for v in rng.uniform(0, 2 * np.pi, 2)]
    return params


def _sample_scene(rng: np.random.Generator, config: SynthConfig) -> list[_Layer]:
    """Background (layer 0) plus ``n_objects`` polygons, each with a plane and a texture."""
    h, w, wc = config.height, config.width, config.canvas_width
    lo, hi = config.min_disp, config.disp_high
    bg_hi = config.background_max_frac * config.max_disp
    a, b, c, dlo, dhi = _plane_in_range(rng, (0.0, float(wc), 0.0, float(h)), lo, bg_hi, config.max_slope)
    layers = [_Layer(None, a, b, c, 0.0, float(wc), 0.0, float(h), dlo, dhi, _texture_params(rng, config, True))]
    size = float(min(h, w))
    for k in range(config.n_objects):
        # One large object per scene, the others log-uniform from small to fairly large.
        r0 = size * (rng.uniform(0.3, 0.5) if k == 0 else math.exp(rng.uniform(math.log(0.06), math.log(0.4))))
        cx, cy = rng.uniform(-0.05 * w, 1.05 * w), rng.uniform(-0.05 * h, 1.05 * h)
        verts = _shape(rng, cx, cy, r0)
        box = (float(verts[:, 0].min()), float(verts[:, 0].max()), float(verts[:, 1].min()), float(verts[:, 1].max()))
        a, b, c, dlo, dhi = _plane_in_range(rng, box, bg_hi, hi, config.max_slope)
        layers.append(_Layer(verts, a, b, c, *box, dlo, dhi, _texture_params(rng, config, False)))
    return layers


# ---------------------------------------------------------------------------------- shape tests
def _row_crossings(verts: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Sorted x of the crossings of each row ``y`` with the polygon's edges (rows × m, +inf padded).

    A half-open rule on the edge's end points makes a vertex on a row count once; m is the largest
    crossing count of any row (even), typically 2.
    """
    x1, y1 = verts[:, 0], verts[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    yy = ys.astype(np.float64)[:, None]
    crosses = (y1 <= yy) != (y2 <= yy)
    dy = np.where(y2 == y1, 1.0, y2 - y1)
    xs = np.where(crosses, x1 + (yy - y1) * ((x2 - x1) / dy), np.inf)
    xs.sort(axis=1)
    m = int(crosses.sum(axis=1).max(initial=0))
    return np.ascontiguousarray(xs[:, :m], dtype=np.float32)


def _inside(x: np.ndarray, crossings: np.ndarray) -> np.ndarray:
    """Crossing-number test: x (rows×cols or 1×cols) is inside where an odd number of crossings ≤ x."""
    inside = x >= crossings[:, 0:1]
    if crossings.shape[1] == 2:
        return inside & (x < crossings[:, 1:2])
    for j in range(1, crossings.shape[1]):
        inside ^= x >= crossings[:, j : j + 1]
    return inside


# ----------------------------------------------------------------------------------- rendering
@dataclass
class _Placed:
    """A layer clipped to the frame: its rows, column ranges per view and texture block."""

    layer: _Layer
    y0: int  # rows y0..y1-1 (same in both views)
    y1: int
    crossings: np.ndarray | None
    tx0: int  # texture block columns tx0..tx1-1 of the canvas
    tx1: int
    base: int  # first row of this layer's texture block in the shared texture buffer

    @property
    def tex_width(self) -> int:
        return self.tx1 - self.tx0


def _place(layers: list[_Layer], config: SynthConfig) -> list[_Placed]:
    """Clip layers to the frame, compute row crossings and lay texture blocks out in one buffer."""
    placed: list[_Placed] = []
    base = 0
    for layer in layers:
        y0, y1 = max(0, math.ceil(layer.ymin)), min(config.height, math.floor(layer.ymax) + 1)
        tx0 = max(0, math.floor(layer.xmin) - 1)
        tx1 = min(config.canvas_width, math.ceil(layer.xmax) + 2)
        if y1 <= y0 or tx1 <= tx0:
            continue
        crossings = None
        if layer.verts is not None:
            crossings = _row_crossings(layer.verts, np.arange(y0, y1))
            if crossings.shape[1] == 0:
                continue
        placed.append(_Placed(layer, y0, y1, crossings, tx0, tx1, base))
        base += (y1 - y0) * (tx1 - tx0)
    return placed


def _right_cols(p: _Placed, width: int, extra: float = 0.0) -> tuple[int, int]:
    """Right-view columns where the layer can appear (``xr = x − D``), widened by ``extra`` px."""
    lay = p.layer
    return max(0, math.floor(lay.xmin - lay.dhi) - 1), min(width, math.ceil(lay.xmax - lay.dlo + extra) + 2)


def _render_left(placed: list[_Placed], config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """Left z-buffer: disparity of the closest layer and the flat texture index of that pixel."""
    h, w = config.height, config.width
    disp = np.full((h, w), -np.inf, np.float32)
    tex = np.zeros((h, w), np.int32)
    for p in placed:
        lay = p.layer
        x0, x1 = max(0, math.floor(lay.xmin)), min(w, math.ceil(lay.xmax) + 1)
        if x1 <= x0:
            continue
        ys = np.arange(p.y0, p.y1, dtype=np.float32)
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        d = (lay.a + lay.c * ys)[:, None] + lay.b * xs
        rows = (p.base + (np.arange(p.y1 - p.y0) * p.tex_width) - p.tx0).astype(np.int32)[:, None]
        index = rows + np.arange(x0, x1, dtype=np.int32)[None, :]
        view = disp[p.y0 : p.y1, x0:x1]
        win = d > view
        if p.crossings is not None:
            win &= _inside(xs, p.crossings)
        np.copyto(view, d, where=win)
        np.copyto(tex[p.y0 : p.y1, x0:x1], index, where=win)
    return disp, tex


def _render_right(placed: list[_Placed], config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """Right z-buffer: disparity of the closest layer and the texture row offset of that pixel.

    The left abscissa of right pixel ``xr`` on layer k is ``xr + disparity``; the texture is sampled
    there by linear interpolation, from ``row offset + floor(x)``.
    """
    h, w = config.height, config.width
    disp = np.full((h, w), -np.inf, np.float32)
    rowbase = np.zeros((h, w), np.int32)
    for p in placed:
        lay = p.layer
        x0, x1 = _right_cols(p, w)
        if x1 <= x0:
            continue
        scale = 1.0 / (1.0 - lay.b)
        ys = np.arange(p.y0, p.y1, dtype=np.float32)
        xr = np.arange(x0, x1, dtype=np.float32)[None, :]
        row_term = ((lay.a + lay.c * ys) * scale)[:, None]
        d = xr * (scale - 1.0) + row_term  # x_l − xr with x_l = (xr + a + c·y) / (1 − b)
        view = disp[p.y0 : p.y1, x0:x1]
        win = d > view
        if p.crossings is not None:
            win &= _inside(xr + d, p.crossings)
        rows = (p.base + np.arange(p.y1 - p.y0) * p.tex_width - p.tx0).astype(np.int32)[:, None]
        np.copyto(view, d, where=win)
        np.copyto(rowbase[p.y0 : p.y1, x0:x1], rows, where=win)
    return disp, rowbase


def _occlusion(placed: list[_Placed], disp: np.ndarray, config: SynthConfig) -> np.ndarray:
    """True where left pixel (x, d) is not seen in the right view: ``x − d < 0``, or a layer covers
    right-view point ``x − d`` with a disparity larger than d."""
    w = config.width
    xs = np.arange(w, dtype=np.float32)
    occluded = (xs[None, :] - disp) < 0
    for j, p in enumerate(placed):
        lay = p.layer
        others = [q.layer.dlo for i, q in enumerate(placed) if i != j]
        if not others or lay.dhi <= min(others) + _OCCLUSION_EPS:
            continue  # closer than nobody else anywhere: cannot occlude
        # Left pixels whose right-view point can land on this layer: x = xr + d with d < max_disp.
        x0, x1 = _right_cols(p, w, extra=float(config.max_disp))
        if x1 <= x0:
            continue
        scale = 1.0 / (1.0 - lay.b)
        ys = np.arange(p.y0, p.y1, dtype=np.float32)
        d_left = disp[p.y0 : p.y1, x0:x1]
        xr = xs[None, x0:x1] - d_left
        d = xr * (scale - 1.0) + ((lay.a + lay.c * ys) * scale)[:, None]
        hit = d > d_left + _OCCLUSION_EPS
        if p.crossings is not None:
            hit &= _inside(xr + d, p.crossings)
        occluded[p.y0 : p.y1, x0:x1] |= hit
    return occluded


# ------------------------------------------------------------------------------------ textures
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


def _noise_bank(rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    """Three shared noise fields (fine, medium, coarse) over the canvas plus a margin for offsets."""
    h, w = config.height + _BANK_PAD, config.canvas_width + _BANK_PAD
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


def _pattern(params: dict[str, Any], bank: np.ndarray, p: _Placed) -> tuple[np.ndarray, np.ndarray]:
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
        other = bank[1, p.y0 + _BANK_PAD - oy : p.y1 + _BANK_PAD - oy, p.tx0 + _BANK_PAD - ox : p.tx1 + _BANK_PAD - ox]
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


def _textures(layers: list[_Placed], bank: np.ndarray) -> np.ndarray:
    """All layers' texture blocks in one (rows × 3) buffer: colour = base + P1·col1 + P2·col2."""
    total = sum((p.y1 - p.y0) * p.tex_width for p in layers)
    buffer = np.empty((total + 1, 3), np.float32)  # +1: the interpolation neighbour of the last texel
    buffer[-1] = 0.0
    for p in layers:
        params = p.layer.texture
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


# --------------------------------------------------------------------------------- photometry
def _photometric(rng: np.random.Generator, image: np.ndarray, noise_std: float) -> np.ndarray:
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


# ------------------------------------------------------------------------------------ public API
def generate_pair(config: SynthConfig, seed: int | Sequence[int]) -> SyntheticPair:
    """Render one stereo pair; the same ``config`` and ``seed`` give bit-identical arrays."""
    rng = np.random.default_rng(seed)
    layers = _sample_scene(rng, config)
    placed = _place(layers, config)
    bank = _noise_bank(rng, config)
    texels = _textures(placed, bank)

    disp, tex_index = _render_left(placed, config)
    disp_right, rowbase = _render_right(placed, config)
    occlusion = _occlusion(placed, disp, config)

    left = np.take(texels, tex_index, axis=0)
    x_left = np.arange(config.width, dtype=np.float32)[None, :] + disp_right
    x_floor = np.floor(x_left)
    frac = (x_left - x_floor)[..., None]
    index = rowbase + x_floor.astype(np.int32)
    right = np.take(texels, index, axis=0)
    right += (np.take(texels, index + 1, axis=0) - right) * frac

    np.clip(left, 0.0, 1.0, out=left)
    np.clip(right, 0.0, 1.0, out=right)
    if config.photometric:
        for image in (left, right):
            np.clip(_photometric(rng, image, config.noise_std), 0.0, 1.0, out=image)
    return SyntheticPair(left=left, right=right, disp=disp, disp_right=disp_right, occlusion=occlusion)


class SyntheticStereo(torch.utils.data.Dataset):
    """In-memory dataset: sample i is ``generate_pair(config, (seed, i))`` as a sample dict.

    Pairs are rendered on first access and kept (``cache=False`` renders every time, to bound
    memory); each index has its own seed, so a sample does not depend on the order of access.
    The dict carries an extra ``occlusion`` key (bool H×W, True = not visible in the right view).
    """

    def __init__(
        self,
        n_pairs: int,
        config: SynthConfig = SynthConfig(),  # frozen, so a shared default is safe
        seed: int = 0,
        max_disp: float | None = None,
        *,
        cache: bool = True,
    ) -> None:
        if n_pairs < 0:
            raise ConfigError(f"n_pairs must be >= 0, got {n_pairs}")
        self.n_pairs = n_pairs
        self.config = config
        self.seed = seed
        self.max_disp = max_disp
        self.cache = cache
        self._pairs: dict[int, SyntheticPair] = {}

    def __len__(self) -> int:
        return self.n_pairs

    def pair(self, i: int) -> SyntheticPair:
        """The raw rendered pair of index ``i`` (negative indices count from the end)."""
        if not -self.n_pairs <= i < self.n_pairs:
            raise IndexError(f"index {i} out of range for {self.n_pairs} synthetic pairs")
        i %= self.n_pairs
        found = self._pairs.get(i)
        if found is None:
            found = generate_pair(self.config, (self.seed, i))
            if self.cache:
                self._pairs[i] = found
        return found

    def __getitem__(self, i: int) -> dict[str, Any]:
        pair = self.pair(i)
        i %= self.n_pairs
        sample = make_sample(
            pair.left, pair.right, pair.disp, meta={"dataset": "synthetic", "id": f"{i:06d}"}, max_disp=self.max_disp
        )
        sample["occlusion"] = torch.from_numpy(pair.occlusion.copy())
        return sample


def _write_mask(path: Path, mask: np.ndarray) -> None:
    """8-bit single-channel PNG, 255 where ``mask`` is True; atomic."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(tmp, format="PNG")


def _pair_files(out: Path, split: str, i: int) -> dict[str, Path]:
    """Paths of pair ``i`` of a split: scene ``i // 10``, frame ``i % 10``."""
    scene = Path(_SPLIT_DIRS[split]) / "A" / f"{i // FRAMES_PER_SCENE:04d}"
    frame = f"{i % FRAMES_PER_SCENE:04d}"
    return {
        "left": out / "frames_finalpass" / scene / "left" / f"{frame}.png",
        "right": out / "frames_finalpass" / scene / "right" / f"{frame}.png",
        "disp_left": out / "disparity" / scene / "left" / f"{frame}.pfm",
        "disp_right": out / "disparity" / scene / "right" / f"{frame}.pfm",
        "occlusion": out / "occlusion" / scene / "left" / f"{frame}.png",
    }


def _remove_stale(out: Path, split: str, n_pairs: int, previous: Any) -> None:
    """Delete the pairs an earlier, larger run of this split wrote, so the reader sees ``n_pairs``.

    Only the exact files that ``synth.json`` says were written are removed, then any folder left empty.
    """
    old = previous.get("n_pairs") if isinstance(previous, dict) else None
    if not isinstance(old, int) or old <= n_pairs:
        return
    folders: set[Path] = set()
    for i in range(n_pairs, old):
        for path in _pair_files(out, split, i).values():
            path.unlink(missing_ok=True)
            folders.update((path.parent, path.parent.parent))
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: other frames are still there
            folder.rmdir()


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            path, f"existing synth.json is not readable JSON ({exc}); remove it or pick another folder"
        ) from None
    if not isinstance(data, dict):
        raise DataError(path, "existing synth.json does not hold a JSON object; remove it or pick another folder")
    return data


def write_synthetic(
    out: str | Path,
    n_pairs: int,
    config: SynthConfig,
    seed: int = 0,
    split: str = "train",
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write ``n_pairs`` pairs in the FlyingThings3D layout so that the SceneFlow reader reads them.

    ``out/frames_finalpass/{TRAIN|TEST}/A/{scene:04d}/{left,right}/{frame:04d}.png`` (8-bit),
    ``out/disparity/.../{left,right}/{frame:04d}.pfm`` and ``out/occlusion/.../left/{frame:04d}.png``
    (255 = occluded), 10 frames per scene. Pair i uses seed ``(seed, 0, i)`` for train and
    ``(seed, 1, i)`` for test, so splits never share a pair. ``out/synth.json`` records each split's
    size, seed and config (merged with what is there). Every file is written atomically. Returns the
    left image paths.
    """
    if split not in _SPLIT_DIRS:
        raise ConfigError(f"synthetic split must be one of {', '.join(_SPLIT_DIRS)}, got {split!r}")
    if n_pairs < 0:
        raise ConfigError(f"n_pairs must be >= 0, got {n_pairs}")
    out = Path(out)
    manifest_path = out / "synth.json"
    manifest = _read_manifest(manifest_path)  # fail before writing anything if it is broken
    lefts: list[Path] = []
    for i in range(n_pairs):
        pair = generate_pair(config, (seed, _SPLIT_SEEDS[split], i))
        files = _pair_files(out, split, i)
        write_image(files["left"], pair.left, compress_level=1)
        write_image(files["right"], pair.right, compress_level=1)
        write_pfm(files["disp_left"], pair.disp)
        write_pfm(files["disp_right"], pair.disp_right)
        _write_mask(files["occlusion"], pair.occlusion)
        lefts.append(files["left"])
        if progress is not None:
            progress(i + 1, n_pairs)
    _remove_stale(out, split, n_pairs, manifest.get(split))
    manifest[split] = {"n_pairs": n_pairs, "seed": seed, "config": asdict(config)}
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return lefts
