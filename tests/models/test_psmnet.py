"""PSMNet (stacked hourglass): contract, taps, release layout and a regression against the original code."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stereodistill.errors import ConfigError, InputError
from stereodistill.models.blocks import soft_argmin
from stereodistill.models.import_original import import_checkpoint
from stereodistill.models.psmnet import PSMNet, PyramidPool
from stereodistill.models.registry import MODELS

FIXTURE = Path(__file__).parent / "fixtures" / "psmnet_original.npz"
PUBLISHED_PARAMS = 5_224_768  # the README's "5.22 M"; the original code counts exactly this
MAX_DISP = 16
H, W = 32, 64
TAPS = {
    "feat.left.s2": (1, 32, H // 2, W // 2),
    "feat.right.s2": (1, 32, H // 2, W // 2),
    "feat.left.s4": (1, 32, H // 4, W // 4),
    "feat.right.s4": (1, 32, H // 4, W // 4),
    "volume.cost": (1, 64, MAX_DISP // 4, H // 4, W // 4),
    "volume.agg.0": (1, 32, MAX_DISP // 4, H // 4, W // 4),
    "volume.agg.1": (1, 32, MAX_DISP // 4, H // 4, W // 4),
    "volume.agg.2": (1, 32, MAX_DISP // 4, H // 4, W // 4),
    "volume.agg.3": (1, 32, MAX_DISP // 4, H // 4, W // 4),
    "logits.1": (1, MAX_DISP // 4, H // 4, W // 4),
    "logits.2": (1, MAX_DISP // 4, H // 4, W // 4),
    "logits.3": (1, MAX_DISP // 4, H // 4, W // 4),
    "prob": (1, MAX_DISP, H, W),
}


#: Convolution weights are drawn with std GAIN/sqrt(fan-in): at 1.0 PSMNet's 16-block residual stage
#: grows the activations until the logits are so large that float32 rounding moves the disparity by
#: ~1e-4 px; well below 0.9 the logits fade and the disparity is flat. 0.9 keeps a varied output
#: (std > 3 px) that float32 computes to within ~3e-5 px of float64.
GAIN = 0.9


def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Overwrite every weight and batch-norm statistic from a seeded generator (in sorted-name order,
    so the result depends only on the parameter names and shapes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_mean"):
                value = torch.randn(tensor.shape, generator=g) * 0.1
            elif name.endswith("running_var"):
                value = torch.rand(tensor.shape, generator=g) * 1.5 + 0.5
            elif tensor.dim() == 1 and name.endswith("weight"):
                value = torch.rand(tensor.shape, generator=g) + 0.5
            elif tensor.dim() == 1:
                value = torch.randn(tensor.shape, generator=g) * 0.1
            else:
                value = torch.randn(tensor.shape, generator=g) * (GAIN / math.sqrt(tensor[0].numel()))
            tensor.copy_(value)
    return model


def fixture_inputs(seed: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, height, width, generator=g), torch.rand(1, 3, height, width, generator=g)


def images(batch: int = 1, height: int = H, width: int = W, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=g), torch.rand(batch, 3, height, width, generator=g)


@pytest.fixture(scope="module")
def eval_model() -> PSMNet:
    torch.manual_seed(0)
    return PSMNet(max_disp=MAX_DISP).eval()


def test_registered_with_release_settings():
    assert MODELS.get("psmnet") is PSMNet
    assert PSMNet.loss_weights == (0.5, 0.7, 1.0)
    assert PSMNet.pad_multiple == 16


def test_parameter_count_matches_the_release():
    model = PSMNet()
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS
    # The disparity range changes no weight.
    assert sum(p.numel() for p in PSMNet(max_disp=MAX_DISP).parameters()) == PUBLISHED_PARAMS


def test_release_parameter_names():
    names = set(PSMNet(max_disp=MAX_DISP).state_dict())
    for key in (
        "feature_extraction.firstconv.0.0.weight",
        "feature_extraction.layer2.15.conv2.1.running_var",
        "feature_extraction.branch1.1.0.weight",
        "feature_extraction.branch4.1.1.bias",
        "feature_extraction.lastconv.0.0.weight",
        "feature_extraction.lastconv.2.weight",
        "dres0.2.0.weight",
        "dres1.2.1.running_mean",
        "dres4.conv2.0.weight",
        "dres4.conv6.1.weight",
        "classif3.0.0.weight",
        "classif3.2.weight",
    ):
        assert key in names, key
    assert not any("redir" in name for name in names)


def test_train_forward_backward():
    torch.manual_seed(0)
    model = PSMNet(max_disp=MAX_DISP).train()
    # Batch 2: in training the coarsest pyramid cell is 1×1 here, and batch norm needs > 1 value.
    left, right = images(batch=2)
    out = model(left, right)
    assert out.disparity.shape == (2, H, W)
    assert len(out.aux) == 2 and all(pred.shape == (2, H, W) for pred in out.aux)
    assert len(out.predictions) == len(PSMNet.loss_weights)
    assert out.taps == {}
    assert all(torch.isfinite(pred).all() for pred in out.predictions)
    loss = sum(w * pred.mean() for w, pred in zip(PSMNet.loss_weights, out.predictions, strict=True))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_eval_forward(eval_model):
    with torch.no_grad():
        out = eval_model(*images())
    assert out.disparity.shape == (1, H, W)
    assert out.aux == [] and out.taps == {}
    assert torch.isfinite(out.disparity).all()
    assert (out.disparity >= 0).all() and (out.disparity <= MAX_DISP - 1).all()


@pytest.mark.parametrize("name", sorted(TAPS))
def test_each_tap_alone(eval_model, name):
    with torch.no_grad():
        out = eval_model(*images(), taps=[name])
    assert set(out.taps) == {name}
    assert tuple(out.taps[name].shape) == TAPS[name]
    assert torch.isfinite(out.taps[name]).all()


def test_offered_taps_and_shapes(eval_model):
    assert set(eval_model.offered_taps()) == set(TAPS)
    assert "volume.attention" not in eval_model.offered_taps()
    assert eval_model.tap_shapes(H, W) == TAPS
    shapes = eval_model.tap_shapes()
    assert shapes["volume.cost"] == (1, 64, MAX_DISP // 4, 64, 128)
    assert shapes["prob"] == (1, MAX_DISP, 256, 512)


def test_tap_shapes_in_training_mode():
    shapes = PSMNet(max_disp=MAX_DISP).train().tap_shapes()
    assert shapes["logits.1"] == (1, MAX_DISP // 4, 64, 128)


def test_logits_are_what_each_head_regresses():
    torch.manual_seed(0)
    model = PSMNet(max_disp=MAX_DISP).train()
    with torch.no_grad():
        out = model(*images(batch=2), taps=["logits.1", "logits.2", "logits.3", "prob"])
    for k, pred in enumerate(out.predictions, start=1):
        full = F.interpolate(
            out.taps[f"logits.{k}"].unsqueeze(1), size=(MAX_DISP, H, W), mode="trilinear", align_corners=False
        )
        prob = F.softmax(full.squeeze(1), dim=1)
        torch.testing.assert_close(soft_argmin(prob), pred)
    torch.testing.assert_close(out.taps["prob"], prob)


def test_unknown_tap_lists_offered(eval_model):
    with pytest.raises(ConfigError, match=r"volume\.attention.*offers:.*volume\.cost"):
        eval_model(*images(), taps=["volume.attention"])


def test_size_mismatch_raises(eval_model):
    left, _ = images()
    with pytest.raises(InputError):
        eval_model(left, left[..., :-4])


def test_odd_size_is_padded_and_cropped(eval_model):
    with torch.no_grad():
        out = eval_model(*images(height=30, width=61), taps=["prob", "logits.3"])
    assert out.disparity.shape == (1, 30, 61)
    assert out.taps["prob"].shape == (1, MAX_DISP, 30, 61)
    assert out.taps["logits.3"].shape == (1, MAX_DISP // 4, 32 // 4, 64 // 4)  # padded size


def test_max_disp_must_suit_the_hourglasses():
    with pytest.raises(ConfigError, match="multiple of 16"):
        PSMNet(max_disp=24)


def test_config_rebuilds_the_model():
    model = PSMNet(max_disp=MAX_DISP, align_corners=True)
    assert model.config == {"max_disp": MAX_DISP, "align_corners": True}
    assert PSMNet(**model.config).config == model.config


def test_align_corners_applies_to_the_upsampling_only(eval_model):
    other = PSMNet(max_disp=MAX_DISP, align_corners=True).eval()
    other.load_state_dict(eval_model.state_dict())
    with torch.no_grad():
        a = eval_model(*images(), taps=["feat.left.s2", "feat.left.s4"])
        b = other(*images(), taps=["feat.left.s2", "feat.left.s4"])
    assert torch.equal(a.taps["feat.left.s2"], b.taps["feat.left.s2"])  # before any upsampling
    assert not torch.allclose(a.taps["feat.left.s4"], b.taps["feat.left.s4"])  # pyramid upsampled
    assert not torch.allclose(a.disparity, b.disparity)


def test_pyramid_pool_is_the_release_pool_where_that_runs():
    x = torch.randn(2, 3, 70, 135)
    torch.testing.assert_close(PyramidPool(32)(x), torch.nn.AvgPool2d(32, stride=32)(x))
    # On a map smaller than the window the release fails; we pool over the whole short side.
    small = torch.randn(1, 3, 8, 40)
    torch.testing.assert_close(PyramidPool(16)(small), F.avg_pool2d(small, (8, 16), stride=(8, 16)))


def test_imports_release_checkpoint_without_batch_counters(tmp_path):
    torch.manual_seed(0)
    source = PSMNet(max_disp=MAX_DISP)
    # As the published files: DataParallel prefixes, no num_batches_tracked (saved before PyTorch 0.4.1).
    state = {"module." + k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "pretrained.tar"
    torch.save({"epoch": 10, "state_dict": state, "train_loss": 0.5}, path)
    target = import_checkpoint(path, arch="psmnet", max_disp=MAX_DISP)
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(target.state_dict()[key], value), key


def test_matches_original_code_fixture():
    """The original code's eval output, recorded with these weights and inputs (see the fixture)."""
    data = np.load(FIXTURE)
    height, width, stride = int(data["height"]), int(data["width"]), int(data["stride"])
    torch.manual_seed(0)
    model = randomize_(PSMNet(max_disp=int(data["max_disp"])), seed=int(data["weight_seed"])).eval()
    with torch.no_grad():
        out = model(*fixture_inputs(int(data["input_seed"]), height, width))
    got = out.disparity[0, ::stride, ::stride].numpy()
    expected = data["disparity"]
    assert got.shape == expected.shape
    assert float(expected.std()) > 1.0  # the recorded output is not a degenerate constant
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
