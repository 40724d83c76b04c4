"""Full-resolution cost refinement: a narrow matching cost around the estimate, at every pixel.

The networks of the zoo match at 1/4 resolution and interpolate; what they place, they place
coarsely. On the quickstart's Motorcycle pair the scratch ``lean`` was more than 0.5 px off on
62 % of the pixels, where OpenCV's SGBM, which matches every pixel and places it between integer
disparities, was off on 18 % (docs/results.md, "A full-resolution cost refinement"). This stage gives
any network that precision back, the way cascade networks (CasStereo, CFNet) refine a coarse
estimate over a narrow range at a finer scale, but at full resolution and without a 3-D convolution:

- both views become two cheap maps at full resolution: the census bits of the grey image (3×3,
  packed in a byte: the signal that does not depend on the domain the features were learned on, as
  in :mod:`~stereodistill.models.census_cost`) and the grey image itself;
- the right view's maps are read at x − d − o for the 2R + 1 offsets o = −R … R px around the current
  estimate d and compared with the left view's (the share of census bits that differ, the absolute
  grey-level difference): 2·(2R + 1) cost maps. The offsets share the estimate's fraction, so every
  one of them lies between the same two neighbours of 2R + 2 whole columns: the stage gathers those
  columns once and interpolates the costs with the fraction (for a cost linear in the right view,
  such as a correlation, that equals reading the bilinearly interpolated view, ``grid_sample``'s
  result, at a fraction of its cost);
- the costs and the left image go through a 2×2 convolution of stride 2 (each 2×2 cell as one pixel)
  and depthwise-separable residual blocks at 1/2 resolution, which score the offsets of the cell's
  four pixels; each pixel's softmax over its offsets gives the expected offset, added to d.

The head starts at zero, so an untrained stage scores every offset alike and moves nothing: added to
a trained network, it is the identity until it learns. The estimate is read without gradient (as
RAFT looks up its correlation); the offset is a residual on top of it.

With ``block`` set, the stage also reads the same costs around a second hypothesis, the full-resolution
block match of :mod:`~stereodistill.models.block_match`, and scores both sets of 2R + 1 candidates
in one softmax (the block match's starting near zero weight), so that it can reach what lies further
than R px from the network's estimate. With ``polish`` set too, at inference its output is placed on
the block costs within ± ``polish`` px.

With ``extremes`` set, two more hypotheses join them: the largest and the smallest estimate within an
``extremes`` × ``extremes`` window. Near a depth edge, a network that matches at 1/4 resolution carries
one side's disparity a few pixels onto the other; the surface that pixel belongs to then lies in its
window, and the stage can score the costs there. With the quickstart's earlier students they lowered
Motorcycle's share of pixels more than 3 px off; with its present networks they help the synthetic
split and not Motorcycle, made the students train 14–19 % longer and ``lean``'s forward 1.6–1.9× as
long (docs/results.md, "What did not close the gap"), so every preset leaves them off.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.models.block_match import aggregated_costs, block_match, census_share_table, count_bits, polish
from stereodistill.models.guided_refine import SeparableResidual

#: The largest radius accepted: 2R + 1 full-resolution cost maps per map kind is already a lot.
MAX_RADIUS = 16
#: Block-matching windows accepted (odd): beyond 15 px a block straddles every edge of a small image.
BLOCK_WINDOWS = (3, 5, 7, 9, 11, 13, 15)
#: Initial logit of the candidates of every hypothesis but the estimate (the block match, the window's
#: extremes): an untrained stage all but ignores them (weight e⁻⁸).
BLOCK_PRIOR = -8.0
#: Dilations of the residual blocks that score the offsets, at 1/2 resolution.
DILATIONS = (1, 2, 4)


def census_codes(gray: torch.Tensor) -> torch.Tensor:
    """B×1×H×W grey → B×H×W uint8: the 3×3 census bits of each pixel (is each neighbour brighter than
    the centre, as :func:`~stereodistill.models.census_cost.census_bits` finds them, edges replicated),
    packed into one byte. One comparison per neighbour: eight of them, whatever the image."""
    height, width = gray.shape[-2:]
    padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")[:, 0]
    centre = gray[:, 0]
    neighbours = [(dy, dx) for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]
    code = torch.zeros_like(centre, dtype=torch.int32)  # summed in int32, then one cast: ONNX-exportable
    for bit, (dy, dx) in enumerate(neighbours):
        code = code + (padded[:, dy : dy + height, dx : dx + width] > centre).to(torch.int32) * (1 << bit)
    return code.to(torch.uint8)


def window_extremes(disparity: torch.Tensor, window: int) -> list[torch.Tensor]:
    """B×H×W → [largest, smallest] value within the ``window`` × ``window`` block around each pixel (at
    the border, of what lies inside)."""
    planes = disparity.unsqueeze(1)
    largest = F.max_pool2d(planes, window, stride=1, padding=window // 2)
    smallest = -F.max_pool2d(-planes, window, stride=1, padding=window // 2)
    return [largest[:, 0], smallest[:, 0]]


class MatchingMaps(NamedTuple):
    """What the costs are computed from, once per pair: B×H×W census codes and grey maps (float32)."""

    code_left: torch.Tensor
    code_right: torch.Tensor
    gray_left: torch.Tensor
    gray_right: torch.Tensor


def matching_maps(left: torch.Tensor, right: torch.Tensor) -> MatchingMaps:
    """B×3×H×W views → their census codes and grey images (the channel mean)."""
    gray_left, gray_right = (view.float().mean(1, keepdim=True) for view in (left, right))
    return MatchingMaps(census_codes(gray_left), census_codes(gray_right), gray_left[:, 0], gray_right[:, 0])


class OffsetReader:
    """Reads right-view maps at x − d − o for o = −R … R around a B×H×W left-view disparity d.

    Every offset shares the estimate's fraction, so all of them lie between neighbours among the same
    2R + 2 whole columns: those are gathered once per map (index arithmetic, no interpolation kernel)
    and a cost computed on whole columns is interpolated with the fraction, which for a cost linear in
    the right view's values equals the cost of the interpolated view. Columns outside the image read
    nothing: their cost is ``outside``."""

    def __init__(self, disparity: torch.Tensor, radius: int) -> None:
        width = disparity.shape[-1]
        disparity = disparity.float()  # column indices and fractions in float32, whatever the network ran in
        position = torch.arange(width, dtype=disparity.dtype, device=disparity.device) - disparity  # x − d
        base = position.floor()
        self.frac = position - base  # B×H×W
        # Whole columns base − R … base + R + 1, ascending: offset o reads between base − o and base − o + 1.
        columns = base.long().unsqueeze(-1) + torch.arange(-radius, radius + 2, device=disparity.device)
        self.inside = (columns >= 0) & (columns < width)  # B×H×W×(2R+2)
        self.index = columns.clamp(0, width - 1).flatten(2)  # B×H×(W·(2R+2))
        self.shape = (*disparity.shape, 2 * radius + 2)

    def columns(self, right: torch.Tensor) -> torch.Tensor:
        """B×H×W right map → B×H×W×(2R+2): its values at the whole columns."""
        return right.gather(2, self.index).view(self.shape)

    def costs(self, whole: torch.Tensor, outside: float) -> torch.Tensor:
        """B×H×W×(2R+2) costs at the whole columns → B×H×W×(2R+1) at the offsets R … −R (descending),
        interpolated."""
        whole = whole.masked_fill(~self.inside, outside)
        frac = self.frac.unsqueeze(-1)
        return (1 - frac) * whole[..., :-1] + frac * whole[..., 1:]


class FineRefinement(nn.Module):
    """(B×H×W disparity, B×3×H×W left, B×3×H×W right) → refined B×H×W disparity in [0, upper]."""

    def __init__(
        self, upper: float, radius: int = 4, channels: int = 24, block: int = 0, polish: int = 0, extremes: int = 0
    ) -> None:
        super().__init__()
        if not 1 <= radius <= MAX_RADIUS:
            raise ValueError(f"radius must be 1–{MAX_RADIUS}, got {radius}")
        for name, window in (("block", block), ("extremes", extremes)):
            if window and window not in BLOCK_WINDOWS:
                raise ValueError(f"{name} must be 0 or an odd window of 3–{BLOCK_WINDOWS[-1]} px, got {window}")
        if polish and not (block and 1 <= polish <= MAX_RADIUS):
            raise ValueError(f"polish must be 0 or 1–{MAX_RADIUS} px with a block match, got {polish}")
        self.upper = float(upper)
        self.radius = radius
        #: The window of the block-matching hypothesis (:mod:`~stereodistill.models.block_match`); 0: none.
        self.block = block
        #: The radius of the classical placement at inference (:func:`~stereodistill.models.block_match.polish`).
        self.polish = polish
        #: The window whose largest and smallest estimate are two more hypotheses; 0: none.
        self.extremes = extremes
        # Descending, the order in which OffsetReader.costs gives the costs.
        self.register_buffer("offsets", torch.arange(radius, -radius - 1, -1, dtype=torch.float32), persistent=False)
        self.register_buffer("census_share", census_share_table(), persistent=False)
        count = 2 * radius + 1
        # Candidates around the estimate, the block match, and the window's largest and smallest estimate.
        sets = 1 + bool(block) + 2 * bool(extremes)
        # A 2×2 convolution of stride 2: each 2×2 cell's costs and colours (and each further hypothesis's gap
        # to the estimate) as one 1/2-resolution pixel.
        entry = nn.Conv2d(sets * 2 * count + 3 + (sets - 1), channels, kernel_size=2, stride=2, bias=False)
        self.entry = nn.Sequential(entry, nn.BatchNorm2d(channels), nn.ReLU6())
        self.body = nn.Sequential(*(SeparableResidual(channels, d) for d in DILATIONS))
        self.head = nn.Conv2d(channels, sets * 4 * count, kernel_size=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if sets > 1:
            nn.init.constant_(self.head.bias[4 * count :], BLOCK_PRIOR)

    def costs(self, disparity: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """B×H×W×2(2R+1), offsets descending: the census cost (the share of the 8 bits that differ) and
        the absolute difference of the grey images, at each offset."""
        return self.costs_from(disparity, matching_maps(left, right)).to(left.dtype)

    def costs_from(self, disparity: torch.Tensor, maps: MatchingMaps) -> torch.Tensor:
        """:meth:`costs` from the views' maps, computed once for every hypothesis (float32)."""
        reader = OffsetReader(disparity, self.radius)
        differing = torch.bitwise_xor(maps.code_left.unsqueeze(-1), reader.columns(maps.code_right))
        census = reader.costs(count_bits(self.census_share, differing), outside=1.0)
        gray = reader.costs((maps.gray_left.unsqueeze(-1) - reader.columns(maps.gray_right)).abs(), 1.0)
        return torch.cat((census, gray), -1)

    def block_costs(self, maps: MatchingMaps) -> torch.Tensor:
        """B×D×H×W: the block-averaged costs at every whole disparity of the stage's range, from which
        the block match is taken and the output polished (needs ``block``)."""
        return aggregated_costs(*maps, max_disp=int(self.upper) + 1, window=self.block)

    def forward(self, disparity: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        height, width = disparity.shape[-2:]
        estimate = disparity.detach()
        with torch.no_grad():  # fixed functions of the images, read where the hypotheses point
            maps = matching_maps(left, right)
            hypotheses = [estimate]
            if self.block:
                volume = self.block_costs(maps)
                hypotheses.append(block_match(volume))
            if self.extremes:
                hypotheses += window_extremes(estimate, self.extremes)
            inputs = [self.costs_from(hypothesis, maps).to(left.dtype) for hypothesis in hypotheses]
            for hypothesis in hypotheses[1:]:  # how far each lies from the estimate, in radii (clamped)
                inputs.append(((hypothesis - estimate) / self.radius).clamp(-4, 4).unsqueeze(-1).to(left.dtype))
        # Built as B×H×W×C, which is the channels-last layout of B×C×H×W: no copy before the convolutions.
        x = torch.cat((*inputs, left.permute(0, 2, 3, 1)), -1)
        if height % 2 or width % 2:  # the 2×2 cells need even sides
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = self.body(self.entry(x.permute(0, 3, 1, 2)))
        # The head scores each candidate for the cell's four pixels (pixel_shuffle's channel order:
        # candidate, then pixel).
        scores = self.head(x).unflatten(1, (len(hypotheses) * len(self.offsets), 4))
        prob = F.softmax(scores, dim=1)
        offsets = self.offsets.to(prob.dtype).repeat(len(hypotheses)).view(1, -1, 1, 1, 1)
        # Per pixel at 1/2 resolution, and only then spread out: the expected offset over all candidates
        # and the weight of each further hypothesis's candidates. The expected disparity is then
        # d + offset + Σ weight · (hypothesis − d): the gaps are not detached, so the estimate's gradient is
        # the weight of its own candidates, as in a mixture.
        count = len(self.offsets)
        expected = [(prob * offsets).sum(1)]  # B×4×h×w
        expected += [prob[:, k * count : (k + 1) * count].sum(1) for k in range(1, len(hypotheses))]
        spread = F.pixel_shuffle(torch.cat(expected, 1), 2)[..., :height, :width]  # B×E×H×W
        refined = disparity + spread[:, 0]
        for k, hypothesis in enumerate(hypotheses[1:], start=1):
            refined = refined + spread[:, k] * (hypothesis - disparity)
        refined = refined.clamp(0.0, self.upper)
        if self.polish and not self.training:  # inference only: the placement is not differentiable
            refined = polish(refined, volume, self.polish)
        return refined
