"""The building blocks of LEAStereo's searched networks: conv-BN-ReLU units, cells and their wiring.

LEAStereo (Cheng et al., NeurIPS 2020) searches two networks of the same kind, a 2-D feature net
and a 3-D matching net. Each is a chain of cells; a cell sits at a *level* (feature scale 1, 1/2,
1/4, 1/8 of the network's input) and may change level by one from its predecessor, resampling its
previous input by bilinear/trilinear interpolation (corners aligned). Inside, the cell projects
its two inputs to its width with 1×1 units and adds up, step by step, the operations its genotype
chose on earlier states; its output concatenates the last ``block_multiplier`` states.

The genotype lists ``(branch, primitive)`` rows. As in the release, operation module ``_ops.k`` is
*built* from row k but *applied* to the k-th branch in ascending branch order; for the released
genotypes both orders give the same primitives, but the weights' names follow the second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.models.blocks import Conv3d

#: Primitives of the search space, by index: 0 skip connection (identity), 1 3×3(×3) conv-BN-ReLU.
SKIP, CONV_3X3 = 0, 1


class ConvBnReLU(nn.Module):
    """Convolution (no bias), then optionally batch norm and ReLU; 2-D or 3-D.

    Attribute names (``conv``, ``bn``) follow the release. A unit built without batch norm has no
    ``bn`` at all: the release creates one it never applies, and those tensors are dropped on import.
    """

    def __init__(
        self,
        dims: int,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int,
        padding: int,
        bn: bool = True,
        relu: bool = True,
    ) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else Conv3d
        self.conv = conv(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
        self.bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(out_ch) if bn else None
        self.relu = relu

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution and batch norm, without the ReLU."""
        x = self.conv(x)
        return x if self.bn is None else self.bn(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.affine(x)
        return F.relu(x, inplace=True) if self.relu else x


def resampled_size(size: int, direction: int) -> int:
    """Size after one level change, as the release computes it (corner-aligned resampling).

    ``direction`` −1 halves (odd n → (n + 1) / 2), +1 doubles (odd n → 2n − 1), 0 keeps n.
    """
    if direction < 0:
        return (size + 1) // 2
    if direction > 0:
        return 2 * size - 1 if size % 2 else 2 * size
    return size


def interpolation_mode(dims: int) -> str:
    return "bilinear" if dims == 2 else "trilinear"


def cell_plan(genotype: Sequence[tuple[int, int]], steps: int) -> tuple[tuple[int, ...], ...]:
    """For each step, the indices of the states its operations read, in the order they are applied.

    Branch b of step i reads state j where b = offset(i) + j and offset(i) = 2 + 3 + … (i terms);
    the n-th branch met in that order uses operation ``_ops.n``.
    """
    branches = {branch for branch, _ in genotype}
    plan: list[tuple[int, ...]] = []
    offset, n_states = 0, 2
    for _ in range(steps):
        plan.append(tuple(j for j in range(n_states) if offset + j in branches))
        offset += n_states
        n_states += 1
    if sum(len(step) for step in plan) != len(genotype):
        raise ValueError(f"genotype {list(genotype)} does not fit a cell of {steps} steps")
    return tuple(plan)


class SearchedCell(nn.Module):
    """One cell: resample, project both inputs to ``out_ch``, run the genotype, concatenate."""

    def __init__(
        self,
        dims: int,
        genotype: Sequence[tuple[int, int]],
        steps: int,
        block_multiplier: int,
        prev_prev_ch: int,
        prev_ch: int,
        out_ch: int,
        direction: int,
    ) -> None:
        super().__init__()
        if prev_prev_ch == out_ch:
            # The release then skips ``pre_preprocess`` (its weights unused); no released cell does.
            raise ValueError("a cell whose earlier input already has the cell's width is not supported")
        self.dims = dims
        self.direction = direction
        self.block_multiplier = block_multiplier
        self.plan = cell_plan(genotype, steps)
        self.pre_preprocess = ConvBnReLU(dims, prev_prev_ch, out_ch, 1, 1, 0)
        self.preprocess = ConvBnReLU(dims, prev_ch, out_ch, 1, 1, 0)
        self._ops = nn.ModuleList(
            nn.Identity() if primitive == SKIP else ConvBnReLU(dims, out_ch, out_ch, 3, 1, 1)
            for _, primitive in genotype
        )

    def forward(self, prev_prev: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        size = [resampled_size(n, self.direction) for n in prev.shape[2:]]
        states = [self.project(self.pre_preprocess, prev_prev, size), self.project(self.preprocess, prev, size)]
        ops = iter(self._ops)
        for sources in self.plan:
            total = next(ops)(states[sources[0]])
            for j in sources[1:]:
                total = total + next(ops)(states[j])  # out of place: an identity op returns its input
            states.append(total)
        return torch.cat(states[-self.block_multiplier :], dim=1)

    def project(self, unit: ConvBnReLU, x: torch.Tensor, size: list[int]) -> torch.Tensor:
        """``unit(resize(x, size))``, the release's order (corner-aligned; no resize if x has that size).

        In eval, an upsampling input takes the 1×1 convolution and batch norm *before* the resize,
        on 2^dims times fewer voxels and into fewer channels: both are affine per voxel and the
        interpolation weights sum to one, so the result is the same up to float rounding. Only the
        ReLU has to wait for the resize. (In training, batch statistics forbid the swap.)
        """
        if list(x.shape[2:]) == size:
            return unit(x)
        mode = interpolation_mode(self.dims)
        upsampling = math.prod(size) > math.prod(x.shape[2:])
        if not self.training and upsampling and unit.relu and max(unit.conv.kernel_size) == 1:
            return F.relu(F.interpolate(unit.affine(x), size=size, mode=mode, align_corners=True), inplace=True)
        return unit(F.interpolate(x, size=size, mode=mode, align_corners=True))


class SearchedNet(nn.Module):
    """What the feature and matching nets share: a chain of cells along a network path (one level
    per cell, the stem's outputs at level 0), and the units that bring the last cell's output back
    to level 0 (``last_{3·2^l}``: 1×1 conv-BN-ReLU halving the width, then corner-aligned
    upsampling, for l = L … 1; the final ``last_3`` is the owner's).

    A cell at level l is ``filter_multiplier``·2^l wide and outputs ``block_multiplier`` times that.
    Only the ``last_*`` units the path's final level needs are built (the release builds all three).
    """

    def build_cells(
        self,
        dims: int,
        path: Sequence[int],
        genotype: Sequence[tuple[int, int]],
        steps: int,
        block_multiplier: int,
        filter_multiplier: int,
    ) -> None:
        self.dims = dims
        self.final_level = path[-1]
        levels = [0, 0, *path]  # the two stem outputs, then one level per cell

        def width(k: int) -> int:
            return block_multiplier * filter_multiplier * 2 ** levels[k]

        self.cells = nn.ModuleList(
            SearchedCell(
                dims,
                genotype,
                steps,
                block_multiplier,
                prev_prev_ch=width(i),
                prev_ch=width(i + 1),
                out_ch=filter_multiplier * 2**level,
                direction=levels[i + 1] - level,  # to a coarser level: halve (−1); finer: double (+1)
            )
            for i, level in enumerate(path)
        )
        stem_ch = width(0)
        for lv in range(self.final_level, 0, -1):
            unit = ConvBnReLU(dims, stem_ch * 2**lv, stem_ch * 2 ** (lv - 1), 1, 1, 0)
            self.add_module(f"last_{3 * 2**lv}", unit)

    def to_level0(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Last cell's output → level 0 of ``size`` (the release sizes level l as ``size // 2^l``)."""
        for lv in range(self.final_level, 0, -1):
            x = getattr(self, f"last_{3 * 2**lv}")(x)
            target = [n // 2 ** (lv - 1) for n in size]
            x = F.interpolate(x, size=target, mode=interpolation_mode(self.dims), align_corners=True)
        return x


def path_sizes(size: int, path: Sequence[int]) -> list[int]:
    """Size of one axis after each cell of ``path``, starting from ``size`` at level 0."""
    sizes, level = [], 0
    for next_level in path:
        size = resampled_size(size, level - next_level)
        sizes.append(size)
        level = next_level
    return sizes
