"""Upsampling by learned 3×3-neighbour weights, as CoEx ("superpixel" upsampling), Fast-ACVNet+
("context" upsampling) and LightStereo bring their 1/4 disparity to full resolution.

These networks regress disparity on a coarse grid and do not interpolate it bilinearly: a small
image branch predicts, for every full-resolution pixel, nine softmax weights over the 3×3 coarse
cells around the cell it falls in (row by row: top-left, top, top-right, left, centre, …). The
pixel's value is the weighted sum of those nine cells' values, the cells outside the map counting
as 0 (as the releases' ``F.unfold`` pads). This keeps object edges sharp (a pixel may take its value
from the neighbour on its side of an edge) at the price of one 9-channel map.

Because the operation is linear in the coarse values, it also carries a coarse *distribution* to
full resolution: :func:`neighbour_distribution` mixes the sparse top-k distributions of the nine
cells with the same weights, so that its expectation is exactly the upsampled disparity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The nine neighbours, in the order of the weights' channels: (row offset, column offset).
NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def upsampling_factor(coarse: torch.Tensor, weights: torch.Tensor) -> int:
    """The integer upsampling factor from a coarse map to the weights' grid (and sanity checks)."""
    if weights.shape[1] != len(NEIGHBOURS):
        raise ValueError(f"neighbour weights need {len(NEIGHBOURS)} channels, got {weights.shape[1]}")
    height, width = coarse.shape[-2:]
    factor = weights.shape[-2] // height
    if factor < 1 or weights.shape[-2:] != (height * factor, width * factor):
        raise ValueError(
            f"weights of size {tuple(weights.shape[-2:])} are not an integer multiple of {(height, width)}"
        )
    return factor


def neighbour_maps(coarse: torch.Tensor, fill: float = 0.0) -> list[torch.Tensor]:
    """B×C×h×w → nine B×C×h×w views, in the order of :data:`NEIGHBOURS`: each cell's neighbour
    (``fill`` outside the map)."""
    height, width = coarse.shape[-2:]
    padded = F.pad(coarse, (1, 1, 1, 1), value=fill)
    return [padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in NEIGHBOURS]


def repeat_cells(coarse: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest (block) ×``factor``: every fine pixel of a cell reads the cell's value."""
    return coarse.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def neighbour_upsample(coarse: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """B×C×h×w coarse values and B×9×H×W weights (summing to 1 over the nine) → B×C×H×W."""
    factor = upsampling_factor(coarse, weights)
    neighbourhoods = repeat_cells(torch.stack(neighbour_maps(coarse), dim=2), factor)  # B×C×9×H×W
    return (neighbourhoods * weights.unsqueeze(1)).sum(2)


def neighbour_distribution(values: torch.Tensor, prob: torch.Tensor, weights: torch.Tensor, bins: int) -> torch.Tensor:
    """The full-resolution distribution over ``bins`` disparities whose mean is
    :func:`neighbour_upsample` of the coarse estimate.

    ``values`` (B×K×h×w, integer disparities on the output's axis) and ``prob`` are each coarse
    cell's K hypotheses and their probabilities. A fine pixel puts weight × probability on each
    hypothesis of each of its nine cells; a cell outside the map (value 0 in the upsampling) puts its
    weight on disparity 0. Result: B×bins×H×W, each pixel summing to 1 (up to rounding).
    """
    factor = upsampling_factor(values, weights)
    batch, _, height, width = weights.shape
    out = weights.new_zeros(batch, bins, height, width)
    # Outside the map: the first hypothesis is disparity 0 with probability 1, the others have 0.
    where, first, others = neighbour_maps(values), neighbour_maps(prob[:, :1], fill=1.0), neighbour_maps(prob[:, 1:])
    for n in range(len(NEIGHBOURS)):
        mass = repeat_cells(torch.cat((first[n], others[n]), dim=1), factor)
        out.scatter_add_(1, repeat_cells(where[n], factor), mass * weights[:, n : n + 1])
    return out
