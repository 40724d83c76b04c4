"""The DSNet student family: contract, taps, knobs, parameter counts, import, and the release's output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from stereodistill.errors import ConfigError, InputError
from stereodistill.models.dsnet import DSNet, DSNetNoAttention, dsnet_loss_weights
from stereodistill.models.import_original import read_original
from stereodistill.models.registry import MODELS
from stereodistill.models.state_dict import load_state_strict

from .contract import check_eval_forward, check_tap_alone
from .random_weights import RELEASE_TOLERANCE, pair, randomise

FIXTURES = Path(__file__).parent / "fixtures"
ARCHS = {"dsnet": DSNet, "dsnet-noatt": DSNetNoAttention}


def taps_of(attention: bool, stages: int = 3) -> tuple[str, ...]:
    return (
        "feat.left.s2",
        "feat.right.s2",
        "feat.left.s4",
        "feat.right.s4",
        "volume.cost",
        *(("volume.attention",) if attention else ()),
        *(f"volume.agg.{k}" for k in range(stages)),
        *(f"logits.{k}" for k in range(stages)),
        "prob",
    )


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module", params=sorted(ARCHS))
def net(request) -> DSNet:
    torch.manual_seed(0)
    return ARCHS[request.param](max_disp=16)


# ---------------------------------------------------------------------------------- construction
def test_registered_and_rebuildable_from_config():
    assert MODELS.get("dsnet") is DSNet
    assert MODELS.get("dsnet-noatt") is DSNetNoAttention
    net = DSNet(max_disp=32, hourglass_channels=8, num_hourglasses=1, attention=False)
    assert net.config == {
        "max_disp": 32,
        "hourglass_channels": 8,
        "num_hourglasses": 1,
        "attention": False,
        "attention_channels": 16,
    }
    assert DSNet(**net.config).state_dict().keys() == net.state_dict().keys()
    assert DSNetNoAttention(**DSNetNoAttention(max_disp=16).config).config["attention"] is False


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="use dsnet"):
        DSNetNoAttention(max_disp=16, attention=True)
    with pytest.raises(ConfigError, match="multiple of 16"):
        DSNet(max_disp=40)
    with pytest.raises(ConfigError, match="num_hourglasses"):
        DSNet(max_disp=16, num_hourglasses=-1)


def test_parameter_counts():
    # The release (counted on its code with sum(p.numel())) holds 1,856,256 / 1,545,568 parameters,
    # of which 42,544 sit in feature_extraction.feat_trans (320→120→32 1×1 ConvBN), which it always
    # builds but its forward pass never calls; we do not build it.
    unused_feat_trans = 320 * 120 + 2 * 120 + 120 * 32 + 2 * 32
    assert n_params(DSNet()) == 1_856_256 - unused_feat_trans == 1_813_712
    assert n_params(DSNetNoAttention()) == 1_545_568 - unused_feat_trans == 1_503_024
    # The widths the release explored (slied8 / slied24: no attention branch, no feat_trans).
    assert n_params(DSNet(hourglass_channels=8, attention=False)) == 1_052_232
    assert n_params(DSNet(hourglass_channels=24, attention=False)) == 2_248_856


def test_module_names_follow_the_release(net):
    keys = set(net.state_dict())
    assert {"feature_extraction.layer2.3.conv2.0.weight", "feature_extraction.layer3.0.downsample.1.weight"} <= keys
    assert {"dres0.2.0.weight", "dres1.2.1.running_var", "dres3.redir2.0.weight", "classif2.2.weight"} <= keys
    assert "dres4.conv1.0.0.weight" not in keys and "classif3.2.weight" not in keys
    attention = {"patch.weight", "patch_l3.weight", "dres1_att.2.0.weight", "dres2_att.conv6.1.bias"}
    assert attention <= keys if net.attention else not attention & keys
    assert not any("feat_trans" in k or "cost_trans" in k or "attention_weights" in k for k in keys)


@pytest.mark.parametrize(
    ("num_hourglasses", "weights"),
    [(0, (1.0,)), (1, (0.5, 1.0)), (2, (0.5, 0.7, 1.0)), (3, (0.5, 0.5, 0.7, 1.0)), (4, (0.5, 0.5, 0.5, 0.7, 1.0))],
)
def test_loss_weights_follow_the_number_of_heads(num_hourglasses, weights):
    assert dsnet_loss_weights(num_hourglasses + 1) == weights
    net = DSNet(max_disp=16, hourglass_channels=4, num_hourglasses=num_hourglasses, attention_channels=4)
    assert net.loss_weights == weights
    assert len(net.heads()) == num_hourglasses + 1
    assert set(net.offered_taps()) == set(taps_of(True, num_hourglasses + 1))
    if num_hourglasses in (0, 3):  # forward only at the ends of the range: these nets are slow on CPU
        net.train()
        out = net(*pair(b=2))
        assert len(out.predictions) == len(weights)


def test_hourglass_width_changes_only_the_aggregation():
    net = DSNet(max_disp=16, hourglass_channels=8)
    assert net.dres0[2][0].out_channels == 8 and net.dres0[0][0].out_channels == 32
    assert net.dres2.conv1[0][0].in_channels == 8 and net.classif0[2].in_channels == 8
    assert net.dres1_att[0][0].out_channels == 16 and net.dres2_att.conv1[0][0].in_channels == 16


# ---------------------------------------------------------------------------------- forward
def test_train_mode_forward_backward(net):
    net.train()
    out = net(*pair(b=2))
    assert out.disparity.shape == (2, 32, 64)
    assert len(out.aux) == 2 and all(a.shape == (2, 32, 64) for a in out.aux)
    assert out.taps == {}
    loss = sum(w * p.mean() for w, p in zip(net.loss_weights, out.predictions, strict=True))
    loss.backward()
    assert torch.isfinite(net.classif0[2].weight.grad).all()
    assert net.feature_extraction.firstconv[0][0].weight.grad.abs().sum() > 0
    if net.attention:
        assert net.patch_l2.weight.grad.abs().sum() > 0
    net.zero_grad(set_to_none=True)


def test_eval_mode_forward(net):
    check_eval_forward(net, *pair(), max_disp=16)  # 32×64


def test_offered_taps(net):
    assert set(net.offered_taps()) == set(taps_of(net.attention))
    with pytest.raises(ConfigError, match=r"offers: feat\.left\.s2"):
        net(*pair(), taps=["logits.3"])
    if not net.attention:
        with pytest.raises(ConfigError, match=r"volume\.attention"):
            net(*pair(), taps=["volume.attention"])


@pytest.mark.parametrize("tap", taps_of(True))
def test_each_tap_alone(net, tap):
    if tap not in net.offered_taps():
        pytest.skip("no attention branch")
    expected = {
        "feat.left.s2": (1, 32, 16, 32),
        "feat.right.s2": (1, 32, 16, 32),
        "feat.left.s4": (1, 320, 8, 16),
        "feat.right.s4": (1, 320, 8, 16),
        "volume.cost": (1, 40, 4, 8, 16),
        "volume.attention": (1, 1, 4, 8, 16),
        "prob": (1, 16, 32, 64),
        **{f"volume.agg.{k}": (1, 16, 4, 8, 16) for k in range(3)},
        **{f"logits.{k}": (1, 4, 8, 16) for k in range(3)},
    }
    check_tap_alone(net, *pair(), tap, expected[tap])


def test_soft_distillation_logits_in_eval(net):
    """DSNet's soft distillation reads heads 1 and 2: both exist in eval, and head 2 is the final one."""
    net.eval()
    with torch.no_grad():
        out = net(*pair(), taps=["logits.1", "logits.2", "prob"])
    assert set(out.taps) == {"logits.1", "logits.2", "prob"}
    values = torch.arange(16.0).view(1, -1, 1, 1)
    assert torch.allclose((out.taps["prob"] * values).sum(1), out.disparity, atol=1e-4)


