"""LightStereo-S: contract, taps, parameter count, checkpoint import, and a regression on the release."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import stereodistill.models.lightstereo as lightstereo_module
from stereodistill.errors import ConfigError, DataError, InputError
from stereodistill.models.base import IMAGENET_MEAN
from stereodistill.models.import_original import import_checkpoint
from stereodistill.models.lightstereo import LightStereoS
from stereodistill.models.registry import MODELS
from stereodistill.models.zoo import build_model

from .contract import check_eval_forward, check_tap_alone
from .random_weights import RELEASE_TOLERANCE, one_thread, pair, randomise

FIXTURE = Path(__file__).parent / "fixtures" / "lightstereo-s_original.npz"
MAX_DISP = 32  # contract tests: 8 disparities at 1/4 keep them fast
TAPS = ("feat.left.s2", "feat.right.s2", "feat.left.s4", "feat.right.s4", "volume.cost", "logits.0", "prob")
RELEASE_PARAMS = 3_441_360  # sum(p.numel()) of OpenStereo's LightStereo built from lightstereo_s_sceneflow.yaml


@pytest.fixture(scope="module")
def net() -> LightStereoS:
    torch.manual_seed(0)
    return randomise(LightStereoS(max_disp=MAX_DISP), seed=1)


def test_registered():
    assert MODELS.get("lightstereo-s") is LightStereoS
    assert build_model("lightstereo-s").config == {"max_disp": 192}
    assert LightStereoS.cost_volume_kind == "correlation"
    assert LightStereoS.loss_weights == (0.3, 1.0)


def test_parameter_count_matches_the_release():
    model = LightStereoS()
    assert sum(p.numel() for p in model.parameters()) == RELEASE_PARAMS == LightStereoS.release_params


def test_module_names_follow_the_release():
    keys = set(LightStereoS().state_dict())
    assert {
        "backbone.conv_stem.weight",
        "backbone.block0.0.conv_dw.weight",
        "backbone.block3.3.0.conv_pw.weight",  # timm's stages 3 and 4 keep their indices
        "backbone.block3.4.2.bn3.running_var",
        "backbone.block4.2.conv_pwl.weight",
        "backbone.fpn_layer2.deconv.block.1.running_mean",
        "backbone.out_conv.block.0.weight",
        "cost_agg.conv0.0.pwliner.1.weight",
        "cost_agg.conv4.2.dwconv.0.weight",
        "cost_agg.att4.conv2_2.bias",
        "refine_1.1.block.0.weight",
        "stem_2.0.block.1.num_batches_tracked",
        "refine_2.conv.block.0.weight",
        "refine_3.block.0.weight",
    } <= keys
    assert not any(key.startswith("backbone.block5") for key in keys)  # timm's 320-channel stage: not attached


def test_eval_mode_forward(net):
    check_eval_forward(net, *pair(), max_disp=MAX_DISP)  # 32×64


def test_train_mode_forward_backward(net):
    model = copy.deepcopy(net).train()
    left, right = pair(b=2)
    out = model(left, right)
    assert out.disparity.shape == (2, 32, 64)
    assert len(out.aux) == 1 and out.aux[0].shape == (2, 32, 64)
    assert len(out.predictions) == len(model.loss_weights) == 2
    assert out.taps == {}
    loss = sum(w * p.mean() for w, p in zip(model.loss_weights, out.predictions, strict=True))
    loss.backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert unused == []  # the release builds nothing that its forward pass does not call
    assert model.backbone.conv_stem.weight.grad.abs().sum() > 0


def test_aux_is_the_quarter_resolution_estimate_upsampled(net):
    """``aux`` is 4 × the bilinear upsampling of the 1/4 soft-argmin, whose logits are ``logits.0``."""
    model = copy.deepcopy(net).train()
    with torch.no_grad():
        out = model(*pair(), taps=["logits.0"])
    values = torch.arange(MAX_DISP // 4, dtype=torch.float32).view(1, -1, 1, 1)
    low = (F.softmax(out.taps["logits.0"], dim=1) * values).sum(1, keepdim=True)
    expected = 4 * F.interpolate(low, size=(32, 64), mode="bilinear", align_corners=False).squeeze(1)
    torch.testing.assert_close(out.aux[0], expected)


def test_offered_taps(net):
    assert set(net.offered_taps()) == set(TAPS)
    with pytest.raises(ConfigError, match=r"offers: feat\.left\.s2"):
        net(*pair(), taps=["volume.attention"])


@pytest.mark.parametrize("tap", TAPS)
def test_each_tap_alone(net, tap):
    expected = {
        "feat.left.s2": (1, 16, 16, 32),
        "feat.right.s2": (1, 16, 16, 32),
        "feat.left.s4": (1, 24, 8, 16),
        "feat.right.s4": (1, 24, 8, 16),
        "volume.cost": (1, 1, MAX_DISP // 4, 8, 16),
        "logits.0": (1, MAX_DISP // 4, 8, 16),
        "prob": (1, MAX_DISP, 32, 64),
    }
    check_tap_alone(net, *pair(), tap, expected[tap])


def test_taps_are_computed_only_when_asked(net, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the full-resolution distribution was computed without being asked for")

    monkeypatch.setattr(lightstereo_module, "regress", refuse)
    net.eval()
    with torch.no_grad():
        out = net(*pair(), taps=["logits.0"])
    assert set(out.taps) == {"logits.0"}


def test_prob_is_a_distribution(net):
    net.eval()
    with torch.no_grad():
        out = net(*pair(), taps=["prob"])
    torch.testing.assert_close(out.taps["prob"].sum(1), torch.ones(1, 32, 64))


def test_tap_shapes_at_full_size():
    shapes = LightStereoS().tap_shapes(256, 512)
    assert shapes == {
        "feat.left.s2": (1, 16, 128, 256),
        "feat.right.s2": (1, 16, 128, 256),
        "feat.left.s4": (1, 24, 64, 128),
        "feat.right.s4": (1, 24, 64, 128),
        "volume.cost": (1, 1, 48, 64, 128),
        "logits.0": (1, 48, 64, 128),
        "prob": (1, 192, 256, 512),
    }


def test_any_size_is_padded_and_cropped_back_exactly(net):
    """An odd-sized pair gives exactly the crop of the padded pair's output (padding: the mean colour,
    i.e. 0 after normalisation, above and to the right)."""
    net.eval()
    left, right = pair(30, 61)
    with pytest.raises(InputError):
        net(left, right[..., :-1])
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)

    def padded(image: torch.Tensor) -> torch.Tensor:
        return F.pad(image - mean, (0, 3, 2, 0)) + mean  # 30×61 → 32×64

    with torch.no_grad():
        odd = net(left, right, taps=["prob"])
        full = net(padded(left), padded(right), taps=["prob"])
    assert odd.disparity.shape == (1, 30, 61)
    assert odd.taps["prob"].shape == (1, MAX_DISP, 30, 61)
    torch.testing.assert_close(odd.disparity, full.disparity[:, 2:, :61], rtol=0, atol=1e-5)
    torch.testing.assert_close(odd.taps["prob"], full.taps["prob"][:, :, 2:, :61], rtol=0, atol=1e-6)


def release_checkpoint(model: LightStereoS, path: Path, key: str = "model_state") -> None:
    """As OpenStereo's ``save_checkpoint`` writes it (DistributedDataParallel prefix included)."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 89, key: state, "optimizer_state": {"state": {}, "param_groups": []}}, path)


