"""The block-matching hypothesis of the fine refinement: its bit count, its volume against a
per-disparity reference, that it finds both layers of a two-depth scene, and the polish that places
an estimate on its costs."""

from __future__ import annotations

import torch

from stereodistill.models.block_match import (
    OUTSIDE_COST,
    aggregated_costs,
    block_match,
    matching_costs,
    polish,
    popcount_table,
    shifted_columns,
)
from stereodistill.models.fine_refine import matching_maps

from .test_census_cost import textured


def test_popcount_counts_the_bits_of_every_byte():
    expected = torch.tensor([bin(value).count("1") for value in range(256)], dtype=torch.float32)
    assert torch.equal(popcount_table(), expected)


def test_shifted_columns_read_the_right_view_d_columns_to_the_left():
    right = torch.arange(2 * 3 * 10, dtype=torch.float32).view(2, 3, 10)
    shifted = shifted_columns(right, max_disp=4, fill=-1.0)
    assert shifted.shape == (2, 3, 10, 4)
    for d in range(4):
        expected = torch.cat((torch.full((2, 3, d), -1.0), right[..., : 10 - d]), -1)
        assert torch.equal(shifted[..., d], expected)


def test_costs_match_a_per_disparity_reference():
    left, right = textured(12, 30, seed=1), textured(12, 30, seed=2)
    maps = matching_maps(left, right)
    costs = matching_costs(*maps, max_disp=6)
    for d in range(6):
        differing = torch.bitwise_xor(maps.code_left[..., d:], maps.code_right[..., : 30 - d])
        bits = torch.tensor([bin(v).count("1") for v in range(256)], dtype=torch.float32)[differing.long()]
        grey = (maps.gray_left[..., d:] - maps.gray_right[..., : 30 - d]).abs()
        torch.testing.assert_close(costs[:, d, :, d:], bits / 8 + 0.5 * grey)
        assert (costs[:, d, :, :d] == OUTSIDE_COST).all()


def test_an_image_narrower_than_the_range_costs_every_match_that_leaves_it_as_outside():
    left, right = textured(6, 5, seed=1), textured(6, 5, seed=2)
    costs = matching_costs(*matching_maps(left, right), max_disp=8)
    for d in range(8):
        assert (costs[:, d, :, : min(d, 5)] == OUTSIDE_COST).all()
        assert (costs[:, d, :, d:] < OUTSIDE_COST).all()


def test_the_aggregated_costs_are_the_block_averages_borders_included():
    left, right = textured(12, 30, seed=3), textured(12, 30, seed=4)
    maps = matching_maps(left, right)
    costs = matching_costs(*maps, max_disp=6)
    for window in (3, 7):
        expected = torch.nn.functional.avg_pool2d(costs, window, 1, window // 2, count_include_pad=False)
        torch.testing.assert_close(aggregated_costs(*maps, max_disp=6, window=window), expected)


def layered_pair(height: int, width: int, near: int, far: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A textured background at disparity ``far`` behind a textured block at ``near``, rendered exactly:
    left[x] = right[x − d(x)]. Returns left, right and the true B×H×W disparity."""
    background, block = textured(height, width + far, seed=7), textured(height, width + near, seed=8)
    left, right = background[..., :width].clone(), background[..., far : far + width].clone()
    rows, cols = slice(height // 4, 3 * height // 4), slice(width // 3, 2 * width // 3)
    seen = slice(width // 3 - near, 2 * width // 3 - near)  # the block's columns in the right view
    left[..., rows, cols] = block[..., rows, cols]
    right[..., rows, seen] = block[..., near : near + width][..., rows, seen]
    truth = torch.full((1, height, width), float(far))
    truth[:, rows, cols] = float(near)
    return left, right, truth


def test_block_match_finds_both_layers_of_a_two_depth_scene():
    left, right, truth = layered_pair(48, 96, near=11, far=3)
    estimate = block_match(aggregated_costs(*matching_maps(left, right), max_disp=16, window=5))
    assert estimate.shape == truth.shape and estimate.dtype == torch.float32
    correct = (estimate == truth)[:, 2:-2, 16:-2]  # off the image border and the occluded left columns
    assert correct.float().mean() > 0.9
    inner = (estimate == truth)[:, 16:32, 40:60]  # well inside the near block
    assert inner.all()


def test_polish_places_an_estimate_at_the_vertex_of_the_costs_within_its_radius():
    truth = torch.tensor([[[3.3, 7.8, 12.45, 5.0]]])  # B×H×W = 1×1×4
    levels = torch.arange(16, dtype=torch.float32).view(1, 16, 1, 1)
    costs = (levels - truth.unsqueeze(1)) ** 2  # a parabola around the truth: its vertex is exact
    estimate = torch.tensor([[[4.2, 6.9, 12.0, 9.2]]])  # the last 4.2 px off: beyond a radius of 2
    placed = polish(estimate, costs, radius=2)
    torch.testing.assert_close(placed[..., :3], truth[..., :3])
    assert placed[0, 0, 3] == estimate[0, 0, 3]  # its cheapest candidate lies on the border: kept
    torch.testing.assert_close(polish(estimate, costs, radius=5), truth)


def test_polish_never_leaves_the_range():
    # Cheapest at the top of the range: the read past it repeats the last cost, a tie that would put the
    # vertex half a pixel beyond the range.
    costs = torch.arange(7, -1, -1, dtype=torch.float32).view(1, 8, 1, 1).expand(1, 8, 1, 2).clone()
    placed = polish(torch.tensor([[[7.0, 6.6]]]), costs, radius=1)
    assert (placed <= 7).all() and (placed >= 0).all()
