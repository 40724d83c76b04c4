"""LEAStereo: contract, taps, parameter counts, normalisation, and a regression against the release."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from stereodistill.errors import ConfigError, DataError, InputError
from stereodistill.models.import_original import import_checkpoint
from stereodistill.models.leastereo import (
    UNUSED_RELEASE_KEYS,
    LEAStereo,
    matching_net_resamples,
    volume_disparities,
)
from stereodistill.models.leastereo_cells import cell_plan, path_sizes
from stereodistill.models.registry import MODELS

from .contract import check_eval_forward, check_tap_alone
from .random_weights import RELEASE_TOLERANCE, pair, randomise

FIXTURE = Path(__file__).parent / "fixtures" / "leastereo_original.npz"
TAPS = ("feat.left.s3", "feat.right.s3", "volume.cost", "volume.agg.0", "logits.0", "prob")
#: Counted on the original code (XuelianCheng/LEAStereo, retrain/LEAStereo.py, sceneflow architecture)
#: with sum(p.numel()): 1,809,778, of which 84,866 sit in units its forward pass never calls.
RELEASE_PARAMS, UNUSED_PARAMS = 1_809_778, 84_866


def unused_shapes() -> dict[str, tuple[int, ...]]:
    """Shapes of the release's never-called units: both ``last_3`` batch norms, the feature net's
    ``last_6/12/24`` and the matching net's ``last_12/24`` (1×1 conv + batch norm each)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.bn.{name}"] = (channels,)
        shapes[f"{prefix}.bn.num_batches_tracked"] = ()

    bn("feature.last_3", 32)
    bn("matching.last_3", 1)
    for net, kernel in (("feature", (1, 1)), ("matching", (1, 1, 1))):
        for name, (out_ch, in_ch) in {"last_6": (32, 64), "last_12": (64, 128), "last_24": (128, 256)}.items():
            if (net, name) != ("matching", "last_6"):  # the matching net's last_6 is used
                shapes[f"{net}.{name}.conv.weight"] = (out_ch, in_ch, *kernel)
                bn(f"{net}.{name}", out_ch)
    return shapes


@pytest.fixture(scope="module")
def net() -> LEAStereo:
    torch.manual_seed(0)
    return LEAStereo(max_disp=24)


def test_registered_and_rebuildable():
    assert MODELS.get("leastereo") is LEAStereo
    assert LEAStereo(max_disp=24).config == {"max_disp": 24}
    assert LEAStereo(**LEAStereo(max_disp=48).config).max_disp == 48
    assert LEAStereo.loss_weights == (1.0,)