def test_tap_shapes_at_full_size(net):
    shapes = type(net)(max_disp=192).tap_shapes(256, 512)
    assert shapes["volume.cost"] == (1, 40, 48, 64, 128)
    assert shapes["volume.agg.2"] == (1, 16, 48, 64, 128)
    assert shapes["logits.1"] == (1, 48, 64, 128)
    assert shapes["prob"] == (1, 192, 256, 512)
    assert shapes.get("volume.attention") == ((1, 1, 48, 64, 128) if net.attention else None)


def test_size_mismatch_and_odd_sizes(net):
    net.eval()
    left, right = pair()
    with pytest.raises(InputError):
        net(left, right[:, :, :-2])
    with torch.no_grad():
        out = net(*pair(30, 61), taps=["prob"])
    assert out.disparity.shape == (1, 30, 61)
    assert out.taps["prob"].shape == (1, 16, 30, 61)


# ---------------------------------------------------------------------------------- the release
def test_original_checkpoint_drops_unused_tensors(tmp_path):
    """A release checkpoint ({'model': DataParallel state}) with feat_trans, attention_weights and
    cost_trans32* loads: those are dropped by name, everything else lands."""
    net = randomise(DSNet(max_disp=16, hourglass_channels=4, attention_channels=4), seed=3)
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    state["module.attention_weights"] = torch.zeros(1, 48, 64, 128)
    state["module.feature_extraction.feat_trans.0.0.weight"] = torch.zeros(120, 320, 1, 1)
    state["module.cost_trans32b.2.1.running_var"] = torch.ones(32)
    path = tmp_path / "checkpoint_000009.ckpt"
    torch.save({"epoch": 9, "model": state}, path)
    fresh = DSNet(max_disp=16, hourglass_channels=4, attention_channels=4)
    load_state_strict(fresh, fresh.map_original_state(read_original(path)), path)
    for key, value in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_matches_the_release_output(arch):
    """Eval disparity of the release's code (slied16 / slied16_wo) recorded with these weights."""
    data = np.load(FIXTURES / f"{arch}_original.npz")
    torch.manual_seed(0)
    net = randomise(ARCHS[arch](max_disp=48), seed=int(data["weight_seed"])).eval()
    with torch.no_grad():
        out = net(*pair(64, 128, seed=int(data["input_seed"])))
    expected = torch.from_numpy(data["disparity"])
    assert out.disparity.shape == expected.shape
    assert (out.disparity - expected).abs().max().item() < RELEASE_TOLERANCE
