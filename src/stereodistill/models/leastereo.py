"""LEAStereo (Cheng et al., NeurIPS 2020): the searched network as released (XuelianCheng/LEAStereo).

A 2-D *feature net* (stems to 1/3 resolution, six searched cells, a 1×1 ``last_3``) turns each view
into a 32-ch map at 1/3; their concatenation over D/3 disparities (64 channels, zero where x − d < 0)
goes through the 3-D *matching net* (two stems, twelve searched cells with two skip connections
``conv1``/``conv2``, ``last_6`` and upsampling back to the volume's size, and ``last_3``, a 3×3×3
conv to one channel). That one-channel volume is a *cost*: trilinearly upsampled to D×H×W, its
softmin is the disparity distribution and the soft-argmin its expectation. One output, trained with
smooth-L1 (``train.py`` of the release), hence ``loss_weights = (1.0,)``.

The searched architecture (``run/sceneflow/best/architecture/*.npy``, used by every script of the
release, KITTI and Middlebury included) is encoded below as constants. Module names follow the
release's state dict (``feature.cells.3._ops.2.conv.weight``…). The release builds some units it
never calls for this path (the feature net's ``last_6/12/24``, the matching net's ``last_12/24``,
the batch norm of both ``last_3`` convs, 84,866 parameters in all); they are not created here and
:meth:`LEAStereo.map_original_state` drops exactly their tensors from a released checkpoint.

Input: the release standardises every colour channel of every image by that image's own mean and
population standard deviation (NumPy's ``np.std``, no epsilon), on the full image, before its
zero padding (top-left) or cropping; :meth:`LEAStereo.normalize` does the same on the [0, 1]
image, which the base class then pads with zeros as well (above and to the right).

Sizes: the features are at 1/3 and the cells go down to 1/12 of the input (1/4 of the volume),
where the skip connections need the resampled sizes to agree exactly; H/3 and W/3 must be
multiples of 8, so inputs are padded to multiples of 24 (the release fails on other sizes) and the
output is cropped back. The disparity axis of the volume (``max_disp // 3`` planes) must pass the
same path: it does for every multiple of 24 (the release's 192 included); for other ``max_disp``,
where the release fails, the volume gets the few further disparity planes it needs and the cost
is cut back to ``max_disp // 3`` planes before the regression.

Taps (D' = max_disp // 3; D'' = D' wherever the release runs, e.g. for every multiple of 24, else
the volume's few planes more; H' = H/3, W' = W/3 of the padded input):

- ``feat.left.s3``, ``feat.right.s3``: the feature net's output, B×32×H'×W'. LEAStereo has no
  backbone features at 1/2 or 1/4 (its stem strides by 3; its 2-D cells sit at 1/3 and 1/6), so
  the shared ``feat.*.s2``/``feat.*.s4`` taps are not offered rather than resampled.
- ``volume.cost``: the concatenation volume, B×64×D''×H'×W'.
- ``volume.agg.0``: the aggregated volume that the final ``last_3`` reads (after ``last_6`` and
  upsampling), B×32×D''×H'×W'; the matching net is one aggregation stage with one head.
- ``logits.0``: the negated cost (softmin of the cost = softmax of these logits), B×D'×H'×W'.
- ``prob``: the softmin distribution at full resolution, B×D×H×W.
- no ``volume.attention``: LEAStereo has no attention branch.

Deliberate differences, none of which changes a result beyond float rounding where the release
runs: the cost volume is built without a loop over disparities; in eval, a cell's 1×1 projection
of an input it upsamples runs before the upsampling (``leastereo_cells.SearchedCell.project``); small 3-D
convolutions take oneDNN (:class:`~stereodistill.models.blocks.Conv3d`); padding goes above and to
the right (the release pads above and to the left); a constant colour channel is not divided by 0.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from stereodistill.models.base import StereoModel
from stereodistill.models.blocks import init_release_weights, regress
from stereodistill.models.cost_volume import concat_volume
from stereodistill.models.leastereo_cells import ConvBnReLU, SearchedNet, path_sizes
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS

# ------------------------------------------------------------------ the searched architecture (facts)
#: Level of each cell (0: the stem's scale, 1: 1/2 of it, 2: 1/4): ``feature_network_path.npy``.
FEATURE_PATH = (1, 0, 1, 0, 0, 0)
#: ``(branch, primitive)`` rows of ``feature_genotype.npy`` (primitive 0: skip, 1: 3×3 conv-BN-ReLU).
FEATURE_GENOTYPE = ((0, 1), (1, 0), (3, 1), (4, 1), (8, 1), (5, 1))
#: ``matching_network_path.npy``.
MATCHING_PATH = (1, 1, 2, 2, 1, 2, 2, 2, 1, 1, 0, 1)
#: ``matching_genotype.npy`` (primitive 1 is the 3×3×3 conv-BN-ReLU here).
MATCHING_GENOTYPE = ((1, 1), (0, 1), (3, 1), (4, 1), (8, 1), (6, 1))
#: ``retrain/skip_model_3d.py``: before cell ``at``, its previous input becomes
#: ``unit(cat(output of cell a, output of cell b))``.
MATCHING_SKIPS = ((5, 1, 4, "conv1"), (9, 4, 8, "conv2"))
#: The release's training and prediction scripts: 3 steps, 4 states concatenated, 8 base channels.
STEPS, BLOCK_MULTIPLIER, FILTER_MULTIPLIER = 3, 4, 8
STEM_CH = BLOCK_MULTIPLIER * FILTER_MULTIPLIER  # 32

#: A constant colour channel has no spread; the release divides by zero there. Below this floor
#: (far under the spread of any non-constant 8-bit image up to ~12 MP) the deviation is not scaled up.
STD_FLOOR = 1e-6

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_UNIT = ("conv.weight", *(f"bn.{t}" for t in _BN))
#: Tensors of the release that its forward pass never uses, dropped on import.
UNUSED_RELEASE_KEYS = frozenset(
    [f"{unit}.bn.{t}" for unit in ("feature.last_3", "matching.last_3") for t in _BN]
    + [
        f"{unit}.{t}"
        for unit in ("feature.last_6", "feature.last_12", "feature.last_24", "matching.last_12", "matching.last_24")
        for t in _UNIT
    ]
)


# ---------------------------------------------------------------------------------- the two nets
class FeatureNet(SearchedNet):
    """Image → 32-ch features at 1/3: stems (the second strides by 3), cells, ``last_3`` (1×1, linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem0 = ConvBnReLU(2, 3, STEM_CH // 2, 3, 1, 1)
        self.stem1 = ConvBnReLU(2, STEM_CH // 2, STEM_CH, 3, 3, 1)
        self.stem2 = ConvBnReLU(2, STEM_CH, STEM_CH, 3, 1, 1)
        self.build_cells(2, FEATURE_PATH, FEATURE_GENOTYPE, STEPS, BLOCK_MULTIPLIER, FILTER_MULTIPLIER)
        self.last_3 = ConvBnReLU(2, STEM_CH, STEM_CH, 1, 1, 0, bn=False, relu=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        stem1 = self.stem1(self.stem0(image))
        prev_prev, prev = stem1, self.stem2(stem1)
        for cell in self.cells:
            prev_prev, prev = prev, cell(prev_prev, prev)
        return self.last_3(self.to_level0(prev, stem1.shape[2:]))


class MatchingNet(SearchedNet):
    """Concatenation volume → aggregated volume (:meth:`aggregate`) → one-channel cost (``last_3``)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem0 = ConvBnReLU(3, 2 * STEM_CH, STEM_CH, 3, 1, 1)
        self.stem1 = ConvBnReLU(3, STEM_CH, STEM_CH, 3, 1, 1)
        self.build_cells(3, MATCHING_PATH, MATCHING_GENOTYPE, STEPS, BLOCK_MULTIPLIER, FILTER_MULTIPLIER)
        self.skips = {at: (a, b, name) for at, a, b, name in MATCHING_SKIPS}
        self.kept = {i for _, a, b, _ in MATCHING_SKIPS for i in (a, b)}
        for _, a, b, name in MATCHING_SKIPS:
            if MATCHING_PATH[a] != MATCHING_PATH[b]:
                raise ValueError(f"skip {name} joins cells {a} and {b} at different levels")
            width = STEM_CH * 2 ** MATCHING_PATH[b]
            self.add_module(name, ConvBnReLU(3, 2 * width, width, 3, 1, 1))
        self.last_3 = ConvBnReLU(3, STEM_CH, 1, 3, 1, 1, bn=False, relu=False)

    def aggregate(self, volume: torch.Tensor) -> torch.Tensor:
        """B×64×D'×H'×W' → B×32×D'×H'×W', the input of ``last_3``."""
        stem0 = self.stem0(volume)
        prev_prev, prev = stem0, self.stem1(stem0)
        kept: dict[int, torch.Tensor] = {}  # only the cell outputs a skip connection reads later
        for i, cell in enumerate(self.cells):
            if i in self.skips:
                a, b, name = self.skips[i]
                prev = getattr(self, name)(torch.cat((kept[a], kept[b]), dim=1))
            prev_prev, prev = prev, cell(prev_prev, prev)
            if i in self.kept:
                kept[i] = prev
        return self.to_level0(prev, volume.shape[2:])

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return self.last_3(self.aggregate(volume))


def matching_net_resamples(planes: int) -> bool:
    """Whether the matching net's skip connections meet equal sizes on an axis of ``planes``."""
    sizes = path_sizes(planes, MATCHING_PATH)
    return all(sizes[a] == sizes[b] for _, a, b, _ in MATCHING_SKIPS)


def volume_disparities(max_disp: int) -> int:
    """Disparity planes of the cost volume: ``max_disp // 3`` as in the release (any multiple of 24
    works), else the next count the matching net can resample (the release fails there); the extra
    planes hold further disparities and are cut off the cost before the regression."""
    planes = max(1, max_disp // 3)
    while not matching_net_resamples(planes):  # every multiple of 8 resamples: a few steps at most
        planes += 1
    return planes


# ---------------------------------------------------------------------------------- LEAStereo
@MODELS.register("leastereo")
class LEAStereo(StereoModel):
    """LEAStereo as released; parameter names follow the release's state dict."""

    arch: ClassVar[str] = "leastereo"
    unused_release_keys = UNUSED_RELEASE_KEYS
    release_params: ClassVar[int | None] = 1_809_778
    cost_volume_kind: ClassVar[str | None] = "concatenation"
    #: Features at 1/3, cells down to a further 1/4 whose skip connections need exact halving.
    pad_multiple: ClassVar[int] = 24
    #: ``train.py``: ``F.smooth_l1_loss`` on the single output.
    loss_weights: ClassVar[tuple[float, ...]] = (1.0,)

    def __init__(self, max_disp: int = 192) -> None:
        super().__init__(max_disp=max_disp)
        self.volume_planes = volume_disparities(max_disp)
        self.feature = FeatureNet()
        self.matching = MatchingNet()
        init_release_weights(self)

    def offered_taps(self) -> tuple[str, ...]:
        return ("feat.left.s3", "feat.right.s3", "volume.cost", "volume.agg.0", "logits.0", "prob")

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Each channel of each image to zero mean, unit population standard deviation (the release's
        loaders, before padding); statistics in at least float32 whatever the input's precision."""
        values = image.to(torch.promote_types(image.dtype, torch.float32))
        var, mean = torch.var_mean(values, dim=(-2, -1), keepdim=True, correction=0)
        return ((values - mean) / var.sqrt().clamp_min(STD_FLOOR)).to(image.dtype)

    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        features_left = self.feature(left)
        features_right = self.feature(right)
        taps.record("feat.left.s3", features_left)
        taps.record("feat.right.s3", features_right)
        volume = concat_volume(features_left, features_right, self.volume_planes)
        taps.record("volume.cost", volume)
        aggregated = self.matching.aggregate(volume)
        taps.record("volume.agg.0", aggregated)
        cost = self.matching.last_3(aggregated)[:, 0, : self.max_disp // 3]
        logits = cost.neg()  # softmin of the cost is softmax of the logits
        taps.record("logits.0", logits)
        prob, disparity = regress(logits, self.max_disp, left.shape[-2], left.shape[-1])
        taps.record("prob", prob)
        return StereoOutput(disparity=disparity)
