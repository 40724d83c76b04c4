"""GwcNet-g / GwcNet-gc: contract, taps, parameter counts, and a regression against the release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stereodistill.errors import ConfigError, InputError
from stereodistill.models.gwcnet import GwcNet, GwcNetG, GwcNetGC
from stereodistill.models.registry import MODELS

from .contract import check_eval_forward, check_tap_alone
from .random_weights import RELEASE_TOLERANCE, pair, randomise

FIXTURE = Path(__file__).parent / "fixtures" / "gwcnet-gc_original.npz"
ARCHS = {"gwcnet-g": GwcNetG, "gwcnet-gc": GwcNetGC}
STAGES = range(4)
TAPS = (
    "feat.left.s2",
    "feat.right.s2",
    "feat.left.s4",
    "feat.right.s4",
    "volume.cost",
    *(f"volume.agg.{k}" for k in STAGES),
    *(f"logits.{k}" for k in STAGES),
    "prob",
)


@pytest.fixture(scope="module", params=sorted(ARCHS))
def net(request) -> GwcNet:
    torch.manual_seed(0)
    return ARCHS[request.param](max_disp=16)


def test_registered_under_both_names():
    assert MODELS.get("gwcnet-g") is GwcNetG
    assert MODELS.get("gwcnet-gc") is GwcNetGC
    assert GwcNetGC(max_disp=16).config == {"max_disp": 16, "use_concat_volume": True}
    rebuilt = GwcNetG(**GwcNetG(max_disp=32).config)
    assert rebuilt.config == {"max_disp": 32, "use_concat_volume": False}


def test_wrong_variant_option_is_refused():
    with pytest.raises(ConfigError, match="gwcnet-gc"):
        GwcNetG(max_disp=16, use_concat_volume=True)
    with pytest.raises(ConfigError, match="gwcnet-g"):
        GwcNetGC(max_disp=16, use_concat_volume=False)
    with pytest.raises(ConfigError, match="multiple of 16"):
        GwcNetG(max_disp=20)


def test_parameter_counts_match_the_release():
    # Counted on the original code (xy-guo/GwcNet) with sum(p.numel()).
    assert sum(p.numel() for p in GwcNetG(max_disp=16).parameters()) == 6_518_560
    assert sum(p.numel() for p in GwcNetGC(max_disp=16).parameters()) == 6_909_728


def test_module_names_follow_the_release(net):
    keys = set(net.state_dict())
    assert "feature_extraction.firstconv.0.0.weight" in keys
    assert "feature_extraction.layer2.15.conv2.0.weight" in keys
    assert "dres4.redir2.0.weight" in keys
    assert {"classif3.0.0.weight", "classif3.0.1.running_var", "classif3.2.weight"} <= keys
    assert ("feature_extraction.lastconv.2.weight" in keys) == net.use_concat_volume


def test_train_mode_forward_backward(net):
    net.train()
    left, right = pair(b=2)
    out = net(left, right)
    assert out.disparity.shape == (2, 32, 64)
    assert len(out.aux) == 3 and all(a.shape == (2, 32, 64) for a in out.aux)
    assert len(out.predictions) == len(net.loss_weights) == 4
    assert out.taps == {}
    loss = sum(w * p.mean() for w, p in zip(net.loss_weights, out.predictions, strict=True))
    loss.backward()
    assert torch.isfinite(net.classif0[2].weight.grad).all()
    assert net.feature_extraction.firstconv[0][0].weight.grad.abs().sum() > 0
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
        "feat.left.s2": (1, 32, 16, 32),
        "feat.right.s2": (1, 32, 16, 32),
        "feat.left.s4": (1, 320, 8, 16),
        "feat.right.s4": (1, 320, 8, 16),
        "volume.cost": (1, 40, 4, 8, 16),
        "prob": (1, 16, 32, 64),
        **{f"volume.agg.{k}": (1, 32, 4, 8, 16) for k in STAGES},
        **{f"logits.{k}": (1, 4, 8, 16) for k in STAGES},
    }
    check_tap_alone(net, *pair(), tap, expected[tap])


def test_eval_runs_extra_heads_only_for_their_taps(net):
    """In eval, a non-final head runs when its ``logits.K`` is asked for; ``prob`` is the final distribution."""
    net.eval()
    with torch.no_grad():
        out = net(*pair(), taps=["logits.0", "logits.3", "prob"])
    assert set(out.taps) == {"logits.0", "logits.3", "prob"}
    assert out.aux == []
    assert torch.allclose(out.taps["prob"].sum(1), torch.ones(1, 32, 64), atol=1e-5)
    values = torch.arange(16.0).view(1, -1, 1, 1)
    assert torch.allclose((out.taps["prob"] * values).sum(1), out.disparity, atol=1e-4)


def test_tap_shapes_at_full_size():
    shapes = GwcNetGC(max_disp=192).tap_shapes(256, 512)
    assert shapes["volume.cost"] == (1, 40, 48, 64, 128)
    assert shapes["volume.agg.3"] == (1, 32, 48, 64, 128)
    assert shapes["logits.0"] == (1, 48, 64, 128)
    assert shapes["prob"] == (1, 192, 256, 512)
    assert shapes["feat.right.s4"] == (1, 320, 64, 128)


def test_size_mismatch_and_odd_sizes(net):
    net.eval()
    left, right = pair()
    with pytest.raises(InputError):
        net(left, right[..., :-1])
    with torch.no_grad():
        out = net(*pair(30, 61), taps=["prob"])
    assert out.disparity.shape == (1, 30, 61)
    assert out.taps["prob"].shape == (1, 16, 30, 61)


def test_matches_the_release_output():
    """Eval disparity of the original code (xy-guo/GwcNet, gwcnet-gc) recorded with these weights."""
    data = np.load(FIXTURE)
    torch.manual_seed(0)
    net = randomise(GwcNetGC(max_disp=48), seed=int(data["weight_seed"])).eval()
    with torch.no_grad():
        out = net(*pair(64, 128, seed=int(data["input_seed"])))
    expected = torch.from_numpy(data["disparity"])
    assert out.disparity.shape == expected.shape
    assert (out.disparity - expected).abs().max().item() < RELEASE_TOLERANCE
