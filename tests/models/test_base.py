import pytest
import torch
from torch import nn

from stereodistill.errors import ConfigError, InputError
from stereodistill.models.output import TapRecorder

from .tiny import TinyNet


def pair(h=32, w=64, b=2):
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


def test_taps_are_returned_only_when_asked_and_lazily_computed():
    net = TinyNet().eval()
    left, right = pair()
    out = net(left, right)
    assert out.taps == {} and net.calls == []
    out = net(left, right, taps=["volume.cost"])
    assert set(out.taps) == {"volume.cost"} and net.calls == ["volume"]
    assert out.taps["volume.cost"].shape == (2, 1, 4, 8, 16)


def test_unknown_tap_lists_what_is_offered():
    with pytest.raises(ConfigError, match=r"does not offer tap\(s\) volume.attention; it offers: feat.left.s4"):
        TinyNet()(*pair(), taps=["volume.attention"])


def test_any_size_is_padded_and_cropped_back_exactly():
    net = TinyNet().eval()
    left, right = pair(30, 61, 1)
    out = net(left, right, taps=["prob"])
    assert out.disparity.shape == (1, 30, 61)
    assert out.taps["prob"].shape == (1, 16, 30, 61)
    # The base pads the normalised images on top and right with zeros, then crops exactly that off.
    padded_l = torch.zeros(1, 3, 32, 64)
    padded_r = torch.zeros(1, 3, 32, 64)
    padded_l[..., 2:, :61] = net.normalize(left)
    padded_r[..., 2:, :61] = net.normalize(right)
    raw = net.predict(padded_l, padded_r, TapRecorder())
    torch.testing.assert_close(out.disparity, raw.disparity[..., 2:, :61])


def test_taps_are_cropped_to_the_cells_that_cover_the_image():
    """Networks padding to different multiples give one tap shape per image size (so that a
    distillation term can compare them) and the kept cells are those the unpadded image lies in."""
    net = TinyNet().eval()  # pads to 8 (25×50 to 32×56: 7 rows on top, 6 columns right); taps at 1/4
    left, right = pair(25, 50, 1)
    out = net(left, right, taps=["feat.left.s4", "volume.cost"])
    assert out.taps["feat.left.s4"].shape[-2:] == (7, 13) and out.taps["volume.cost"].shape[-2:] == (7, 13)
    padded_l = torch.zeros(1, 3, 32, 56)
    padded_l[..., 7:, :50] = net.normalize(left)
    recorder = TapRecorder({"feat.left.s4"})
    net.predict(padded_l, torch.zeros_like(padded_l), recorder)
    torch.testing.assert_close(out.taps["feat.left.s4"], recorder.taps["feat.left.s4"][..., 1:, :13])


def test_mismatched_or_malformed_inputs_are_refused():
    net = TinyNet()
    with pytest.raises(InputError, match="differ in size"):
        net(torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 62))
    with pytest.raises(InputError, match="B×3×H×W"):
        net(torch.rand(1, 1, 32, 64), torch.rand(1, 1, 32, 64))


def test_train_mode_returns_aux_and_predictions_end_with_the_final():
    net = TinyNet().train()
    out = net(*pair())
    assert len(out.aux) == 1 and out.predictions[-1] is out.disparity


def test_tap_shapes_runs_on_the_meta_device_without_touching_weights():
    net = TinyNet()
    before = net.features.weight.clone()
    shapes = net.tap_shapes(64, 128)
    assert shapes == {"feat.left.s4": (1, 8, 16, 32), "volume.cost": (1, 1, 4, 16, 32), "prob": (1, 16, 64, 128)}
    assert torch.equal(net.features.weight, before) and net.features.weight.device.type == "cpu"


def test_max_disp_must_be_a_multiple_of_4():
    with pytest.raises(ConfigError, match="multiple of 4"):
        TinyNet(max_disp=18)
    assert TinyNet(max_disp=20).config == {"max_disp": 20}


def test_summary_counts_used_parameters_and_macs():
    from stereodistill.models.summary import summarize

    net = TinyNet()
    net.unused = nn.Linear(100, 100)  # created but never called: not counted as used
    summary = summarize(net, 32, 64)
    used = (8 * 3 * 9 + 8) + (27 + 1) + 2 * 8  # conv2d, conv3d, batch norm
    assert summary.params == used
    assert summary.params_total == used + 100 * 100 + 100
    # Two feature convs at 8×16 outputs + one 3-D conv at 4×8×16, batch 1 (biases are not MACs).
    expected = 2 * (8 * 16 * 8 * 27) + (4 * 8 * 16) * 27
    correlation_and_rest = summary.macs - expected
    assert 0 <= correlation_and_rest < expected
    assert summary.taps["prob"] == (1, 16, 32, 64)


def test_fast_conv3d_matches_torch_in_inference_and_training():
    from stereodistill.models.blocks import Conv3d

    torch.manual_seed(0)
    fast = Conv3d(8, 4, 3, padding=1, dilation=1, bias=True)
    ref = nn.Conv3d(8, 4, 3, padding=1, dilation=1, bias=True)
    ref.load_state_dict(fast.state_dict())
    assert list(fast.state_dict()) == ["weight", "bias"]
    x = torch.randn(1, 8, 4, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-5, atol=1e-5)
    y = torch.randn(2, 8, 4, 5, 6, requires_grad=True)
    fast(y).sum().backward()  # the training path is PyTorch's own
    assert y.grad is not None
    depthwise = Conv3d(6, 6, (1, 3, 3), padding=(0, 2, 2), dilation=(1, 2, 2), groups=6, bias=False)
    ref_dw = nn.Conv3d(6, 6, (1, 3, 3), padding=(0, 2, 2), dilation=(1, 2, 2), groups=6, bias=False)
    ref_dw.load_state_dict(depthwise.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(depthwise(x[:, :6]), ref_dw(x[:, :6]), rtol=1e-5, atol=1e-5)


def test_a_range_far_beyond_any_benchmark_is_one_clear_error(capsys):
    from stereodistill.cli.main import main

    assert main(["bench", "--models", "lean-xs", "--size", "32x64", "--max-disp", str(10**20), "--threads", "1"]) == 2
    err = capsys.readouterr().err.splitlines()  # its progress line, then the error in one line
    assert len(err) == 2 and "max_disp must be at most 2048 px" in err[1]
