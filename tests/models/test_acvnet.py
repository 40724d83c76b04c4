"""ACVNet: contract, taps, training outputs, and the original release's output on fixed weights."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from stereodistill.errors import ConfigError, InputError
from stereodistill.models.acvnet import ACVNet

FIXTURE = Path(__file__).parent / "fixtures" / "acvnet_original.npz"
#: Published by the ACVNet paper as about 7.1 M; exact count of the release.
RELEASE_PARAMS = 7_173_488
TAPS_32x64_D16 = {
    "feat.left.s2": (1, 32, 16, 32),
    "feat.right.s2": (1, 32, 16, 32),
    "feat.left.s4": (1, 320, 8, 16),
    "feat.right.s4": (1, 320, 8, 16),
    "volume.cost": (1, 40, 4, 8, 16),
    "volume.attention": (1, 1, 4, 8, 16),
    "volume.agg.0": (1, 32, 4, 8, 16),
    "volume.agg.1": (1, 32, 4, 8, 16),
    "volume.agg.2": (1, 32, 4, 8, 16),
    "logits.0": (1, 4, 8, 16),
    "logits.1": (1, 4, 8, 16),
    "logits.2": (1, 4, 8, 16),
    "prob": (1, 16, 32, 64),
}


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded random weights and BN statistics for fixtures, scaled to keep activations of order one
    (2-D layers damped, else the 16-block backbone grows its features ~20×; 3-D layers slightly
    amplified) and the 1-channel logit convolutions sharpened so the disparities spread over pixels
    while float32 rounding stays far below the fixture tolerance."""
    g = torch.Generator().manual_seed(seed)
    three_d = (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.Linear)
    with torch.no_grad():
        for module in model.modules():
            is_3d = isinstance(module, three_d)
            gain = 1.4 if is_3d else 1.3
            if isinstance(module, nn.Conv3d) and module.out_channels == 1:
                gain = 3.0
            for name, p in module.named_parameters(recurse=False):
                if p.dim() > 1:
                    p.normal_(0, gain * p[0].numel() ** -0.5, generator=g)
                elif name == "weight":
                    p.normal_(1.0 if is_3d else 0.5, 0.1, generator=g)
                else:
                    p.normal_(0, 0.1, generator=g)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.1, generator=g)
                module.running_var.uniform_(0.5, 2, generator=g)
    return model


def pair(h: int = 32, w: int = 64, b: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


@pytest.fixture(scope="module")
def net() -> ACVNet:
    torch.manual_seed(0)
    return ACVNet(max_disp=16)


def test_parameter_count_is_the_release():
    assert sum(p.numel() for p in ACVNet(max_disp=16).parameters()) == RELEASE_PARAMS


def test_release_module_names():
    names = set(ACVNet(max_disp=16).state_dict())
    for key in (
        "feature_extraction.firstconv.0.0.weight",
        "concatconv.2.weight",
        "patch.weight",
        "patch_l3.weight",
        "dres1_att_.2.1.running_var",
        "dres2_att_.attention_block.qkv_3d.bias",
        "classif_att_.2.weight",
        "dres0.2.0.weight",
        "dres3.attention_block.final1x1.weight",
        "classif2.0.1.weight",
    ):
        assert key in names, key


def test_train_forward_backward(net):
    net.train()
    left, right = pair(b=2)
    out = net(left, right)
    assert out.disparity.shape == (2, 32, 64)
    assert len(out.aux) == 3 and all(a.shape == (2, 32, 64) for a in out.aux)
    assert len(net.loss_weights) == len(out.predictions) == 4
    assert all(torch.isfinite(p).all() for p in out.predictions)
    sum(w * p.mean() for w, p in zip(net.loss_weights, out.predictions, strict=True)).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    net.zero_grad(set_to_none=True)


def test_eval_forward(net):
    net.eval()
    with torch.no_grad():
        out = net(*pair())
    assert out.disparity.shape == (1, 32, 64) and out.aux == [] and out.taps == {}
    assert torch.isfinite(out.disparity).all()
    assert (out.disparity >= 0).all() and (out.disparity <= 15).all()


@pytest.mark.parametrize("training", [False, True])
def test_each_tap_alone(net, training):
    net.train(training)
    assert set(net.offered_taps()) == set(TAPS_32x64_D16)
    left, right = pair()
    with torch.no_grad():
        for name, shape in TAPS_32x64_D16.items():
            out = net(left, right, taps=[name])
            assert set(out.taps) == {name}
            assert tuple(out.taps[name].shape) == shape, name


def test_extra_eval_heads_run_only_for_their_taps(net):
    net.eval()
    calls = []
    hooks = [getattr(net, f"classif{k}").register_forward_hook(lambda *_, k=k: calls.append(k)) for k in range(3)]
    try:
        with torch.no_grad():
            net(*pair())
            assert calls == [2]
            calls.clear()
            net(*pair(), taps=["logits.0"])
            assert sorted(calls) == [0, 2]
    finally:
        for hook in hooks:
            hook.remove()


def test_prob_and_logits_match_the_disparity(net):
    net.eval()
    with torch.no_grad():
        out = net(*pair(), taps=["prob", "logits.2"])
    values = torch.arange(16, dtype=torch.float32).view(1, -1, 1, 1)
    torch.testing.assert_close((out.taps["prob"] * values).sum(1), out.disparity)


def test_tap_shapes(net):
    shapes = net.tap_shapes(32, 64)
    assert shapes == TAPS_32x64_D16
    assert ACVNet(max_disp=192).tap_shapes(256, 512)["volume.attention"] == (1, 1, 48, 64, 128)


def test_unknown_tap_and_bad_inputs(net):
    with pytest.raises(ConfigError, match=r"offers: feat\.left\.s2"):
        net(*pair(), taps=["volume.nope"])
    with pytest.raises(InputError):
        net(torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 48))


def test_max_disp_must_suit_the_hourglasses():
    with pytest.raises(ConfigError, match="multiple of 16"):
        ACVNet(max_disp=20)
    assert ACVNet(max_disp=32).config == {"max_disp": 32}


def test_odd_sizes_are_padded_and_cropped(net):
    net.eval()
    with torch.no_grad():
        out = net(*pair(30, 61), taps=["prob"])
    assert out.disparity.shape == (1, 30, 61)
    assert out.taps["prob"].shape == (1, 16, 30, 61)


def test_matches_the_original_release_on_fixed_weights():
    """The original code's eval output for these seeded weights and inputs (tests/models/fixtures)."""
    data = np.load(FIXTURE)
    torch.manual_seed(0)
    model = randomize_(ACVNet(max_disp=int(data["max_disp"])), seed=int(data["weight_seed"])).eval()
    left, right = pair(64, 128, seed=int(data["input_seed"]))
    with torch.no_grad():
        disparity = model(left, right).disparity
    np.testing.assert_allclose(disparity[0].numpy(), data["disparity"], atol=1e-4, rtol=0)
