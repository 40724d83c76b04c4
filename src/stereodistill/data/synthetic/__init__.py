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

The package, one module per concern: :mod:`.config` (what a scene may hold), :mod:`.scene`
(sampling), :mod:`.render` (both views, occlusion), :mod:`.textures`, :mod:`.photometry`,
:mod:`.generate` (the public API) and :mod:`.writer` (the SceneFlow layout on disk).
"""

from stereodistill.data.synthetic.config import FRAMES_PER_SCENE, SynthConfig, SyntheticPair
from stereodistill.data.synthetic.generate import SyntheticStereo, generate_pair
from stereodistill.data.synthetic.writer import write_synthetic

__all__ = ["FRAMES_PER_SCENE", "SynthConfig", "SyntheticPair", "SyntheticStereo", "generate_pair", "write_synthetic"]
