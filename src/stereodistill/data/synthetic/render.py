"""Rendering both views of a scene exactly: row-wise polygon tests, the left view (closest layer
wins), the right view through the analytic inverse of each surface, and the occlusion mask."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stereodistill.data.synthetic.config import OCCLUSION_EPS, SynthConfig
from stereodistill.data.synthetic.scene import Layer


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
class Placed:
    """A layer clipped to the frame: its rows, column ranges per view and texture block."""

    layer: Layer
    y0: int  # rows y0..y1-1 (same in both views)
    y1: int
    crossings: np.ndarray | None
    tx0: int  # texture block columns tx0..tx1-1 of the canvas
    tx1: int
    base: int  # first row of this layer's texture block in the shared texture buffer

    @property
    def tex_width(self) -> int:
        return self.tx1 - self.tx0


def place(layers: list[Layer], config: SynthConfig) -> list[Placed]:
    """Clip layers to the frame, compute row crossings and lay texture blocks out in one buffer."""
    placed: list[Placed] = []
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
        placed.append(Placed(layer, y0, y1, crossings, tx0, tx1, base))
        base += (y1 - y0) * (tx1 - tx0)
    return placed


def _right_cols(p: Placed, width: int, extra: float = 0.0) -> tuple[int, int]:
    """Right-view columns where the layer can appear (``xr = x − D``), widened by ``extra`` px."""
    lay = p.layer
    return max(0, math.floor(lay.xmin - lay.dhi) - 1), min(width, math.ceil(lay.xmax - lay.dlo + extra) + 2)


def render_left(placed: list[Placed], config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
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
        d = lay.left_disparity(ys, xs)
        rows = (p.base + (np.arange(p.y1 - p.y0) * p.tex_width) - p.tx0).astype(np.int32)[:, None]
        index = rows + np.arange(x0, x1, dtype=np.int32)[None, :]
        view = disp[p.y0 : p.y1, x0:x1]
        win = d > view
        if p.crossings is not None:
            win &= _inside(xs, p.crossings)
        np.copyto(view, d, where=win)
        np.copyto(tex[p.y0 : p.y1, x0:x1], index, where=win)
    return disp, tex


def render_right(placed: list[Placed], config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
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
        ys = np.arange(p.y0, p.y1, dtype=np.float32)
        xr = np.arange(x0, x1, dtype=np.float32)[None, :]
        d = lay.right_disparity(ys, xr)  # x_l − xr
        view = disp[p.y0 : p.y1, x0:x1]
        win = d > view
        if p.crossings is not None:
            win &= _inside(xr + d, p.crossings)
        rows = (p.base + np.arange(p.y1 - p.y0) * p.tex_width - p.tx0).astype(np.int32)[:, None]
        np.copyto(view, d, where=win)
        np.copyto(rowbase[p.y0 : p.y1, x0:x1], rows, where=win)
    return disp, rowbase


def occlusion_mask(placed: list[Placed], disp: np.ndarray, config: SynthConfig) -> np.ndarray:
    """True where left pixel (x, d) is not seen in the right view: ``x − d < 0``, or a layer covers
    right-view point ``x − d`` with a disparity larger than d."""
    w = config.width
    xs = np.arange(w, dtype=np.float32)
    occluded = (xs[None, :] - disp) < 0
    for j, p in enumerate(placed):
        lay = p.layer
        others = [q.layer.dlo for i, q in enumerate(placed) if i != j]
        if not others or lay.dhi <= min(others) + OCCLUSION_EPS:
            continue  # closer than nobody else anywhere: cannot occlude
        # Left pixels whose right-view point can land on this layer: x = xr + d with d < max_disp.
        x0, x1 = _right_cols(p, w, extra=float(config.max_disp))
        if x1 <= x0:
            continue
        ys = np.arange(p.y0, p.y1, dtype=np.float32)
        d_left = disp[p.y0 : p.y1, x0:x1]
        xr = xs[None, x0:x1] - d_left
        d = lay.right_disparity(ys, xr)
        hit = d > d_left + OCCLUSION_EPS
        if p.crossings is not None:
            hit &= _inside(xr + d, p.crossings)
        occluded[p.y0 : p.y1, x0:x1] |= hit
    return occluded
