"""Fast-ACVNet+: contract, taps, parameter count, import, and the release's outputs on fixed weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.data.transforms import pad_to_multiple
from stereodistill.errors import ConfigError, DataError, InputError
from stereodistill.models import fast_acvnet
from stereodistill.models.fast_acvnet import (
    FastACVNetPlus,
    grid_warp,
    sampled_concat_volume,
    top_k_hypotheses,
)
from stereodistill.models.import_original import import_checkpoint
from stereodistill.models.numerics import reference_numerics
from stereodistill.models.output import TapRecorder
from stereodistill.models.registry import MODELS

from .contract import check_eval_forward, check_tap_alone
from .random_weights import pair

FIXTURE = Path(__file__).parent / "fixtures" / "fast-acvnet-plus_original.npz"
#: sum(p.numel()) of the release's ``Fast_ACVNet_plus(192, False)`` (timm 0.5.4 backbone), and of the
#: two one-channel batch norms its ``conv1_up`` heads create but never call.
RELEASE_PARAMS = 3_203_293
UNUSED_RELEASE_PARAMS = 4
UNUSED_RELEASE_KEYS = tuple(
    f"{head}.conv1_up.bn.{name}"
    for head in ("hourglass_att", "hourglass")
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
)
MAX_DISP = 32
TAPS_64x128_D32 = {
    "feat.left.s2": (1, 32, 32, 64),
    "feat.right.s2": (1, 32, 32, 64),
    "feat.left.s4": (1, 96, 16, 32),
    "feat.right.s4": (1, 96, 16, 32),
    "volume.cost": (1, 1, 8, 16, 32),
    "volume.attention": (1, 1, 8, 16, 32),
    "logits.0": (1, 8, 16, 32),
    "prob": (1, 32, 64, 128),
}


def seeded_weights(model: nn.Module, seed: int) -> nn.Module:
    """Weights and BN statistics drawn from one seeded generator only (no forward pass, so the fixture
    does not depend on this machine's float32 arithmetic): the network's top-k choices are
    discontinuous, so weights that moved by one ulp could change them. Scaled to keep activations of
    order one (2-D ×1.3, 3-D ×1.5 He-like) with sharper one-logit heads, so disparities spread."""
    g = torch.Generator().manual_seed(seed)
    transposed_kinds = (nn.ConvTranspose2d, nn.ConvTranspose3d)
    three_d = (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if p.dim() > 1:
                    transposed = isinstance(module, transposed_kinds)
                    fan_in = p.numel() / p.shape[1 if transposed else 0] / (2 ** (p.dim() - 2) if transposed else 1)
                    gain = 1.5 if isinstance(module, three_d) else 1.3
                    if transposed and p.shape[1] == 1 and p.dim() == 5:
                        gain = 4.0
                    p.normal_(0, gain * fan_in**-0.5, generator=g)
                elif name == "weight":
                    p.uniform_(0.8, 1.2, generator=g)
                else:
                    p.normal_(0, 0.1, generator=g)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.1, generator=g)
                module.running_var.uniform_(0.5, 2.0, generator=g)
    return model


@pytest.fixture(scope="module")
def net() -> FastACVNetPlus:
    torch.manual_seed(0)
    return FastACVNetPlus(max_disp=MAX_DISP)


# ----------------------------------------------------------------------------------------- definition
def test_registered_with_its_config():
    assert MODELS.get("fast-acvnet-plus") is FastACVNetPlus
    assert FastACVNetPlus().config == {"max_disp": 192}
    assert FastACVNetPlus(**FastACVNetPlus(max_disp=64).config).max_disp == 64


def test_max_disp_must_suit_the_attention_hourglass():
    with pytest.raises(ConfigError, match="multiple of 32"):
        FastACVNetPlus(max_disp=48)


def test_parameter_count_is_the_release_less_its_unused_batch_norms(net):
    assert FastACVNetPlus.release_params == RELEASE_PARAMS
    assert sum(p.numel() for p in net.parameters()) == RELEASE_PARAMS - UNUSED_RELEASE_PARAMS


def test_release_module_names(net):
    names = set(net.state_dict())
    for key in (
        "feature.conv_stem.weight",
        "feature.bn1.running_var",
        "feature.block0.0.0.conv_dw.weight",
        "feature.block0.0.0.bn2.bias",
        "feature.block3.1.2.conv_pwl.weight",
        "feature.block4.0.2.bn3.weight",
        "feature_up.deconv32_16.conv1.conv.weight",
        "feature_up.conv4.bn.running_mean",
        "stem_2.2.weight",
        "spx.0.bias",
        "spx_2.conv2.conv.weight",
        "desc.bias",
        "corr_feature_att_4.im_att.1.bias",
        "hourglass_att.agg_0.2.bn.weight",
        "hourglass_att.feature_att_32.im_att.0.conv.weight",
        "hourglass_att.conv1_up.conv.weight",
        "hourglass.agg.0.conv.weight",
        "hourglass.feature_att_up_8.im_att.1.weight",
        "concat_feature.1.weight",
    ):
        assert key in names, key
    assert not any(key.startswith(("hourglass_att.conv1_up.bn", "hourglass.conv1_up.bn")) for key in names)
    assert not any(".block5" in key or "conv_head" in key for key in names)


def test_loss_weights_are_the_release_ones():
    # models/loss.py: (1.0, 0.3, 0.5, 0.3) over (final, final at 1/4, attention, attention at 1/4).
    assert FastACVNetPlus.loss_weights == (0.3, 0.5, 0.3, 1.0)


# ------------------------------------------------------------------------------------------- contract
def test_eval_forward(net):
    check_eval_forward(net, *pair(64, 128), MAX_DISP)


def test_odd_sizes_crop_back_exactly(net):
    net.eval()
    left, right = pair(50, 99)
    with torch.no_grad():
        out = net(left, right)
        padded_left, padding = pad_to_multiple(net.normalize(left), net.pad_multiple)
        padded_right, _ = pad_to_multiple(net.normalize(right), net.pad_multiple)
        full = net.predict(padded_left, padded_right, TapRecorder())
    assert out.disparity.shape == (1, 50, 99)
    assert torch.equal(out.disparity, padding.crop(full.disparity))


def test_unknown_tap_and_bad_inputs(net):
    with pytest.raises(ConfigError, match=r"offers: feat\.left\.s2"):
        net(*pair(), taps=["volume.agg.0"])
    with pytest.raises(InputError):
        net(torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 48))


@pytest.mark.parametrize("tap", sorted(TAPS_64x128_D32))
def test_each_tap_alone(net, tap):
    check_tap_alone(net, *pair(64, 128), tap, TAPS_64x128_D32[tap])


def test_tap_shapes(net):
    assert set(net.offered_taps()) == set(TAPS_64x128_D32)
    assert net.tap_shapes(64, 128) == TAPS_64x128_D32
    shapes = FastACVNetPlus().tap_shapes(256, 512)
    assert shapes["logits.0"] == (1, 48, 64, 128) and shapes["prob"] == (1, 192, 256, 512)


def test_prob_is_computed_only_when_asked(net, monkeypatch):
    calls = []
    real = fast_acvnet.neighbour_distribution
    monkeypatch.setattr(fast_acvnet, "neighbour_distribution", lambda *a, **k: calls.append(1) or real(*a, **k))
    net.eval()
    with torch.no_grad():
        out = net(*pair(64, 128), taps=["volume.attention", "logits.0"])
        assert out.taps.keys() == {"volume.attention", "logits.0"}
        assert calls == []
        net(*pair(64, 128), taps=["prob"])
    assert calls == [1]


def test_logits_and_prob_agree_with_the_outputs():
    torch.manual_seed(0)
    model = seeded_weights(FastACVNetPlus(max_disp=128), seed=4).eval()
    with torch.no_grad():
        out = model(*pair(50, 99), taps=["volume.attention", "logits.0", "prob"])
    assert torch.equal(out.taps["logits.0"], out.taps["volume.attention"].squeeze(1))
    prob = out.taps["prob"]
    assert prob.shape == (1, 128, 50, 99) and (prob >= 0).all()
    torch.testing.assert_close(prob.sum(1), torch.ones(1, 50, 99))
    values = torch.arange(128, dtype=torch.float32).view(1, -1, 1, 1)
    # Its mean is the output; its mass sits on multiples of 4 (the 1/4 hypotheses, ×4).
    torch.testing.assert_close((prob * values).sum(1), out.disparity, atol=1e-4, rtol=0)
    assert (prob[:, values.flatten().long() % 4 != 0] == 0).all()


def test_training_outputs_and_gradients(net):
    net.train()
    out = net(*pair(64, 128, b=2))
    assert len(out.predictions) == len(net.loss_weights) == 4
    assert all(p.shape == (2, 64, 128) and torch.isfinite(p).all() for p in out.predictions)
    # The 1/4 predictions are repeated over their 4×4 blocks.
    for coarse in (out.aux[0], out.aux[2]):
        assert torch.equal(coarse, coarse[:, ::4, ::4].repeat_interleave(4, 1).repeat_interleave(4, 2))
    sum(w * p.mean() for w, p in zip(net.loss_weights, out.predictions, strict=True)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    net.zero_grad(set_to_none=True)


# -------------------------------------------------------------------------------------------- helpers
def test_sparse_concat_volume_reads_each_pixels_hypotheses():
    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(2, 3, 4, 9, generator=g), torch.randn(2, 3, 4, 9, generator=g)
    hypotheses = torch.randint(0, 12, (2, 5, 4, 9), generator=g)
    volume = sampled_concat_volume(left, right, hypotheses)
    assert volume.shape == (2, 6, 5, 4, 9)
    for n, k, y, x in np.ndindex(2, 5, 4, 9):
        d = int(hypotheses[n, k, y, x])
        expected = right[n, :, y, x - d] if x >= d else torch.zeros(3)
        assert torch.equal(volume[n, :3, k, y, x], left[n, :, y, x])
        assert torch.equal(volume[n, 3:, k, y, x], expected)
    # The release's bilinear warp reads the same pixels (up to rounding of its coordinates).
    torch.testing.assert_close(grid_warp(right, hypotheses), volume[:, 3:], atol=1e-5, rtol=0)
    with reference_numerics():
        torch.testing.assert_close(sampled_concat_volume(left, right, hypotheses), volume, atol=1e-5, rtol=0)


def test_top_k_keeps_the_most_probable_in_increasing_order():
    logits = torch.tensor([0.1, 3.0, -1.0, 2.0, 2.5, 0.0]).view(1, 1, 6, 1, 1)
    chosen, prob = top_k_hypotheses(logits, 3)
    assert chosen.flatten().tolist() == [1, 3, 4]
    torch.testing.assert_close(prob.flatten(), F.softmax(logits.flatten(), 0)[[1, 3, 4]])


# ------------------------------------------------------------------------------------------- releases
def release_state(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """``model``'s weights as the release's training script saves them, its unused tensors included."""
    g = torch.Generator().manual_seed(seed)
    state = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    for key in UNUSED_RELEASE_KEYS:
        state[f"module.{key}"] = torch.tensor(3) if key.endswith("tracked") else torch.rand(1, generator=g)
    return state


def test_import_release_checkpoint(tmp_path):
    torch.manual_seed(1)
    source = seeded_weights(FastACVNetPlus(max_disp=MAX_DISP), seed=3).eval()
    state = release_state(source)
    path = tmp_path / "checkpoint_000023.ckpt"
    torch.save({"epoch": 23, "model": state, "optimizer": {}}, path)
    imported = import_checkpoint(path, arch="fast-acvnet-plus", max_disp=MAX_DISP)
    assert not imported.training
    for key, value in source.state_dict().items():
        assert torch.equal(imported.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(imported(*pair(64, 128)).disparity, source(*pair(64, 128)).disparity)

    missing = {k: v for k, v in state.items() if k != "module.hourglass.agg.1.conv.weight"}
    torch.save({"model": missing}, path)
    with pytest.raises(DataError, match=r"1 missing: hourglass\.agg\.1\.conv\.weight"):
        import_checkpoint(path, arch="fast-acvnet-plus", max_disp=MAX_DISP)
    extra = {**state, "module.feature.conv_head.weight": torch.zeros(1280, 320, 1, 1)}
    torch.save({"model": extra}, path)
    with pytest.raises(DataError, match=r"1 unexpected: feature\.conv_head\.weight"):
        import_checkpoint(path, arch="fast-acvnet-plus", max_disp=MAX_DISP)


def fixture_model(data: np.lib.npyio.NpzFile) -> FastACVNetPlus:
    torch.manual_seed(0)
    model = FastACVNetPlus(max_disp=int(data["max_disp"]))
    return seeded_weights(model, seed=int(data["weight_seed"])).double()


def test_matches_the_release_in_eval():
    """The release's float64 eval disparity on these seeded weights and inputs (64×128, D = 192: the
    attention keeps 24 of 48 hypotheses)."""
    data = np.load(FIXTURE)
    model = fixture_model(data).eval()
    left, right = (x.double() for x in pair(64, 128, seed=int(data["input_seed"])))
    with torch.no_grad():
        disparity = model(left, right).disparity[0]
    np.testing.assert_allclose(disparity.numpy(), data["disparity"], atol=1e-4, rtol=0)


def test_matches_the_release_in_training():
    """The release's four float64 training outputs (batch 2, batch statistics), in its order: final,
    final at 1/4, attention, attention at 1/4."""
    data = np.load(FIXTURE)
    model = fixture_model(data).train()
    left, right = (x.double() for x in pair(32, 64, b=2, seed=int(data["train_input_seed"])))
    out = model(left, right)
    att_quarter, att, final_quarter, final = (p.detach().numpy() for p in out.predictions)
    expected = [
        data["train_final"],
        data["train_final_quarter"],
        data["train_attention"],
        data["train_attention_quarter"],
    ]
    ours = [final, final_quarter[:, ::4, ::4], att, att_quarter[:, ::4, ::4]]
    for got, want in zip(ours, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
