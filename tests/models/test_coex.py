"""CoEx: contract, taps, parameter count, checkpoint import, superpixel upsampling (the neighbour
upsampling CoEx, Fast-ACVNet+ and LightStereo share), and a regression against the release
(antabangun/coex)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stereodistill.errors import ConfigError, DataError, InputError
from stereodistill.models.coex import (
    COEX_LOSS_WEIGHTS,
    UNUSED_ORIGINAL_PREFIXES,
    CoEx,
    cosine_volume_loop,
    top_k_soft_argmax,
)
from stereodistill.models.cost_volume import correlation_volume
from stereodistill.models.import_original import import_checkpoint
from stereodistill.models.neighbour_upsample import NEIGHBOURS, neighbour_distribution, neighbour_upsample
from stereodistill.models.numerics import reference_numerics
from stereodistill.models.registry import MODELS

from .contract import check_eval_forward, check_tap_alone
from .random_weights import RELEASE_TOLERANCE, one_thread, pair, randomise

FIXTURE = Path(__file__).parent / "fixtures" / "coex_original.npz"
TAPS = ("feat.left.s2", "feat.right.s2", "feat.left.s4", "feat.right.s4", "volume.cost", "logits.0", "prob")
#: sum(p.numel() for p in CoEx(cfg).parameters()) of the release, cfg = configs/stereo/cfg_coex.yaml
#: with configs/backbone.yaml (timm 0.6.5 mobilenetv2_100, features_only); any max disparity.
RELEASE_PARAMETERS = 2_727_027
#: The release's parameters in modules its forward pass never calls, by module.
UNUSED_RELEASE_SHAPES = {
    "cost_agg.conv_skip.0.conv.weight": (8, 16, 1, 1, 1),
    "cost_agg.conv_skip.0.bn.weight": (8,),
    "cost_agg.conv_skip.0.bn.bias": (8,),
    **{f"cost_agg.conv_agg.0.{i}.conv.weight": (8, 8, 3, 3, 3) for i in (0, 1)},
    **{f"cost_agg.conv_agg.0.{i}.bn.{p}": (8,) for i in (0, 1) for p in ("weight", "bias")},
    "cost_agg.channelAtt.0.im_att.0.conv.weight": (24, 48, 1, 1),
    "cost_agg.channelAtt.0.im_att.0.bn.weight": (24,),
    "cost_agg.channelAtt.0.im_att.0.bn.bias": (24,),
    "cost_agg.channelAtt.0.im_att.1.weight": (8, 24, 1, 1),
    "cost_agg.channelAtt.0.im_att.1.bias": (8,),
    "cost_agg.conv_up.0.bn.weight": (1,),
    "cost_agg.conv_up.0.bn.bias": (1,),
}
#: Their batch norms' buffers, also in a release checkpoint.
UNUSED_RELEASE_BUFFERS = [
    f"{prefix}bn.{b}"
    for prefix in (
        "cost_agg.conv_skip.0.",
        "cost_agg.conv_agg.0.0.",
        "cost_agg.conv_agg.0.1.",
        "cost_agg.channelAtt.0.im_att.0.",
        "cost_agg.conv_up.0.",
    )
    for b in ("running_mean", "running_var", "num_batches_tracked")
]


@pytest.fixture(scope="module")
def net() -> CoEx:
    torch.manual_seed(0)
    return CoEx(max_disp=16)


def release_checkpoint_state(model: CoEx) -> dict[str, torch.Tensor]:
    """Our state as the release's Lightning checkpoint names it, with its never-called modules."""
    state = dict(model.state_dict())
    for key, shape in UNUSED_RELEASE_SHAPES.items():
        state[key] = torch.randn(shape)
    for key in UNUSED_RELEASE_BUFFERS:
        channels = UNUSED_RELEASE_SHAPES[key.rsplit(".", 1)[0] + ".weight"]
        state[key] = torch.tensor(0) if key.endswith("tracked") else torch.ones(channels)
    return {f"stereo.{key}": value for key, value in state.items()}


def test_registered():
    assert MODELS.get("coex") is CoEx
    assert CoEx(max_disp=32).config == {"max_disp": 32}
    assert CoEx.cost_volume_kind == "correlation"
    assert CoEx.pad_multiple == 32
    with pytest.raises(ConfigError, match="multiple of 4"):
        CoEx(max_disp=30)
    with pytest.raises(ConfigError, match="at least 8"):
        CoEx(max_disp=4)


