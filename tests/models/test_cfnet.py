"""CFNet: contract, taps, parameter count, cascade helpers, and a regression against the release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stereodistill.errors import ConfigError, InputError
from stereodistill.models.cfnet import (
    CFNet,
    disparity_hypotheses,
    pyramid_windows,
    sampled_volume,
    search_range,
)
from stereodistill.models.import_original import import_checkpoint
from stereodistill.models.registry import MODELS

from .contract import check_eval_forward, check_tap_alone
from .random_weights import RELEASE_TOLERANCE, pair, randomise

FIXTURE = Path(__file__).parent / "fixtures" / "cfnet_original.npz"
STAGES = range(3)
TAPS = (
    "feat.left.s2",
    "feat.right.s2",
    "feat.left.s4",
    "feat.right.s4",
    "volume.cost",
    *(f"volume.agg.{k}" for k in STAGES),
    *(f"logits.{k}" for k in STAGES),
)
#: sum(p.numel()) of the release's ``CFNet(d)`` (any d), and of the two modules it never calls.
RELEASE_PARAMETERS = 23_051_396
UNUSED_RELEASE_PARAMETERS = 663_808 + 16_640  # combine1.combine3, combine1.redir3


@pytest.fixture(scope="module")
def net() -> CFNet:
    torch.manual_seed(0)
    return CFNet(max_disp=32)


def test_registered():
    assert MODELS.get("cfnet") is CFNet
    assert CFNet(max_disp=32).config == {"max_disp": 32}
    assert CFNet(**CFNet(max_disp=64).config).max_disp == 64


def test_max_disp_must_divide_by_32():
    with pytest.raises(ConfigError, match="multiple of 32"):
        CFNet(max_disp=48)


def test_loss_weights_are_the_release_ones(net):
    assert net.loss_weights == pytest.approx((0.25, 0.35, 0.5, 0.5, 0.7, 1.0, 1.0, 1.4, 2.0))


def test_parameter_count_matches_the_release(net):
    # Counted on the original code (gallenszl/CFNet) with sum(p.numel()); ours omits what it never calls.
    assert sum(p.numel() for p in net.parameters()) == RELEASE_PARAMETERS - UNUSED_RELEASE_PARAMETERS


def test_module_names_follow_the_release(net):
    keys = set(net.state_dict())
    assert {
        "feature_extraction.firstconv.4.0.weight",
        "feature_extraction.layer6.0.downsample.1.running_var",
        "feature_extraction.pyramid_pooling.path_module_list.3.cbr_unit.1.weight",
        "feature_extraction.upconv6.1.0.weight",
        "feature_extraction.gw6.2.weight",
        "feature_extraction.concat2.2.weight",
        "dres1_6.2.1.running_mean",
        "combine1.conv1.weight",
        "combine1.combine2.0.0.weight",
        "combine1.conv9.0.weight",
        "dres3.redir2.0.weight",
        "confidence0_s2.0.0.weight",
        "confidence3_s3.conv6.1.weight",
        "confidence_classifmid_s3.2.weight",
        "classif2.2.weight",
        "gamma_s3",
        "beta_s2",
    } <= keys
    assert not any(key.startswith(("combine1.combine3", "combine1.redir3")) for key in keys)


def test_map_original_state_drops_only_the_unused_modules(net):
    state = dict(net.state_dict())
    extra = {"combine1.combine3.0.0.weight": torch.zeros(1), "combine1.redir3.1.running_var": torch.zeros(1)}
    stranger = {"combine1.combine4.weight": torch.zeros(1)}
    mapped = net.map_original_state({**state, **extra, **stranger})
    assert set(mapped) == set(state) | set(stranger)


def test_train_mode_forward_backward(net):
    net.train()
    out = net(*pair(b=2))
    assert out.disparity.shape == (2, 32, 64)
    assert len(out.aux) == 8 and all(a.shape == (2, 32, 64) for a in out.aux)
    assert len(out.predictions) == len(net.loss_weights) == 9
    assert out.taps == {}
    loss = sum(w * p.mean() for w, p in zip(net.loss_weights, out.predictions, strict=True))
    loss.backward()
    for head in (net.classif0, net.confidence_classif0_s3, net.confidence_classifmid_s2, net.confidence_classif1_s2):
        assert torch.isfinite(head[2].weight.grad).all()
    assert net.feature_extraction.pyramid_pooling.path_module_list[0].cbr_unit[0].weight.grad.abs().sum() > 0
    # As in the release: the hypotheses are integers, so the learned range gets no gradient.
    assert net.gamma_s3.grad is None and net.beta_s2.grad is None
    net.zero_grad(set_to_none=True)


def test_eval_mode_forward(net):
    check_eval_forward(net, *pair(), max_disp=32)  # 32×64


def test_offered_taps(net):
    assert set(net.offered_taps()) == set(TAPS)
    with pytest.raises(ConfigError, match=r"offers: feat\.left\.s2"):
        net(*pair(), taps=["prob"])


@pytest.mark.parametrize("tap", TAPS)
def test_each_tap_alone(net, tap):
    expected = {
        "feat.left.s2": (1, 64, 16, 32),
        "feat.right.s2": (1, 64, 16, 32),
        "feat.left.s4": (1, 160, 8, 16),
        "feat.right.s4": (1, 160, 8, 16),
        "volume.cost": (1, 40, 4, 4, 8),
        **{f"volume.agg.{k}": (1, 32, 4, 4, 8) for k in STAGES},
        **{f"logits.{k}": (1, 4, 4, 8) for k in STAGES},
    }
    check_tap_alone(net, *pair(), tap, expected[tap])


def test_taps_do_not_change_the_output(net):
    net.eval()
    with torch.no_grad():
        plain = net(*pair()).disparity
        tapped = net(*pair(), taps=TAPS)
    assert torch.equal(plain, tapped.disparity)
    assert set(tapped.taps) == set(TAPS)


def test_tap_shapes_at_full_size():
    shapes = CFNet(max_disp=192).tap_shapes(256, 512)
    assert shapes["feat.left.s2"] == (1, 64, 128, 256)
    assert shapes["feat.right.s4"] == (1, 160, 64, 128)
    assert shapes["volume.cost"] == (1, 40, 24, 32, 64)
    assert shapes["volume.agg.2"] == (1, 32, 24, 32, 64)
    assert shapes["logits.0"] == (1, 24, 32, 64)


def test_size_mismatch_and_odd_sizes(net):
    net.eval()
    left, right = pair()
    with pytest.raises(InputError):
        net(left, right[..., :-1])
    with torch.no_grad():
        out = net(*pair(30, 61))
    assert out.disparity.shape == (1, 30, 61)
    assert torch.isfinite(out.disparity).all()


def test_pyramid_windows_follow_the_release():
    # Cells per side n = np.linspace(2, min(h, w), 4, dtype=int), windows (int(h / n), int(w / n)), reversed.
    assert pyramid_windows(8, 16) == [(1, 2), (1, 2), (2, 4), (4, 8)]  # n = 2, 4, 6, 8
    assert pyramid_windows(12, 39) == [(1, 3), (1, 4), (2, 7), (6, 19)]  # n = 2, 5, 8, 12
    assert pyramid_windows(2, 4) == [(1, 2)] * 4  # n = 2, 2, 2, 2
    assert pyramid_windows(1, 2) == [(1, 2), (1, 2), (1, 2), (1, 1)]  # n = 2, 1, 1, 1: the release fails


def test_search_range_and_hypotheses():
    mean = torch.tensor([[[[3.0, 10.0]]]])
    spread = torch.tensor([[[[0.5, 4.0]]]])
    zero = torch.zeros(1)
    low, high = search_range(mean, spread, zero, zero, (1, 2), min_width=15, upper=23)
    # ×2 to the finer scale: [5, 7] widened to 15 px and clamped at 0; [12, 28] clamped at 23.
    assert low.flatten().tolist() == [0.0, 12.0]
    assert high.flatten().tolist() == pytest.approx([13.5, 23.0])
    hypotheses = disparity_hypotheses(low, high, 14)
    assert hypotheses.shape == (1, 16, 1, 2)
    assert torch.equal(hypotheses, hypotheses.round())
    assert (hypotheses[:, 1:] >= hypotheses[:, :-1]).all()
    assert hypotheses[0, :, 0, 0].tolist() == [0, *(int(k * 13.5 / 15) for k in range(1, 15)), 14]


def test_sampled_volume_matches_a_direct_lookup():
    g = torch.Generator().manual_seed(0)
    b, s, h, w = 2, 3, 2, 5

    def features(c: int) -> dict[str, torch.Tensor]:
        return {"gw3": torch.randn(b, c, h, w, generator=g), "concat3": torch.randn(b, 2, h, w, generator=g)}

    left, right = features(8), features(8)
    hypotheses = torch.randint(0, 4, (b, s, h, w), generator=g).float()
    volume = sampled_volume(left, right, 3, hypotheses, groups=4)
    assert volume.shape == (b, 4 + 2 * 2 + 1, s, h, w)
    for n, k, y, x in np.ndindex(b, s, h, w):
        d = int(hypotheses[n, k, y, x])
        r_gw = right["gw3"][n, :, y, x - d] if x >= d else torch.zeros(8)
        r_cat = right["concat3"][n, :, y, x - d] if x >= d else torch.zeros(2)
        corr = (left["gw3"][n, :, y, x] * r_gw).view(4, 2).mean(1)
        expected = torch.cat((corr, left["concat3"][n, :, y, x], r_cat, torch.tensor([float(d)])))
        assert torch.allclose(volume[n, :, k, y, x], expected, atol=1e-6)


def test_matches_the_release_output():
    """Eval disparity of the original code (gallenszl/CFNet), float64, recorded with these weights.

    In float64 because 1-ulp float32 noise moves some integer disparity hypotheses (the release
    differs from itself between 1 and 2 threads); see the module docstring.
    """
    data = np.load(FIXTURE)
    torch.manual_seed(0)
    net = randomise(CFNet(max_disp=int(data["max_disp"])), seed=int(data["weight_seed"])).eval().double()
    left, right = (x.double() for x in pair(64, 128, seed=int(data["input_seed"])))
    with torch.no_grad():
        out = net(left, right)
    expected = torch.from_numpy(data["disparity"])
    assert out.disparity.shape == expected.shape
    assert (out.disparity - expected).abs().max().item() < RELEASE_TOLERANCE


def test_import_checkpoint_round_trip(net, tmp_path):
    """A release-style checkpoint (DataParallel keys, its two unused modules included) loads into ours."""
    torch.manual_seed(1)
    source = randomise(CFNet(max_disp=32), seed=3)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.combine1.redir3.0.weight"] = torch.randn(128, 128, 1, 1, 1)
    path = tmp_path / "checkpoint_000009.ckpt"
    torch.save({"epoch": 9, "model": state}, path)
    imported = import_checkpoint(path, arch="cfnet", max_disp=32)
    assert not imported.training
    for key, value in source.state_dict().items():
        assert torch.equal(imported.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(imported(*pair()).disparity, source.eval()(*pair()).disparity)
