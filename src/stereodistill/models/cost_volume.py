"""Cost volumes over a disparity range, built without a Python loop over disparities.

All three share one convention (that of PSMNet/GwcNet): entry ``[..., d, y, x]`` compares left
feature ``(y, x)`` with right feature ``(y, x − d)``; where ``x − d < 0`` the entry is 0.

Correlations are banded matrix products: the left row is cut into blocks of ``block`` columns and
each block is multiplied with the band of right columns it can match (``block + D − 1`` columns),
so the products run in batched GEMMs, a chunk of groups at a time; the D diagonals of each product
are then read through a strided view. This costs (block + D − 1)/D of the minimal arithmetic and
never materialises the C×D×H×W product a naive broadcast needs. The ``*_loop`` functions are the
per-disparity references the tests and ``benchmarks/bench_cost_volume.py`` compare against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stereodistill.models.numerics import reference

DEFAULT_BLOCK = 32
#: Bytes of block products formed at once. A chunk this size is reused from the allocator's heap on
#: every call instead of being freshly mapped (and page-faulted) as a whole-volume product is, and
#: stays closer to cache while its diagonals are read: 1.17× faster than one whole-volume product on
#: 2 CPU threads at 1/4 of 256×512, D = 48 (docs/benchmarks.md).
CHUNK_BYTES = 16 * 2**20


def _check(left: torch.Tensor, right: torch.Tensor, max_disp: int) -> None:
    if left.shape != right.shape or left.dim() != 4:
        raise ValueError(f"feature maps must be B×C×H×W of one shape, got {tuple(left.shape)}, {tuple(right.shape)}")
    if max_disp < 1:
        raise ValueError(f"max_disp must be ≥ 1, got {max_disp}")


def groupwise_correlation_volume(
    left: torch.Tensor,
    right: torch.Tensor,
    max_disp: int,
    num_groups: int,
    block: int = DEFAULT_BLOCK,
    chunk_bytes: int = CHUNK_BYTES,
) -> torch.Tensor:
    """B×G×D×H×W: per group of C/G channels, the mean of left·right over the group's channels.

    The groups' products are formed about ``chunk_bytes`` at a time, each chunk's diagonals copied
    into the volume before the next is formed.
    """
    _check(left, right, max_disp)
    batch, channels, height, width = left.shape
    if channels % num_groups:
        raise ValueError(f"{channels} channels do not split into {num_groups} groups")
    if reference():
        return groupwise_correlation_volume_loop(left, right, max_disp, num_groups)
    per_group = channels // num_groups
    block = max(1, min(block, width))
    n_blocks = -(-width // block)
    padded_w = n_blocks * block
    band = block + max_disp - 1
    # Left blocks as matrices (block × C/G), the 1/(C/G) of the mean folded in here (cheapest place).
    lhs = F.pad(left * (1.0 / per_group), (0, padded_w - width))
    lhs = lhs.view(batch, num_groups, per_group, height, n_blocks, block).permute(0, 1, 3, 4, 5, 2)
    # Right bands with their columns reversed, so that the diagonals read below have positive strides.
    rhs = F.pad(right, (max_disp - 1, padded_w - width)).flip(-1)
    rhs = rhs.view(batch, num_groups, per_group, height, padded_w + max_disp - 1)
    rhs = rhs.unfold(-1, band, block).flip(-2).permute(0, 1, 3, 4, 2, 5)  # B×G×H×nb×(C/G)×band
    group_bytes = batch * height * n_blocks * block * band * left.element_size()
    step = max(1, chunk_bytes // group_bytes)
    # Inference writes each chunk straight into the volume; under autograd the chunks are
    # concatenated instead (in-place slice writes would make every chunk's backward copy the whole
    # volume's gradient).
    in_place = not (torch.is_grad_enabled() and (left.requires_grad or right.requires_grad))
    volume: torch.Tensor | None = None
    chunks = []
    for g0 in range(0, num_groups, step):  # a few chunks of groups, never one step per disparity
        g1 = min(g0 + step, num_groups)
        products = torch.matmul(lhs[:, g0:g1], rhs[:, g0:g1])  # B×g×H×nb×block×band
        # products[..., i, block − 1 − i + d] is disparity d of left column i: a strided view.
        s = products.stride()
        diagonals = products.as_strided(
            (batch, g1 - g0, height, n_blocks, block, max_disp),
            (s[0], s[1], s[2], s[3], band - 1, 1),
            products.storage_offset() + block - 1,
        ).permute(0, 1, 5, 2, 3, 4)  # B×g×D×H×nb×block
        if not in_place:
            chunks.append(diagonals)
            continue
        if volume is None:  # the products' dtype (autocast may differ from the features')
            volume = products.new_empty(batch, num_groups, max_disp, height, n_blocks, block)
        volume[:, g0:g1] = diagonals
    if volume is None:
        volume = torch.cat(chunks, dim=1) if len(chunks) > 1 else chunks[0].contiguous()
    volume = volume.view(batch, num_groups, max_disp, height, padded_w)
    return volume if padded_w == width else volume[..., :width].contiguous()


def correlation_volume(
    left: torch.Tensor, right: torch.Tensor, max_disp: int, block: int = DEFAULT_BLOCK
) -> torch.Tensor:
    """B×1×D×H×W: mean over all channels of left·right (one group)."""
    return groupwise_correlation_volume(left, right, max_disp, 1, block)


def concat_volume(left: torch.Tensor, right: torch.Tensor, max_disp: int, keep_left: bool = False) -> torch.Tensor:
    """B×2C×D×H×W: left features and right features shifted by d, stacked along channels.

    Where ``x − d < 0`` the right half is 0, and so is the left half unless ``keep_left`` (ACVNet
    keeps the left features there). Each half is one ``gather`` from the zero-padded map along W,
    written straight into the volume in its final layout (when no gradient is needed).
    """
    _check(left, right, max_disp)
    if reference():
        return concat_volume_loop(left, right, max_disp, keep_left)
    batch, channels, height, width = left.shape
    disparities = torch.arange(max_disp, device=left.device)[:, None]
    columns = torch.arange(width, device=left.device)[None, :]
    right_index = columns - disparities + (max_disp - 1)  # D×W: padded column of x − d
    own_column = columns + (max_disp - 1) + 0 * disparities  # D×W: padded column of x
    left_index = own_column if keep_left else torch.where(columns >= disparities, own_column, 0)  # col 0 is padding
    shape = (batch, channels, max_disp, height, width)

    def half(features: torch.Tensor, index: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        padded = F.pad(features, (max_disp - 1, 0)).unsqueeze(2).expand(*shape[:-1], width + max_disp - 1)
        index = index.view(1, 1, max_disp, 1, width).expand(shape)
        return torch.gather(padded, -1, index) if out is None else torch.gather(padded, -1, index, out=out)

    if torch.is_grad_enabled() and (left.requires_grad or right.requires_grad):
        return torch.cat((half(left, left_index), half(right, right_index)), dim=1)
    volume = left.new_empty(batch, 2 * channels, max_disp, height, width)
    half(left, left_index, out=volume[:, :channels])
    half(right, right_index, out=volume[:, channels:])
    return volume


# ------------------------------------------------------------------------ per-disparity references
def groupwise_correlation_volume_loop(
    left: torch.Tensor, right: torch.Tensor, max_disp: int, num_groups: int
) -> torch.Tensor:
    """Reference: one slice per disparity, as the original GwcNet code builds it."""
    batch, channels, height, width = left.shape
    volume = left.new_zeros(batch, num_groups, max_disp, height, width)
    for d in range(min(max_disp, width)):
        product = left[..., d:] * right[..., : width - d]
        volume[:, :, d, :, d:] = product.view(batch, num_groups, channels // num_groups, height, width - d).mean(2)
    return volume


def concat_volume_loop(left: torch.Tensor, right: torch.Tensor, max_disp: int, keep_left: bool = False) -> torch.Tensor:
    """Reference: one slice per disparity, as the original PSMNet/GwcNet (``keep_left``: ACVNet)
    code builds it."""
    batch, channels, height, width = left.shape
    volume = left.new_zeros(batch, 2 * channels, max_disp, height, width)
    for d in range(max_disp):
        start = min(d, width)
        volume[:, :channels, d, :, 0 if keep_left else start :] = left if keep_left else left[..., start:]
        volume[:, channels:, d, :, start:] = right[..., : width - start]
    return volume