def test_parameter_count_matches_the_release(net):
    # Counted on the original code (scratch copy, timm 0.6.5, pretrained=False) with sum(p.numel()).
    assert CoEx.release_params == RELEASE_PARAMETERS
    unused = sum(int(np.prod(shape)) for shape in UNUSED_RELEASE_SHAPES.values())
    assert unused == 5_034
    assert sum(p.numel() for p in net.parameters()) == RELEASE_PARAMETERS - unused == 2_721_993


def test_loss_weights_are_the_release_ones(net):
    # (1 · L_full + 0.3 · L_quarter) / (1 + 0.3), the quarter-resolution output first.
    assert net.loss_weights == COEX_LOSS_WEIGHTS
    assert net.loss_weights == pytest.approx((0.3 / 1.3, 1 / 1.3))


def test_module_names_follow_the_release(net):
    keys = set(net.state_dict())
    assert {
        "feature.conv_stem.weight",
        "feature.bn1.running_var",
        "feature.block0.0.0.conv_dw.weight",
        "feature.block0.0.0.bn2.bias",
        "feature.block1.0.1.conv_pwl.weight",
        "feature.block3.1.2.bn3.weight",
        "feature.block4.0.2.conv_pw.weight",
        "up.deconv32_16.conv1.conv.weight",
        "up.conv4.bn.weight",
        "cost_volume.conv.conv.weight",
        "cost_volume.desc.bias",
        "cost_agg.channelAttStem.im_att.1.bias",
        "cost_agg.channelAttDown.2.im_att.0.conv.weight",
        "cost_agg.conv_down.2.1.bn.running_mean",
        "cost_agg.conv_up.0.conv.weight",
        "cost_agg.conv_skip.2.conv.weight",
        "cost_agg.conv_agg.1.1.conv.weight",
        "cost_agg.channelAtt.2.im_att.1.weight",
        "stem_2.1.weight",
        "stem_4.2.running_var",
        "spx.0.bias",
        "spx_2.conv2.conv.weight",
        "spx_4.2.weight",
    } <= keys
    assert not any(key.startswith(UNUSED_ORIGINAL_PREFIXES) for key in keys)
    assert net.state_dict()["cost_agg.conv_up.0.conv.weight"].shape == (16, 1, 4, 4, 4)


def test_normalisation_is_the_release_loaders(net):
    """The release reads BGR images (OpenCV) and normalises them channel by channel in that order."""
    image = torch.rand(1, 3, 4, 5)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    bgr = image[:, [2, 1, 0]]
    assert torch.equal(net.normalize(image), (bgr - mean) / std)


def test_train_mode_forward_backward(net):
    net.train()
    out = net(*pair(b=2))
    assert out.disparity.shape == (2, 32, 64)
    assert len(out.aux) == 1 and out.aux[0].shape == (2, 32, 64)
    assert len(out.predictions) == len(net.loss_weights) == 2
    assert out.taps == {}
    loss = sum(w * p.mean() for w, p in zip(net.loss_weights, out.predictions, strict=True))
    loss.backward()
    assert torch.isfinite(net.spx[0].weight.grad).all() and net.spx[0].weight.grad.abs().sum() > 0
    assert net.feature.conv_stem.weight.grad.abs().sum() > 0
    assert net.cost_agg.conv_stem.conv.weight.grad.abs().sum() > 0
    net.zero_grad(set_to_none=True)


def test_eval_mode_forward(net):
    check_eval_forward(net, *pair(), max_disp=16)  # 32×64


def test_offered_taps(net):
    assert set(net.offered_taps()) == set(TAPS)
    with pytest.raises(ConfigError, match=r"offers: feat\.left\.s2"):
        net(*pair(), taps=["volume.attention"])


@pytest.mark.parametrize("tap", TAPS)
def test_each_tap_alone(net, tap):
    expected = {
        "feat.left.s2": (1, 16, 16, 32),
        "feat.right.s2": (1, 16, 16, 32),
        "feat.left.s4": (1, 96, 8, 16),
        "feat.right.s4": (1, 96, 8, 16),
        "volume.cost": (1, 1, 4, 8, 16),
        "logits.0": (1, 4, 8, 16),
        "prob": (1, 16, 32, 64),
    }
    check_tap_alone(net, *pair(), tap, expected[tap])


