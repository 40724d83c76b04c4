"""The ``lean`` family: contract, taps, knobs, speed-relevant structure, and its pieces."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stereodistill.checkpoint import load_model, save_model
from stereodistill.errors import ConfigError
from stereodistill.models import build_model, list_models
from stereodistill.models.convex_upsample import convex_combine, neighbourhood3x3
from stereodistill.models.guided_refine import GuidedRefinement, warp_right
from stereodistill.models.lean import LeanStereo, scaled, topk_logits
from stereodistill.models.lean_aggregation import MatchingScore
from stereodistill.models.local_refine import LocalRefinement, local_costs
from stereodistill.models.mobile_blocks import ConvBNAct
from stereodistill.models.registry import MODELS

from .contract import check_eval_forward, check_tap_alone

MEMBERS = ("lean", "lean-l", "lean-s", "lean-xs")
MAX_DISP = 16


@pytest.fixture(scope="module", params=MEMBERS)
def net(request) -> LeanStereo:
    torch.manual_seed(0)
    return build_model(request.param, max_disp=MAX_DISP)


def images(height: int, width: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(batch, 3, height, width, generator=g), torch.rand(batch, 3, height, width, generator=g)


def test_every_member_is_registered_and_listed():
    assert set(MEMBERS) <= set(list_models())
    for name in MEMBERS:
        assert issubclass(MODELS.get(name), LeanStereo)
        assert MODELS.get(name).arch == name


@pytest.mark.parametrize("size", [(32, 64), (37, 53), (48, 80)])
def test_any_size_is_cropped_back_exactly(net, size):
    left, right = images(*size)
    check_eval_forward(net, left, right, MAX_DISP)


def test_no_3d_convolution_anywhere(net):
    assert not any(isinstance(m, torch.nn.Conv3d) for m in net.modules())


def test_taps_are_computed_only_when_asked_and_have_the_shared_shapes(net):
    left, right = images(32, 64)
    shapes = net.tap_shapes(32, 64)
    groups, disparities = net.knobs.groups, MAX_DISP // 4
    assert shapes["volume.cost"] == (1, groups, disparities, 8, 16)
    assert shapes["logits.0"] == (1, disparities, 8, 16)
    assert shapes["prob"] == (1, MAX_DISP, 32, 64)
    assert shapes["feat.left.s4"][2:] == (8, 16) and shapes["feat.left.s2"][2:] == (16, 32)
    for tap, shape in shapes.items():
        check_tap_alone(net, left, right, tap, shape)


def test_prob_is_a_distribution_cropped_to_the_input(net):
    left, right = images(37, 53)
    net.eval()
    with torch.no_grad():
        prob = net(left, right, taps=["prob"]).taps["prob"]
    assert prob.shape == (1, MAX_DISP, 37, 53)
    torch.testing.assert_close(prob.sum(1), torch.ones(1, 37, 53))


def test_training_gives_the_quarter_resolution_aux_and_gradients_reach_the_backbone():
    torch.manual_seed(0)
    net = build_model("lean-xs", max_disp=MAX_DISP).train()
    left, right = images(32, 64, batch=2)
    out = net(left, right)
    assert len(out.predictions) == len(net.loss_weights) == 2
    assert all(p.shape == (2, 32, 64) for p in out.predictions)
    sum(p.mean() for p in out.predictions).backward()
    stem = net.feature_extraction.stem[0].conv.weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0


def test_members_are_ordered_by_size():
    params = {name: sum(p.numel() for p in build_model(name, max_disp=192).parameters()) for name in MEMBERS}
    assert params["lean-xs"] < params["lean-s"] < params["lean"] < params["lean-l"]


def test_knobs_override_the_preset_and_round_trip_through_a_checkpoint(tmp_path):
    net = build_model("lean-s", max_disp=MAX_DISP, agg_blocks=2, topk=2)
    assert net.knobs.agg_blocks == 2 and net.knobs.width == 0.75 and net.knobs.topk == 2
    save_model(tmp_path / "m", net)
    again = load_model(tmp_path / "m")
    assert again.arch == "lean-s" and again.knobs == net.knobs
    left, right = images(32, 64)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(left, right).disparity, net(left, right).disparity)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"width": 0}, "width"),
        ({"depth": (1, 1)}, "depth"),
        ({"agg_channels": 0}, "agg_channels"),
        ({"topk": -1}, "topk"),
        ({"groups": 5}, "groups"),
        ({"refine": -1}, "refine"),
        ({"guide": 7}, "guide"),
        ({"census": 4}, "census"),
        ({"census": 1}, "census"),
    ],
)
def test_bad_knobs_are_one_line_config_errors(knobs, message):
    with pytest.raises(ConfigError, match=message):
        build_model("lean", max_disp=MAX_DISP, **knobs)


def test_scaled_channels_are_multiples_of_eight():
    assert [scaled(c, 0.5) for c in (16, 24, 48, 64)] == [8, 16, 24, 32]
    assert scaled(48, 1.5) == 72


def test_topk_keeps_the_k_largest_logits():
    logits = torch.tensor([0.0, 3.0, 1.0, 2.0]).view(1, 4, 1, 1)
    kept = topk_logits(logits, 2)
    assert torch.isinf(kept[0, [0, 2]]).all() and kept[0, 1] == 3.0 and kept[0, 3] == 2.0
    assert topk_logits(logits, 0) is logits


def test_neighbourhood_is_row_major_with_replicated_edges():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    n = neighbourhood3x3(x)
    assert n[0, :, 0, 0].tolist() == [0, 0, 1, 0, 0, 1, 3, 3, 4]
    assert n[0, 4].equal(x[0, 0])  # the centre


def test_convex_upsampling_of_a_constant_is_that_constant_and_weights_can_pick_a_neighbour():
    low = torch.full((1, 3, 4), 2.5)
    out = convex_combine(low, torch.randn(1, 9 * 16, 3, 4), factor=4)
    assert out.shape == (1, 12, 16)
    torch.testing.assert_close(out, torch.full((1, 12, 16), 2.5))
    # A weight logit far above the rest on the centre reproduces nearest-neighbour upsampling.
    low = torch.rand(1, 3, 4)
    weights = torch.zeros(1, 9, 16, 3, 4)
    weights[:, 4] = 50.0
    nearest = F.interpolate(low[:, None], scale_factor=4, mode="nearest")[:, 0]
    torch.testing.assert_close(convex_combine(low, weights.view(1, 144, 3, 4), 4), nearest)


def test_folded_batch_norm_in_eval_matches_convolution_then_normalisation():
    torch.manual_seed(0)
    block = ConvBNAct(8, 16, kernel=3, stride=2, groups=1)
    depthwise = ConvBNAct(16, 16, kernel=3, groups=16, act=False)
    x = torch.randn(2, 8, 12, 20)
    for module in (block, depthwise):
        with torch.no_grad():  # non-trivial running statistics and affine parameters
            module.bn.running_mean.uniform_(-1, 1)
            module.bn.running_var.uniform_(0.5, 2)
            module.bn.weight.uniform_(0.5, 1.5)
            module.bn.bias.uniform_(-1, 1)
        module.eval()
    with torch.no_grad():
        for module, inp in ((block, x), (depthwise, block(x))):
            expected = module.act(module.bn(module.conv(inp)))
            torch.testing.assert_close(module(inp), expected, rtol=1e-5, atol=1e-5)
            channels_last = module(inp.contiguous(memory_format=torch.channels_last))
            torch.testing.assert_close(channels_last, expected, rtol=1e-5, atol=1e-5)


def test_matching_score_starts_as_the_plain_correlation_and_shares_its_rule_across_disparities():
    torch.manual_seed(0)
    score = MatchingScore(groups=4)
    volume = torch.randn(2, 4, 6, 5, 7)
    torch.testing.assert_close(score(volume), volume.mean(1))
    with torch.no_grad():
        score.weight.normal_()
    shifted = torch.roll(volume, shifts=1, dims=2)  # the same costs, one disparity further
    torch.testing.assert_close(score(shifted), torch.roll(score(volume), shifts=1, dims=1))


def test_local_costs_are_the_correlation_with_the_linearly_warped_right_features():
    """Correlation is linear in the right view, so reading the volume at fractional disparities is
    the group-wise correlation with the right features warped there (inside the image)."""
    torch.manual_seed(0)
    groups, bins, height, width = 4, 6, 3, 24
    left, right = torch.randn(1, 8, height, width), torch.randn(1, 8, height, width)
    from stereodistill.models.cost_volume import groupwise_correlation_volume

    volume = groupwise_correlation_volume(left, right, bins, groups)
    disparity = 1.5 + 2.0 * torch.rand(1, height, width)
    offsets = torch.tensor([-1.0, -0.25, 0.0, 0.5, 1.0])
    costs = local_costs(volume, disparity, offsets).view(1, groups, len(offsets), height, width)
    for k, offset in enumerate(offsets):
        x = torch.arange(width).view(1, 1, width) - (disparity + offset)  # right-view column
        x0 = x.floor().long().clamp(0, width - 1)
        frac = (x - x.floor()).unsqueeze(1)
        r0 = torch.gather(right, 3, x0.unsqueeze(1).expand(-1, 8, -1, -1))
        r1 = torch.gather(right, 3, (x0 + 1).clamp(max=width - 1).unsqueeze(1).expand(-1, 8, -1, -1))
        warped = r0 + frac * (r1 - r0)
        expected = (left * warped).view(1, groups, 2, height, width).mean(2)
        inside = (x >= 0).expand(1, height, width).unsqueeze(1).expand_as(expected)  # the volume is 0 left of it
        torch.testing.assert_close(costs[:, :, k][inside], expected[inside])


def test_refinement_starts_as_the_identity_and_learns_a_residual():
    torch.manual_seed(0)
    refine = LocalRefinement(groups=4, context_channels=8, channels=8, blocks=1, expansion=2)
    disparity = 3.0 * torch.rand(2, 5, 7)
    volume, context = torch.randn(2, 4, 6, 5, 7), torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(refine(disparity, volume, context), disparity)
    refine(disparity, volume, context).sum().backward()
    assert refine.head.weight.grad.abs().sum() > 0


def test_refine_knob_adds_the_refinement_and_keeps_the_contract():
    torch.manual_seed(0)
    net = build_model("lean", max_disp=MAX_DISP, refine=1)
    assert isinstance(net.refinement, LocalRefinement)
    check_eval_forward(net, *images(37, 53), MAX_DISP)


@pytest.mark.parametrize("max_disp", [16, 32])
def test_output_reaches_the_top_of_the_range(max_disp):
    """A 1/4 volume's last bin is max_disp − 4 px; the refinement may go to max_disp − 1 px, not beyond
    (before, the top 4 px of the range were unreachable: a Motorcycle at up to 30 px, range 32)."""
    torch.manual_seed(0)
    net = build_model("lean", max_disp=max_disp).eval()
    with torch.no_grad():
        net.refinement.head.bias.fill_(100.0)
        disparity = net(*images(32, 64)).disparity
    torch.testing.assert_close(disparity, torch.full_like(disparity, max_disp - 1.0))


def test_warp_right_brings_the_right_view_to_the_left():
    """A right view that is the left shifted by d (right(x) = left(x + d)) warps back onto the left:
    exactly for a whole-pixel d, and for a fractional d on an image linear in x."""
    left = torch.rand(1, 3, 12, 40, generator=torch.Generator().manual_seed(0))
    right = torch.cat((left[..., 3:], left[..., -1:].expand(-1, -1, -1, 3)), -1)
    warped = warp_right(right, torch.full((1, 12, 40), 3.0))
    torch.testing.assert_close(warped[..., 3:], left[..., 3:])
    ramp = torch.arange(40.0).expand(1, 3, 12, 40)
    warped = warp_right(ramp + 2.5, torch.full((1, 12, 40), 2.5))
    torch.testing.assert_close(warped[..., 3:], ramp[..., 3:])


def test_guided_refinement_starts_as_the_identity_and_learns_a_residual():
    torch.manual_seed(0)
    refine = GuidedRefinement(upper=15.0, channels=8, blocks=2)
    disparity = 10.0 * torch.rand(2, 16, 24)
    left, right = images(16, 24, batch=2)
    torch.testing.assert_close(refine(disparity, left, right), disparity)
    refine(disparity, left, right).sum().backward()
    assert refine.head.weight.grad.abs().sum() > 0


def test_guide_knob_adds_a_supervised_full_resolution_stage():
    torch.manual_seed(0)
    net = build_model("lean", max_disp=MAX_DISP, guide=2)
    assert isinstance(net.guided, GuidedRefinement) and len(net.guided.body) == 2
    check_eval_forward(net, *images(37, 53), MAX_DISP)
    out = net.train()(*images(32, 64, batch=2))
    # 1/4 soft-argmin, convex upsampling, guided output: one loss weight each, final last.
    assert len(out.predictions) == len(net.loss_weights) == 3
    assert build_model("lean", max_disp=MAX_DISP).guided is None


def test_census_knob_feeds_the_aggregation_and_leaves_the_taps_alone():
    torch.manual_seed(0)
    net = build_model("lean", max_disp=MAX_DISP, census=5)
    plain = build_model("lean", max_disp=MAX_DISP)
    groups, disparities = net.knobs.groups, MAX_DISP // 4
    entry = net.aggregation.entry.conv
    # One more volume channel per disparity enters the aggregation, after the G·D learned ones, and
    # one more group the matching score.
    assert entry.in_channels == plain.aggregation.entry.conv.in_channels + disparities
    assert net.score.weight.shape[1] == plain.score.weight.shape[1] + 1 == groups + 1
    check_eval_forward(net, *images(37, 53), MAX_DISP)
    check_tap_alone(net, *images(32, 64), "volume.cost", (1, groups, disparities, 8, 16))
    out = net.train()(*images(32, 64, batch=2))
    out.disparity.mean().backward()
    census_weights = entry.weight.grad[:, groups * disparities : (groups + 1) * disparities]
    assert census_weights.abs().sum() > 0  # the census channels reach the output, both ways
    assert net.score.weight.grad[:, groups].abs().sum() > 0


def test_a_diverged_network_predicts_non_finite_disparities_instead_of_crashing():
    model = build_model("lean", max_disp=16).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
        out = model(torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64))  # an index of NaN used to crash here
    assert not torch.isfinite(out.disparity).any()  # scored as an infinite error, as the README says
