"""Sampling a scene: a background and a few objects, each a polygon on a slanted disparity plane or
a curved patch, with its texture parameters, all in left-view coordinates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from stereodistill.data.synthetic.config import BANK_PAD, TEXTURE_KINDS, SynthConfig
from stereodistill.data.synthetic.photos import photo_params


@dataclass
class Layer:
    """A layer: shape (polygon, None = everywhere), surface, texture parameters, extents.

    Its disparity in left coordinates is ``D(x, y) = a + b·x + c·y + qx·(x − x0)² + qy·(y − y0)²``:
    a plane when ``qx = qy = 0``, else a dome, bowl or cylinder. ``|∂D/∂x| < 1`` over the layer
    makes ``x − D(x)`` increasing, so every right-view point sees one point of the layer at most
    and the right view is rendered exactly through the inverse (:meth:`right_disparity`)."""

    verts: np.ndarray | None  # n×2 (x, y) polygon in left coordinates, or None for the background
    a: float
    b: float
    c: float
    xmin: float
    xmax: float
    ymin: float
    ymax: float
    dlo: float  # disparity range over the shape's bounding box
    dhi: float
    texture: dict[str, Any]
    qx: float = 0.0  # curvature along x and y, about (x0, y0)
    qy: float = 0.0
    x0: float = 0.0
    y0: float = 0.0

    def row_term(self, ys: np.ndarray) -> np.ndarray:
        """The part of D that depends on the row alone (rows are the same in both views)."""
        term = self.a + self.c * ys
        return term + self.qy * (ys - self.y0) ** 2 if self.qy else term

    def left_disparity(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """D on rows ``ys`` (n) and left columns ``xs`` (1×m)."""
        d = self.row_term(ys)[:, None] + self.b * xs
        return d + self.qx * (xs - self.x0) ** 2 if self.qx else d

    def right_disparity(self, ys: np.ndarray, xr: np.ndarray) -> np.ndarray:
        """D at the left point that right column ``xr`` (1×m or n×m) sees on rows ``ys``: the root of
        ``x − D(x) = xr`` on the increasing branch; −inf where the surface reaches no such point."""
        row = self.row_term(ys)[:, None]
        k = 1.0 - self.b
        if not self.qx:  # a plane: x_l = (xr + row) / (1 − b)
            scale = 1.0 / k
            return xr * (scale - 1.0) + row * scale
        # u = x − x0 solves qx·u² − k·u + s = 0; this form of the root is stable as qx → 0.
        s = xr + row + self.b * self.x0 - self.x0
        disc = k * k - 4.0 * self.qx * s
        u = 2.0 * s / (k + np.sqrt(np.maximum(disc, 0.0)))
        return np.where(disc >= 0, u + self.x0 - xr, -np.inf)


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


def _extremes(slope: float, curvature: float, half: float) -> tuple[float, float]:
    """Smallest and largest of ``slope·t + curvature·t²`` over ``t ∈ [−half, half]``."""
    values = [-slope * half + curvature * half**2, slope * half + curvature * half**2]
    if curvature and abs(slope) < 2 * abs(curvature) * half:  # the vertex lies inside
        values.append(-(slope**2) / (4 * curvature))
    return min(values), max(values)


def _curved_layer(
    rng: np.random.Generator,
    verts: np.ndarray,
    box: tuple[float, float, float, float],
    lo: float,
    hi: float,
    max_slope: float,
    texture: dict[str, Any],
) -> Layer:
    """A dome or bowl (curved both ways) or a cylinder (one way) over ``box``, within [lo, hi], with
    ``|∂D/∂x|`` and ``|∂D/∂y|`` at most ``max_slope`` everywhere on it."""
    xmin, xmax, ymin, ymax = box
    x0, y0 = 0.5 * (xmin + xmax), 0.5 * (ymin + ymax)
    hw, hh = max(0.5 * (xmax - xmin), 1.0), max(0.5 * (ymax - ymin), 1.0)
    dc = float(rng.uniform(lo, hi))
    kind = str(rng.choice(("dome", "cylinder_x", "cylinder_y")))
    sign = float(rng.choice((-1.0, 1.0)))  # −1: bulging towards the camera, +1: hollow
    gx, gy = (max_slope * float(rng.uniform(-0.4, 0.4)) for _ in range(2))
    qx = sign * float(rng.uniform(0.3, 1.0)) * (max_slope - abs(gx)) / (2 * hw) if kind != "cylinder_y" else 0.0
    qy = sign * float(rng.uniform(0.3, 1.0)) * (max_slope - abs(gy)) / (2 * hh) if kind != "cylinder_x" else 0.0
    (xlo, xhi), (ylo, yhi) = _extremes(gx, qx, hw), _extremes(gy, qy, hh)
    vlo, vhi = xlo + ylo, xhi + yhi
    fit = min(1.0, (hi - dc) / vhi if vhi > 0 else 1.0, (dc - lo) / -vlo if vlo < 0 else 1.0)
    gx, gy, qx, qy = gx * fit, gy * fit, qx * fit, qy * fit
    return Layer(verts, dc - gx * x0 - gy * y0, gx, gy, *box, dc + fit * vlo, dc + fit * vhi, texture, qx, qy, x0, y0)


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


def _bar(rng: np.random.Generator, cx: float, cy: float, size: float) -> np.ndarray:
    """Vertices (4×2) of a thin bar through (cx, cy): 1.5–6 px wide, a fifth to most of the frame long."""
    half_width = 0.5 * rng.uniform(1.5, 6.0)
    half_length = 0.5 * size * rng.uniform(0.2, 0.9)
    angle = rng.uniform(0, np.pi)
    along = np.array([math.cos(angle), math.sin(angle)])
    across = np.array([-along[1], along[0]])
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    return np.array([[cx, cy] + u * half_length * along + v * half_width * across for u, v in corners])


def _ground(rng: np.random.Generator, config: SynthConfig, far: float) -> Layer:
    """A floor or road: everything below a slightly tilted horizon (upper 30–70 % of the frame), its
    disparity growing downwards from the background's range at the horizon to 50–100 % of the range
    at the bottom row, with a small sideways slant. Large real scenes stand on one; floating
    polygons never teach a network that the lower part of an image is usually near."""
    h, wc = config.height, config.canvas_width
    lo, hi = config.min_disp, config.disp_high
    horizon = rng.uniform(0.3, 0.7) * h
    tilt = rng.uniform(-0.08, 0.08) * h
    verts = np.array([[-1.0, horizon - tilt], [wc + 1.0, horizon + tilt], [wc + 1.0, h + 1.0], [-1.0, h + 1.0]])
    ymin, ymax = float(verts[:, 1].min()), float(h)
    half_width = 0.5 * wc
    b = rng.uniform(-1.0, 1.0) * min(config.max_slope, 0.1 * (hi - lo) / half_width)
    top = rng.uniform(lo + abs(b) * half_width, max(far, lo + abs(b) * half_width + 0.5))
    bottom = rng.uniform(max(top, 0.5 * hi), hi - abs(b) * half_width)
    c = (bottom - top) / max(ymax - ymin, 1.0)
    a = top - c * ymin - b * half_width
    box = (-1.0, wc + 1.0, ymin, ymax)
    return Layer(
        verts,
        a,
        b,
        c,
        *box,
        top - abs(b) * half_width,
        bottom + abs(b) * half_width,
        _texture_params(rng, config, True),
    )


def _texture_params(rng: np.random.Generator, config: SynthConfig, background: bool) -> dict[str, Any]:
    """Texture kind and its random parameters; colours are random RGB."""
    if rng.uniform() < config.low_texture_prob:
        kind = "flat"
    elif config.photo_prob > 0 and rng.uniform() < config.photo_prob:  # no draw at 0: old scenes unchanged
        return photo_params(rng)
    else:  # mostly noise; a striped or checkered background everywhere would be a dull scene
        weights = (0.7, 0.1, 0.1, 0.1) if background else (0.5, 0.17, 0.16, 0.17)
        kind = str(rng.choice(TEXTURE_KINDS[:4], p=weights))
    base = rng.uniform(0.15, 0.85, 3)

    def colour(contrast: float) -> np.ndarray:
        direction = 0.8 + rng.normal(0.0, 0.5, 3)  # mostly luminance, some chroma
        return contrast * direction / max(np.linalg.norm(direction) / math.sqrt(3), 0.3)

    params: dict[str, Any] = {
        "kind": kind,
        "base": base,
        "offset": (int(rng.integers(0, BANK_PAD + 1)), int(rng.integers(0, BANK_PAD + 1))),
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


def sample_scene(rng: np.random.Generator, config: SynthConfig) -> list[Layer]:
    """Background (layer 0), maybe a ground plane, ``n_objects`` polygons and ``thin_objects`` bars, each
    with a plane (an object: maybe a curved patch) and a texture."""
    h, w, wc = config.height, config.width, config.canvas_width
    lo, hi = config.min_disp, config.disp_high
    bg_hi = config.background_max_frac * config.max_disp
    a, b, c, dlo, dhi = _plane_in_range(rng, (0.0, float(wc), 0.0, float(h)), lo, bg_hi, config.max_slope)
    layers = [Layer(None, a, b, c, 0.0, float(wc), 0.0, float(h), dlo, dhi, _texture_params(rng, config, True))]
    if config.ground_prob > 0 and rng.uniform() < config.ground_prob:  # no draw at 0: old scenes unchanged
        layers.append(_ground(rng, config, bg_hi))
    size = float(min(h, w))
    for k in range(config.n_objects + config.thin_objects):
        if k < config.n_objects:  # one large object per scene, the others log-uniform from small to fairly large
            r0 = size * (rng.uniform(0.3, 0.5) if k == 0 else math.exp(rng.uniform(math.log(0.06), math.log(0.4))))
            cx, cy = rng.uniform(-0.05 * w, 1.05 * w), rng.uniform(-0.05 * h, 1.05 * h)
            verts = _shape(rng, cx, cy, r0)
        else:
            cx, cy = rng.uniform(-0.05 * w, 1.05 * w), rng.uniform(-0.05 * h, 1.05 * h)
            verts = _bar(rng, cx, cy, size)
        box = (float(verts[:, 0].min()), float(verts[:, 0].max()), float(verts[:, 1].min()), float(verts[:, 1].max()))
        # No draw at curved_prob 0 (old scenes unchanged); bars stay flat.
        if k < config.n_objects and config.curved_prob > 0 and rng.uniform() < config.curved_prob:
            texture = _texture_params(rng, config, False)
            layers.append(_curved_layer(rng, verts, box, bg_hi, hi, config.max_slope, texture))
            continue
        a, b, c, dlo, dhi = _plane_in_range(rng, box, bg_hi, hi, config.max_slope)
        layers.append(Layer(verts, a, b, c, *box, dlo, dhi, _texture_params(rng, config, False)))
    return layers
