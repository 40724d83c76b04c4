"""A classical full-resolution hypothesis for the fine refinement: winner-take-all block matching.

The fine refinement (:mod:`~stereodistill.models.fine_refine`) searches ± R px around the network's
estimate. Where that estimate is further off, it cannot help, and on real photographs it often is:
on the quickstart's Motorcycle pair the networks carried the background's disparity onto the near
side of depth edges, more than 4 px too low on 12–21 % of those pixels, where SGBM, which matches
every pixel at full resolution, was not (docs/results.md, "Where the gap to SGBM lies now"). A plain
block matcher over the whole range, the oldest stereo method, has its own gross errors (on
textureless areas, where the network is right), but near textured edges it is close to SGBM. So the
stage gets it as a second hypothesis: it reads its costs around both and learns which to trust,
as PatchMatch and HITNet propagate candidates rather than trust one.

The same costs also place the stage's output (``polish``, at inference): the cheapest block match within
± R px of it, placed between whole pixels by a parabola, as SGBM places its matches. On real
photographs the learned stage, trained on synthetic scenes, placed less precisely than that
(docs/results.md, "A block-matching hypothesis and a classical polish").

The matching cost is that of the stage: the share of differing 3×3 census bits (Hamming distances
of packed bytes, counted by a lookup table) plus half the absolute grey-level difference,
averaged over a ``window`` × ``window`` block at every whole disparity 0 … max_disp − 1; a match
that would leave the right view costs more than any other. The minimum's disparity is the
hypothesis. The volume is built from windows of the right view's maps (no loop over disparities),
with the disparities innermost, in as few passes over it as the arithmetic allows (each pass costs
as much as a small convolution): some 13 bytes per entry while it is formed (the differing bits,
their lookup index, the costs, the grey differences), 4 bytes per entry once formed — 16 MiB at
256×512 with 32 disparities. With the match and the polish, 26 ms at that size on two threads of the
slower machine of docs/benchmarks.md, where the first version took 61 (benchmarks/bench_block_match.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The cost of a match that would leave the right view: that of a poor match (all 8 census bits differ,
#: and a grey difference of one, in the normalised units the stage reads).
OUTSIDE_COST = 1.5
#: Weight of the grey-level difference beside the census share (as measured; docs/results.md).
GREY_WEIGHT = 0.5


def popcount_table(device: torch.device | str | None = None) -> torch.Tensor:
    """The number of set bits of each byte value 0 … 255, as float32: a byte's bit count is one lookup
    (a gather, which an exported graph keeps; bit shifts of uint8 do not export with one type)."""
    byte = torch.arange(256, device=device)
    return sum(((byte >> bit) & 1) for bit in range(8)).to(torch.float32)


def census_share_table(device: torch.device | str | None = None) -> torch.Tensor:
    """The share of a 3×3 census code's 8 bits that a byte of differing bits sets (its bit count / 8):
    the census cost in one lookup, without a pass over the volume to divide it."""
    return popcount_table(device) / 8


def count_bits(table: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Look up each uint8 code in a 256-entry table (:func:`popcount_table`, :func:`census_share_table`):
    one ``index_select`` with 32-bit indices, half the time of indexing with the 64-bit ones plain
    indexing needs."""
    return table.index_select(0, codes.flatten().to(torch.int32)).view(codes.shape)


def shifted_columns(right: torch.Tensor, max_disp: int, fill: float) -> torch.Tensor:
    """B×H×W → B×H×W×D: entry [b, y, x, d] is ``right[b, y, x − d]``, ``fill`` where x − d < 0. Windows
    of the padded map (``unfold``), disparities innermost."""
    padded = F.pad(right, (max_disp - 1, 0), value=fill)  # padded[x + D − 1] = right[x]
    return padded.unfold(-1, max_disp, 1).flip(-1)  # the window at x holds right[x − D + 1 … x]


