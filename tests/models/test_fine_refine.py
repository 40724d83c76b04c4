"""The full-resolution cost refinement (the ``fine`` option every trainable network takes): its
costs against a per-offset reference, where they peak, that it starts as the identity, that it
learns to move a coarse estimate onto the match, and how the option is built, saved and refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stereodistill.checkpoint import load_model, save_model
from stereodistill.errors import ConfigError
from stereodistill.models.census_cost import census_bits
from stereodistill.models.fine_refine import FineRefinement, OffsetReader, census_codes, window_extremes
from stereodistill.models.zoo import build_model

from .test_census_cost import textured


def test_costs_read_between_whole_columns_equal_costs_of_the_interpolated_view():
    left, right = textured(16, 40, seed=3)[:, 0], textured(16, 40, seed=5)[:, 0]  # B×H×W maps
    disparity = torch.rand(1, 16, 40) * 6
    reader = OffsetReader(disparity, radius=3)
    costs = reader.costs(left.unsqueeze(-1) * reader.columns(right), outside=0.0)  # a cost linear in the right view
    assert costs.shape == (1, 16, 40, 7)
    for k, offset in enumerate(range(3, -4, -1)):  # descending offsets
        x = torch.arange(40).view(1, 1, 40) - disparity - offset
        grid = torch.stack((x * 2 / 39 - 1, (torch.arange(16).view(1, 16, 1) * 2 / 15 - 1).expand(1, 16, 40)), -1)
        sampled = F.grid_sample(right[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        torch.testing.assert_close(costs[..., k], left * sampled[:, 0])


def test_census_codes_pack_the_census_bits():
    gray = textured(20, 30, seed=2).mean(1, keepdim=True)
    bits = census_bits(gray, 3).to(torch.uint8)
    packed = (bits * (2 ** torch.arange(8, dtype=torch.uint8)).view(1, 8, 1, 1)).sum(1, dtype=torch.uint8)
    assert torch.equal(census_codes(gray), packed)


def test_costs_are_lowest_at_the_offset_that_reaches_the_true_disparity():
    scene = textured(24, 96)
    left, right = scene[..., :80], scene[..., 6:86]  # left[x] = right[x − 6]
    stage = FineRefinement(upper=31.0, radius=3)
    costs = stage.costs(torch.full((1, 24, 80), 4.0), left, right)  # 2 px short of the truth
    assert costs.shape == (1, 24, 80, 14)  # census, then grey, each for the offsets 3 … −3
    census, gray = costs[..., :7], costs[..., 7:]
    interior = (slice(None), slice(2, -2), slice(12, -2))  # where x − 6 − 3 stays inside the right view
    assert (census[interior].argmin(-1) == 1).float().mean() > 0.9  # offset +2 (3×3 bits: a few ties)
    assert (gray[interior].argmin(-1) == 1).float().mean() > 0.95


def test_an_untrained_stage_is_the_identity_and_keeps_the_range():
    stage = FineRefinement(upper=15.0, radius=3).eval()
    left, right = textured(15, 33, seed=1), textured(15, 33, seed=2)  # odd sizes: the 1/2 body pads
    disparity = torch.rand(2, 15, 33) * 15
    out = stage(disparity, left.expand(2, -1, -1, -1), right.expand(2, -1, -1, -1))
    torch.testing.assert_close(out, disparity)
    with pytest.raises(ValueError, match="radius must be 1–16"):
        FineRefinement(upper=15.0, radius=0)


def fit_stage(
    truth: int, lowest: float, spread: float, coarse: torch.Tensor | None = None, **options
) -> tuple[float, float]:
    """Train a stage (``FineRefinement(**options)``) for 150 steps to move a coarse estimate, drawn in
    [lowest, lowest + spread) unless given, onto a textured pair at the constant disparity ``truth``:
    the mean error of the estimate and of the trained stage, left of the first 16 columns (no match there)."""
    torch.manual_seed(0)
    scene = textured(32, 112, seed=4)
    left, right = scene[..., :96], scene[..., truth : truth + 96]  # left[x] = right[x − truth]
    stage = FineRefinement(**options)
    optim = torch.optim.Adam(stage.parameters(), lr=3e-3)
    if coarse is None:
        coarse = torch.full((1, 32, 96), lowest) + spread * torch.rand(1, 32, 96)
    for _ in range(150):
        loss = (stage(coarse, left, right)[..., 16:] - truth).abs().mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
    stage.eval()
    with torch.no_grad():
        error = (stage(coarse, left, right)[..., 16:] - truth).abs().mean().item()
    return (coarse[..., 16:] - truth).abs().mean().item(), error


def test_the_stage_learns_to_move_a_coarse_estimate_onto_the_match():
    before, after = fit_stage(5, lowest=3.0, spread=0.8, upper=31.0, radius=3)  # 1.2–2 px short
    assert before > 1.1
    assert after < 0.3


def test_fine_option_ends_any_trainable_network_in_the_stage():
    plain = build_model("lean-xs", max_disp=16)
    net = build_model("lean-xs", max_disp=16, fine=2)
    assert isinstance(net.fine, FineRefinement) and plain.fine is None
    assert net.config["fine"] == 2 and "fine" not in plain.config
    extra = sum(p.numel() for p in net.fine.parameters())
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in plain.parameters()) + extra
    # Its input is supervised too: one more output, one more weight, the stage's last.
    assert net.loss_weights == (*plain.loss_weights[:-1], 0.7, plain.loss_weights[-1])
    left, right = textured(32, 64, seed=1), textured(32, 64, seed=2)
    net.train()
    out = net(left, right)
    assert len(out.aux) + 1 == len(net.loss_weights)
    # A port keeps its own layers: the stage is one more module, named `fine`.
    teacher = build_model("dsnet-teacher", max_disp=16, fine=3)
    assert {key.split(".")[0] for key in teacher.state_dict()} - {
        key.split(".")[0] for key in build_model("dsnet-teacher", max_disp=16).state_dict()
    } == {"fine"}


def test_fine_option_survives_a_checkpoint(tmp_path):
    net = build_model("lean-xs", max_disp=16, fine=2).eval()
    with torch.no_grad():
        net.fine.head.bias.copy_(torch.linspace(-1, 1, 20))  # no longer the identity
    save_model(tmp_path / "m", net)
    loaded = load_model(tmp_path / "m").eval()
    left, right = textured(32, 64, seed=1), textured(32, 64, seed=2)
    assert loaded.config["fine"] == 2
    torch.testing.assert_close(loaded(left, right).disparity, net(left, right).disparity)


@pytest.mark.parametrize("value", [-1, 17, 2.5, True, "4"])
def test_a_bad_fine_radius_is_refused(value):
    with pytest.raises(ConfigError, match="option fine must be an integer 0–16"):
        build_model("lean-xs", max_disp=16, fine=value)


def test_fine_is_refused_for_a_classical_method_and_listed_among_the_options():
    with pytest.raises(ConfigError, match="sgbm: option fine needs a trainable network"):
        build_model("sgbm", max_disp=16, fine=2)
    with pytest.raises(
        ConfigError, match=r"unknown option 'finer'; valid: .*, fine_block, fine_polish, fine_extremes$"
    ):
        build_model("lean-xs", max_disp=16, finer=2)


def test_an_original_release_is_not_imported_with_a_fine_refinement(tmp_path):
    from stereodistill.models.import_original import import_checkpoint

    path = tmp_path / "release.pth"
    torch.save({"state_dict": build_model("lean-xs", max_disp=16).state_dict()}, path)
    with pytest.raises(ConfigError, match="original lean-xs release has no fine refinement"):
        import_checkpoint(path, arch="lean-xs", max_disp=16, fine=2)


def test_a_half_precision_estimate_reads_the_columns_a_float32_one_does():
    # bfloat16 holds whole numbers exactly only up to 256: the columns are found in float32 whatever
    # precision the network ran in.
    disparity = (torch.rand(1, 4, 400) * 30).bfloat16()
    right = torch.arange(400, dtype=torch.float32).expand(1, 4, 400)
    half, full = OffsetReader(disparity, 2), OffsetReader(disparity.float(), 2)
    assert torch.equal(half.columns(right), full.columns(right)) and torch.equal(half.frac, full.frac)


def test_an_untrained_stage_with_a_block_match_all_but_ignores_it():
    stage = FineRefinement(upper=15.0, radius=3, block=5).eval()
    left, right = textured(15, 33, seed=1), textured(15, 33, seed=2)
    disparity = torch.rand(1, 15, 33) * 15
    # Its candidates start at weight e⁻⁸ each: at most 15 px away, they move the estimate by < 0.01 px.
    torch.testing.assert_close(stage(disparity, left, right), disparity, atol=0.01, rtol=0)
    with pytest.raises(ValueError, match="block must be 0 or an odd window of 3–15 px"):
        FineRefinement(upper=15.0, radius=3, block=4)


def test_the_block_match_reaches_what_lies_beyond_the_radius():
    # A stage of radius 3, an estimate 7–8 px short of a constant disparity of 9.
    before, alone = fit_stage(9, lowest=1.0, spread=1.0, upper=15.0, radius=3)
    _, with_block = fit_stage(9, lowest=1.0, spread=1.0, upper=15.0, radius=3, block=5)
    assert before > 7.0
    assert alone > 3.0  # ± 3 px around an estimate 7–8 px short cannot reach the match
    assert with_block < 0.5


def test_fine_block_is_recorded_and_survives_a_checkpoint(tmp_path):
    net = build_model("lean-xs", max_disp=16, fine=2, fine_block=7).eval()
    assert net.fine.block == 7 and net.config["fine_block"] == 7
    with torch.no_grad():
        net.fine.head.bias.copy_(torch.linspace(-1, 1, 40))
    save_model(tmp_path / "m", net)
    loaded = load_model(tmp_path / "m").eval()
    left, right = textured(32, 64, seed=1), textured(32, 64, seed=2)
    assert loaded.fine.block == 7
    torch.testing.assert_close(loaded(left, right).disparity, net(left, right).disparity)
    assert "fine_block" not in build_model("lean-xs", max_disp=16, fine=2).config


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fine_block": 5}, "option fine_block needs the fine refinement"),
        ({"fine": 0, "fine_block": 5}, "option fine_block needs the fine refinement"),
        ({"fine": 2, "fine_block": 4}, "option fine_block must be 0 .none. or one of 3, 5, 7"),
        ({"fine": 2, "fine_block": 17}, "option fine_block must be 0"),
        ({"fine": 2, "fine_block": True}, "option fine_block must be 0"),
        ({"fine": 2, "fine_block": 5.0}, "option fine_block must be 0"),
        ({"fine": 2, "fine_polish": 2}, "option fine_polish reads the block match's costs .set fine_block too."),
        ({"fine": 2, "fine_block": 5, "fine_polish": 17}, "option fine_polish must be an integer 0–16"),
        ({"fine": 2, "fine_block": 5, "fine_polish": 1.5}, "option fine_polish must be an integer 0–16"),
        ({"fine_extremes": 9}, "option fine_extremes needs the fine refinement"),
        ({"fine": 2, "fine_extremes": 8}, "option fine_extremes must be 0 .none. or one of 3, 5, 7"),
        ({"fine": 2, "fine_extremes": True}, "option fine_extremes must be 0"),
    ],
)
def test_a_bad_fine_block_is_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        build_model("lean-xs", max_disp=16, **options)


def test_fine_polish_places_the_output_at_inference_only():
    net = build_model("lean-xs", max_disp=16, fine=2, fine_block=5, fine_polish=2)
    plain = build_model("lean-xs", max_disp=16, fine=2, fine_block=5)
    plain.load_state_dict(net.state_dict())
    assert net.config["fine_polish"] == 2 and net.fine.polish == 2
    scene = textured(32, 80, seed=4)
    left, right = scene[..., :64], scene[..., 5:69]  # true disparity 5 everywhere
    net.train(), plain.train()
    torch.manual_seed(0)
    trained = net(left, right).disparity
    torch.manual_seed(0)
    torch.testing.assert_close(trained, plain(left, right).disparity)  # training: no polish
    net.eval(), plain.eval()
    with torch.no_grad():
        placed, unplaced = net(left, right).disparity, plain(left, right).disparity
    inside = (slice(None), slice(4, -4), slice(12, -4))
    assert (placed[inside] - 5.0).abs().mean() < (unplaced[inside] - 5.0).abs().mean()
    assert (placed[inside] - 5.0).abs().mean() < 0.1


def test_window_extremes_are_the_largest_and_smallest_value_around_each_pixel():
    disparity = torch.rand(2, 9, 14) * 20
    largest, smallest = window_extremes(disparity, 5)
    padded = F.pad(disparity, (2, 2, 2, 2), value=float("nan"))
    windows = padded.unfold(1, 5, 1).unfold(2, 5, 1).flatten(-2)  # B×H×W×25, NaN outside the image
    torch.testing.assert_close(largest, windows.nan_to_num(-1.0).amax(-1))
    torch.testing.assert_close(smallest, windows.nan_to_num(99.0).amin(-1))


def test_the_window_extremes_reach_the_other_surface_of_an_edge():
    # An estimate right on every other band of 4 columns and 7 px short between them (a surface carried
    # past an edge): beyond the radius, the stage alone cannot reach the match; the largest estimate
    # within 9 px lies on it.
    coarse = torch.full((1, 32, 96), 9.0)
    coarse[..., (torch.arange(96) // 4) % 2 == 1] = 2.0
    before, alone = fit_stage(9, 0.0, 0.0, coarse=coarse, upper=15.0, radius=3)
    _, with_extremes = fit_stage(9, 0.0, 0.0, coarse=coarse, upper=15.0, radius=3, extremes=9)
    assert before > 3.0 and alone > 2.0
    assert with_extremes < 0.5


def test_an_untrained_stage_with_the_extremes_all_but_ignores_them_and_they_survive_a_checkpoint(tmp_path):
    stage = FineRefinement(upper=15.0, radius=3, block=5, extremes=7).eval()
    left, right = textured(15, 33, seed=1), textured(15, 33, seed=2)
    disparity = torch.rand(1, 15, 33) * 15
    torch.testing.assert_close(stage(disparity, left, right), disparity, atol=0.02, rtol=0)
    net = build_model("lean-xs", max_disp=16, fine=2, fine_extremes=7).eval()
    assert net.fine.extremes == 7 and net.config["fine_extremes"] == 7 and not net.fine.block
    with torch.no_grad():
        net.fine.head.bias.copy_(torch.linspace(-1, 1, 60))  # three sets of 5 offsets, for 4 pixels each
    save_model(tmp_path / "m", net)
    loaded = load_model(tmp_path / "m").eval()
    left, right = textured(32, 64, seed=1), textured(32, 64, seed=2)
    torch.testing.assert_close(loaded(left, right).disparity, net(left, right).disparity)
    assert "fine_extremes" not in build_model("lean-xs", max_disp=16, fine=2).config
    with pytest.raises(ValueError, match="extremes must be 0 or an odd window of 3–15 px"):
        FineRefinement(upper=15.0, radius=3, extremes=4)