def test_taps_do_not_change_the_output_and_prob_is_its_distribution(net):
    net.eval()
    with torch.no_grad():
        plain = net(*pair()).disparity
        out = net(*pair(), taps=TAPS)
    assert torch.equal(plain, out.disparity)
    prob = out.taps["prob"]
    assert (prob >= 0).all()
    torch.testing.assert_close(prob.sum(1), torch.ones(1, 32, 64), rtol=0, atol=1e-5)
    values = torch.arange(16.0).view(1, -1, 1, 1)
    torch.testing.assert_close((prob * values).sum(1), out.disparity, rtol=0, atol=1e-4)
    # The hypotheses are the quarter-resolution disparities ×4: no mass anywhere else.
    off_grid = torch.ones(16, dtype=torch.bool)
    off_grid[::4] = False
    assert prob[:, off_grid].abs().max() == 0
    # The volume is a cosine similarity.
    assert out.taps["volume.cost"].abs().max() <= 1 + 1e-5


def test_tap_shapes_at_full_size():
    shapes = CoEx(max_disp=192).tap_shapes(256, 512)
    assert shapes["feat.left.s4"] == (1, 96, 64, 128)
    assert shapes["feat.right.s2"] == (1, 16, 128, 256)
    assert shapes["volume.cost"] == (1, 1, 48, 64, 128)
    assert shapes["logits.0"] == (1, 48, 64, 128)
    assert shapes["prob"] == (1, 192, 256, 512)


def test_size_mismatch_and_odd_sizes(net):
    net.eval()
    left, right = pair()
    with pytest.raises(InputError):
        net(left, right[..., :-1])
    with torch.no_grad():
        out = net(*pair(30, 61), taps=["prob"])
        padded = net(*pair(30, 61))
    assert out.disparity.shape == (1, 30, 61)
    assert out.taps["prob"].shape == (1, 16, 30, 61)
    assert torch.equal(out.disparity, padded.disparity)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_neighbour_upsample_is_a_weighted_neighbourhood(dtype):
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(2, 3, 3, 5, generator=g, dtype=dtype)
    weights = torch.softmax(torch.randn(2, 9, 12, 20, generator=g, dtype=dtype), dim=1)
    fine = neighbour_upsample(coarse, weights)
    assert fine.shape == (2, 3, 12, 20)
    y, x = 5, 19  # cell (1, 4): its right neighbours lie outside the map and count as 0
    expected = torch.zeros(2, 3, dtype=dtype)
    for n, (dy, dx) in enumerate(NEIGHBOURS):
        cy, cx = y // 4 + dy, x // 4 + dx
        if 0 <= cy < 3 and 0 <= cx < 5:
            expected += weights[:, n, y, x, None] * coarse[:, :, cy, cx]
    torch.testing.assert_close(fine[:, :, y, x], expected)
    # The release's formulation: 3×3 unfold, nearest ×4, weighted sum.
    unfolded = F.unfold(coarse, 3, padding=1).view(2, 27, 3, 5)
    release = (F.interpolate(unfolded, scale_factor=4, mode="nearest").view(2, 3, 9, 12, 20) * weights[:, None]).sum(2)
    torch.testing.assert_close(fine, release, rtol=0, atol=0)
    with pytest.raises(ValueError, match="integer multiple"):
        neighbour_upsample(coarse, weights[..., :-1])


def test_neighbour_distribution_has_the_upsampled_mean():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 6, 4, 5, generator=g)
    weights = torch.softmax(torch.randn(1, 9, 16, 20, generator=g), dim=1)
    quarter, index, prob = top_k_soft_argmax(logits, 2)
    distribution = neighbour_distribution(index * 4, prob, weights, bins=24)
    torch.testing.assert_close(distribution.sum(1), torch.ones(1, 16, 20))
    mean = (distribution * torch.arange(24.0).view(1, -1, 1, 1)).sum(1)
    torch.testing.assert_close(mean, 4 * neighbour_upsample(quarter, weights).squeeze(1), rtol=0, atol=1e-5)