@pytest.mark.parametrize(("max_disp", "planes"), [(24, 8), (48, 16), (192, 64), (16, 7), (36, 15), (64, 23)])
def test_volume_planes_are_the_release_s_where_it_runs(max_disp, planes):
    """max_disp // 3 planes where the release's matching net can resample them (every multiple of 24);
    elsewhere (the release fails) the next count that it can."""
    assert volume_disparities(max_disp) == planes
    assert matching_net_resamples(planes)
    assert (planes == max_disp // 3) == matching_net_resamples(max_disp // 3)


def test_a_max_disparity_the_release_cannot_run_gets_extra_planes_cut_before_regression():
    torch.manual_seed(0)
    net = LEAStereo(max_disp=16).eval()
    with torch.no_grad():
        out = net(*pair(), taps=["volume.cost", "logits.0", "prob"])
    assert out.taps["volume.cost"].shape == (1, 64, 7, 11, 22)  # cells covering the 32×64 image at 1/3
    assert out.taps["logits.0"].shape == (1, 5, 11, 22)
    assert out.taps["prob"].shape == (1, 16, 32, 64)
    assert (out.disparity >= 0).all() and (out.disparity <= 15).all()


def test_padding_multiple_is_what_the_cells_need():
    """H/3 (and W/3) must halve twice and come back to the same sizes through both paths."""
    for third in (8, 16, 96):
        assert path_sizes(third, (1, 0, 1, 0, 0, 0))[-1] == third
        sizes = path_sizes(third, (1, 1, 2, 2, 1, 2, 2, 2, 1, 1, 0, 1))
        assert sizes[1] == sizes[4] == sizes[8] == sizes[-1] == third // 2
    assert path_sizes(4, (1, 1, 2, 2, 1))[4] != path_sizes(4, (1, 1, 2, 2, 1))[1]  # 12 pixels would not do


def test_cell_plan_follows_the_release_branch_order():
    # Step i reads states j with offset(i) + j in the genotype's branches; ops are taken in that order.
    assert cell_plan(((0, 1), (1, 0), (3, 1), (4, 1), (8, 1), (5, 1)), 3) == ((0, 1), (1, 2), (0, 3))
    assert cell_plan(((1, 1), (0, 1), (3, 1), (4, 1), (8, 1), (6, 1)), 3) == ((0, 1), (1, 2), (1, 3))


def test_parameter_count_is_the_release_without_its_unused_units(net):
    ours = sum(p.numel() for p in net.parameters())
    assert ours == RELEASE_PARAMS - UNUSED_PARAMS == 1_724_912
    assert sum(p.numel() for p in LEAStereo(max_disp=192).parameters()) == ours  # no disparity-sized layer
    shapes = unused_shapes()
    assert set(shapes) == set(UNUSED_RELEASE_KEYS)
    assert sum(torch.Size(s).numel() for k, s in shapes.items() if "running" not in k and s) == UNUSED_PARAMS


def test_module_names_follow_the_release(net):
    state = net.state_dict()
    assert tuple(state["feature.stem1.conv.weight"].shape) == (32, 16, 3, 3)
    assert tuple(state["feature.cells.0.pre_preprocess.conv.weight"].shape) == (16, 32, 1, 1)
    assert tuple(state["feature.cells.5._ops.5.conv.weight"].shape) == (8, 8, 3, 3)
    assert "feature.cells.0._ops.1.conv.weight" not in state  # a skip connection
    assert tuple(state["feature.last_3.conv.weight"].shape) == (32, 32, 1, 1)
    assert tuple(state["matching.stem0.conv.weight"].shape) == (32, 64, 3, 3, 3)
    assert tuple(state["matching.cells.7.preprocess.conv.weight"].shape) == (32, 128, 1, 1, 1)
    assert tuple(state["matching.cells.11._ops.5.bn.running_var"].shape) == (16,)
    assert tuple(state["matching.conv1.conv.weight"].shape) == (64, 128, 3, 3, 3)
    assert tuple(state["matching.conv2.bn.weight"].shape) == (64,)
    assert tuple(state["matching.last_6.conv.weight"].shape) == (32, 64, 1, 1, 1)
    assert tuple(state["matching.last_3.conv.weight"].shape) == (1, 32, 3, 3, 3)
    assert not set(state) & UNUSED_RELEASE_KEYS


def test_train_mode_forward_backward(net):
    net.train()
    out = net(*pair(b=2))
    assert out.disparity.shape == (2, 32, 64)
    assert out.aux == [] and out.taps == {}
    assert len(out.predictions) == len(net.loss_weights) == 1
    out.disparity.mean().backward()
    assert torch.isfinite(net.matching.last_3.conv.weight.grad).all()
    assert net.feature.stem0.conv.weight.grad.abs().sum() > 0
    net.zero_grad(set_to_none=True)


def test_eval_mode_forward(net):
    check_eval_forward(net, *pair(), max_disp=24)  # 32×64


def test_offered_taps(net):
    assert net.offered_taps() == TAPS
    with pytest.raises(ConfigError, match=r"offers: feat\.left\.s3"):
        net(*pair(), taps=["feat.left.s4"])


@pytest.mark.parametrize("tap", TAPS)
def test_each_tap_alone(net, tap):
    expected = {  # 32×64 is padded to 48×72; the 1/3 cells covering the image are 11×22; D/3 = 8
        "feat.left.s3": (1, 32, 11, 22),
        "feat.right.s3": (1, 32, 11, 22),
        "volume.cost": (1, 64, 8, 11, 22),
        "volume.agg.0": (1, 32, 8, 11, 22),
        "logits.0": (1, 8, 11, 22),
        "prob": (1, 24, 32, 64),
    }
    check_tap_alone(net, *pair(), tap, expected[tap])


def test_prob_is_the_distribution_the_disparity_is_the_mean_of(net):
    net.eval()
    with torch.no_grad():
        out = net(*pair(), taps=["prob", "volume.cost", "feat.left.s3"])
    prob = out.taps["prob"]
    assert torch.allclose(prob.sum(1), torch.ones(1, 32, 64), atol=1e-5)
    assert torch.allclose((prob * torch.arange(24.0).view(1, -1, 1, 1)).sum(1), out.disparity, atol=1e-4)
    # The concatenation volume: left features at every disparity where x − d ≥ 0, zero elsewhere.
    volume, left = out.taps["volume.cost"], out.taps["feat.left.s3"]
    torch.testing.assert_close(volume[:, :32, 3, :, 3:], left[..., 3:])
    assert (volume[:, :, 3, :, :3] == 0).all()


def test_tap_shapes_at_full_size():
    shapes = LEAStereo(max_disp=192).tap_shapes(256, 512)  # padded to 264×528; taps ⌈256/3⌉×⌈512/3⌉
    assert shapes["feat.left.s3"] == (1, 32, 86, 171)
    assert shapes["volume.cost"] == (1, 64, 64, 86, 171)
    assert shapes["volume.agg.0"] == (1, 32, 64, 86, 171)
    assert shapes["logits.0"] == (1, 64, 86, 171)
    assert shapes["prob"] == (1, 192, 256, 512)


def test_size_mismatch_and_odd_sizes(net):
    net.eval()
    left, right = pair()
    with pytest.raises(InputError):
        net(left, right[..., :-1])
    with torch.no_grad():
        out = net(*pair(30, 61), taps=["prob"])
    assert out.disparity.shape == (1, 30, 61)
    assert out.taps["prob"].shape == (1, 24, 30, 61)


def test_each_image_is_standardised_by_its_own_statistics(net):
    left, right = pair(b=2)
    normalised = net.normalize(left)
    var, mean = torch.var_mean(normalised, dim=(-2, -1), correction=0)
    torch.testing.assert_close(mean, torch.zeros(2, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(var, torch.ones(2, 3), atol=1e-5, rtol=0)
    # Brightness and contrast, per channel, of one image only: its normalised input does not change.
    gain = torch.tensor([0.5, 0.8, 0.3]).view(1, 3, 1, 1)
    changed = left.clone()
    changed[:1] = left[:1] * gain + 0.1
    torch.testing.assert_close(net.normalize(changed), normalised, atol=2e-5, rtol=0)
    # So is the disparity (all in float64: in float32 the network amplifies the rounding of the change).
    net64 = copy.deepcopy(net).double().eval()
    left64, right64 = left.double(), right.double()
    changed64 = left64.clone()
    changed64[:1] = left64[:1] * gain.double() + 0.1
    with torch.no_grad():
        before, after = net64(left64, right64), net64(changed64, right64)
    torch.testing.assert_close(after.disparity, before.disparity, atol=1e-8, rtol=0)
    # A constant channel (where the release divides by zero) stays finite.
    assert torch.isfinite(net.normalize(torch.full((1, 3, 8, 8), 0.3))).all()


def test_matches_the_release_output():
    """Eval disparity of the original code recorded with these weights, in float64: there the port
    matches to ~1e-12 px, while in float32 the random network amplifies rounding to ~1e-3 px."""
    data = np.load(FIXTURE)
    torch.manual_seed(0)
    net = randomise(LEAStereo(max_disp=48), seed=int(data["weight_seed"])).eval()
    left, right = pair(48, 96, seed=int(data["input_seed"]))
    expected = torch.from_numpy(data["disparity"])
    with torch.no_grad():
        single = net(left, right).disparity
        double = net.double()(left.double(), right.double()).disparity
    assert double.shape == expected.shape
    assert (double - expected).abs().max().item() < RELEASE_TOLERANCE
    assert (single.double() - expected).abs().max().item() < 5e-3


def test_import_drops_exactly_the_unused_units(net, tmp_path):
    source = randomise(LEAStereo(max_disp=24), seed=3)
    # A release checkpoint (train.py): DataParallel-prefixed state dict under "state_dict", with the
    # tensors of the units the release builds but never calls.
    state = {**source.state_dict(), **{key: torch.zeros(shape) for key, shape in unused_shapes().items()}}
    assert set(state) - set(source.map_original_state(state)) == set(UNUSED_RELEASE_KEYS)
    path = tmp_path / "best.pth"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    imported = import_checkpoint(path, arch="leastereo", max_disp=24)
    assert not imported.training
    for key, value in source.state_dict().items():
        torch.testing.assert_close(imported.state_dict()[key], value, rtol=0, atol=0)
    source.eval()
    with torch.no_grad():
        torch.testing.assert_close(imported(*pair()).disparity, source(*pair()).disparity, rtol=0, atol=0)
    # Anything else that does not fit is still refused.
    state["matching.last_48.conv.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, path)
    with pytest.raises(DataError, match=r"unexpected: matching\.last_48\.conv\.weight"):
        import_checkpoint(path, arch="leastereo", max_disp=24)