def matching_costs(
    code_left: torch.Tensor, code_right: torch.Tensor, gray_left: torch.Tensor, gray_right: torch.Tensor, max_disp: int
) -> torch.Tensor:
    """B×H×W census codes (uint8) and grey maps → B×D×H×W costs at every whole disparity.

    Built with the disparities innermost and returned as a B×D×H×W view of that memory (PyTorch's
    channels-last layout), in which the box average and the minimum over disparities run several
    times faster than over planes one disparity apart."""
    differing = torch.bitwise_xor(code_left.unsqueeze(-1), shifted_columns(code_right, max_disp, 0))
    costs = count_bits(census_share_table(code_left.device), differing)
    grey = torch.sub(gray_left.float().unsqueeze(-1), shifted_columns(gray_right.float(), max_disp, 0.0))
    costs.add_(grey.abs_(), alpha=GREY_WEIGHT)  # in place: each pass over the volume costs as much as a kernel
    # Matches that leave the view (x − d < 0) lie in the first D − 1 columns: filled there, not over the volume.
    edge = min(max_disp - 1, costs.shape[2])
    device = code_left.device
    outside = torch.arange(edge, device=device).view(-1, 1) < torch.arange(max_disp, device=device)
    costs[:, :, :edge].masked_fill_(outside, OUTSIDE_COST)
    return costs.permute(0, 3, 1, 2)


def aggregated_costs(
    code_left: torch.Tensor,
    code_right: torch.Tensor,
    gray_left: torch.Tensor,
    gray_right: torch.Tensor,
    max_disp: int,
    window: int,
) -> torch.Tensor:
    """B×H×W census codes and grey maps → B×D×H×W costs averaged over ``window`` × ``window`` blocks.

    The average is taken along rows, then along columns (2·N additions per entry, not N²); at the
    borders each pass averages what lies inside, so the two make the block's own average there too."""
    costs = matching_costs(code_left, code_right, gray_left, gray_right, max_disp)
    half = window // 2
    costs = F.avg_pool2d(costs, (1, window), stride=1, padding=(0, half), count_include_pad=False)
    return F.avg_pool2d(costs, (window, 1), stride=1, padding=(half, 0), count_include_pad=False)


def block_match(costs: torch.Tensor) -> torch.Tensor:
    """B×D×H×W aggregated costs → B×H×W whole-pixel disparity of the cheapest block match."""
    return costs.min(1).indices.to(torch.float32)  # min, not argmin: its CPU kernel is several times faster here


def polish(disparity: torch.Tensor, costs: torch.Tensor, radius: int) -> torch.Tensor:
    """Move each pixel of a B×H×W disparity to the cheapest block match within ± ``radius`` px of its
    rounded value, placed between whole pixels by a parabola through that cost and its neighbours',
    as SGBM places its matches. A pixel whose cheapest match lies on the border of its search keeps
    its value: the search found no minimum there, only a slope (the network decides which surface a
    pixel belongs to; the costs only place it)."""
    bins = costs.shape[1]
    start = torch.nan_to_num(disparity.float(), nan=0.0).round().clamp(0, bins - 1).long()
    # One read of the 2P + 3 costs from start − P − 1 to start + P + 1: the search and each candidate's
    # neighbours. Outside the range a cost repeats its edge (a flat end: no vertex found there).
    steps = torch.arange(-radius - 1, radius + 2, device=costs.device).view(1, -1, 1, 1)
    read = costs.gather(1, (start.unsqueeze(1) + steps).clamp(0, bins - 1))
    best = read[:, 1:-1].min(1, keepdim=True).indices  # 0 … 2P, the search's own candidates (min: see above)
    below, at, above = (read.gather(1, best + shift) for shift in (0, 1, 2))
    curvature = below - 2 * at + above
    vertex = 0.5 * (below - above) / curvature.clamp_min(1e-6)
    shift = torch.where(curvature > 1e-6, vertex.clamp(-0.5, 0.5), torch.zeros_like(vertex))
    centre = (start.unsqueeze(1) + best - radius).clamp(0, bins - 1)
    placed = (centre.to(shift.dtype) + shift)[:, 0].clamp(0, bins - 1)  # a tie at the range's end: stay inside
    interior = (best[:, 0] > 0) & (best[:, 0] < 2 * radius)
    return torch.where(interior, placed.to(disparity.dtype), disparity)