def test_top_k_soft_argmax():
    logits = torch.tensor([0.0, 3.0, 1.0, 3.0 - math.log(3.0)]).view(1, 4, 1, 1)
    quarter, index, prob = top_k_soft_argmax(logits, 2)
    assert index.flatten().tolist() == [1, 3]
    torch.testing.assert_close(prob.flatten(), torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(quarter.flatten(), torch.tensor([0.75 * 1 + 0.25 * 3]))


def test_cosine_volume_paths_agree():
    g = torch.Generator().manual_seed(2)
    left = F.normalize(torch.randn(1, 8, 3, 20, generator=g), dim=1)
    right = F.normalize(torch.randn(1, 8, 3, 20, generator=g), dim=1)
    fast = correlation_volume(left, right, 6) * 8
    loop = cosine_volume_loop(left, right, 6)
    torch.testing.assert_close(fast, loop)
    torch.testing.assert_close(loop[0, 0, 2, 1, 7], (left[0, :, 1, 7] * right[0, :, 1, 5]).sum())
    assert (loop[0, 0, 3, :, :3] == 0).all()


def test_import_checkpoint_round_trip_and_strictness(tmp_path):
    """A release-style Lightning checkpoint (``stereo.`` keys, never-called modules included) loads
    into ours; a missing or an extra tensor is refused, by name."""
    source = randomise(CoEx(max_disp=16), seed=3).eval()
    state = release_checkpoint_state(source)
    assert set(source.map_original_state(state)) == set(source.state_dict())
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 9, "global_step": 10, "state_dict": state}, path)
    imported = import_checkpoint(path, arch="coex", max_disp=16)
    assert not imported.training
    for key, value in source.state_dict().items():
        assert torch.equal(imported.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(imported(*pair()).disparity, source(*pair()).disparity)

    missing = {k: v for k, v in state.items() if k != "stereo.cost_volume.desc.bias"}
    torch.save({"state_dict": missing}, path)
    with pytest.raises(DataError, match=r"missing: cost_volume\.desc\.bias"):
        import_checkpoint(path, arch="coex", max_disp=16)
    extra = {**state, "stereo.cost_agg.conv_skip.3.conv.weight": torch.zeros(1)}
    torch.save({"state_dict": extra}, path)
    with pytest.raises(DataError, match=r"unexpected: cost_agg\.conv_skip\.3\.conv\.weight"):
        import_checkpoint(path, arch="coex", max_disp=16)


def fixture_net(data: np.lib.npyio.NpzFile) -> CoEx:
    torch.manual_seed(0)
    with one_thread():
        return randomise(CoEx(max_disp=int(data["max_disp"])), seed=int(data["weight_seed"]))


def test_matches_the_release_output():
    """Eval disparity of the original code on these weights and inputs (64×128, max disparity 48),
    recorded in float64 and float32. In float32 the fast volume and oneDNN's 3-D convolutions round
    differently from the release; with the release's summation order the result matches as closely as
    the weights themselves do (``RELEASE_TOLERANCE``)."""
    data = np.load(FIXTURE)
    net = fixture_net(data).eval()
    left, right = pair(64, 128, seed=int(data["input_seed"]))
    expected64 = torch.from_numpy(data["disparity"])
    expected32 = torch.from_numpy(data["disparity_float32"])
    with torch.no_grad(), one_thread():  # as recorded: float32 rounding depends on the thread count
        fast = net(left, right).disparity
        with reference_numerics():
            exact = net(left, right).disparity
        double = net.double()(left.double(), right.double()).disparity
    assert double.shape == fast.shape == expected64.shape == (1, 64, 128)
    assert (double - expected64).abs().max().item() < RELEASE_TOLERANCE
    assert (exact - expected32).abs().max().item() < RELEASE_TOLERANCE
    assert (fast - expected32).abs().max().item() < 2e-3


def test_matches_the_release_in_training_mode():
    """Training-mode outputs (batch statistics; batch 2, 32×64, float64) of the original code: the
    full-resolution prediction and the 1/4 one ×4, upsampled bilinearly as the release's loss does."""
    data = np.load(FIXTURE)
    net = fixture_net(data).double().train()
    left, right = pair(32, 64, b=2, seed=int(data["train_seed"]))
    with torch.no_grad():
        out = net(left.double(), right.double())
    assert (out.disparity - torch.from_numpy(data["train_disparity"])).abs().max().item() < 1e-4
    assert (out.aux[0] - torch.from_numpy(data["train_aux"])).abs().max().item() < 1e-4