def test_import_release_checkpoint(tmp_path):
    source = randomise(LightStereoS(), seed=2).eval()
    path = tmp_path / "checkpoint_epoch_89.pth"
    for key in ("model_state", "state_dict"):
        release_checkpoint(source, path, key)
        imported = import_checkpoint(path, arch="lightstereo-s")
        assert not imported.training
        for name, value in source.state_dict().items():
            assert torch.equal(imported.state_dict()[name], value), name
    with torch.no_grad():
        assert torch.equal(imported(*pair()).disparity, source(*pair()).disparity)


def test_import_refuses_a_missing_or_extra_tensor(tmp_path):
    source = LightStereoS()
    path = tmp_path / "bad.pth"
    state = dict(source.state_dict())
    del state["cost_agg.att2.conv3.bias"]
    torch.save({"model_state": state}, path)
    with pytest.raises(DataError, match=r"missing: cost_agg\.att2\.conv3\.bias"):
        import_checkpoint(path, arch="lightstereo-s")
    state = {**source.state_dict(), "backbone.block5.0.conv_pw.weight": torch.zeros(1920, 320, 1, 1)}
    torch.save({"model_state": state}, path)
    with pytest.raises(DataError, match=r"unexpected: backbone\.block5\.0\.conv_pw\.weight"):
        import_checkpoint(path, arch="lightstereo-s")


def fixture_net(data: np.lib.npyio.NpzFile) -> LightStereoS:
    torch.manual_seed(0)
    with one_thread():
        return randomise(LightStereoS(), seed=int(data["weight_seed"]))


def test_matches_the_release_output():
    """Eval disparity of OpenStereo's code (float64) recorded with these weights, 64×128 input."""
    data = np.load(FIXTURE)
    net = fixture_net(data).eval()
    expected = torch.from_numpy(data["disparity"])
    left, right = pair(64, 128, seed=int(data["input_seed"]))
    with torch.no_grad():
        single = net(left, right).disparity
        double = net.double()(left.double(), right.double()).disparity
    assert double.shape == expected.shape
    assert (double - expected).abs().max().item() < RELEASE_TOLERANCE
    assert (single.double() - expected).abs().max().item() < 5e-3  # float32 rounding, amplified by random weights


def test_matches_the_release_in_training_mode():
    """Training-mode ``disp_pred`` and ``disp_4`` of the release (float64, batch statistics), batch 2."""
    data = np.load(FIXTURE)
    net = fixture_net(data).double().train()
    left, right = pair(32, 64, b=2, seed=int(data["train_seed"]))
    with torch.no_grad():
        out = net(left.double(), right.double())
    assert (out.disparity - torch.from_numpy(data["train_disparity"])).abs().max().item() < 1e-4
    assert (out.aux[0] - torch.from_numpy(data["train_aux"])).abs().max().item() < 1e-4
