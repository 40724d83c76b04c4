"""The DSNet paper's teacher: contract, taps, import of a release checkpoint, the release's output."""

from pathlib import Path

import numpy as np
import pytest
import torch

from stereodistill.errors import ConfigError, DataError, InputError
from stereodistill.models.dsnet_teacher import UNUSED_RELEASE_KEYS, DSNetTeacher
from stereodistill.models.import_original import import_checkpoint

from .test_acvnet import TAPS_32x64_D16, pair, randomize_

FIXTURE = Path(__file__).parent / "fixtures" / "dsnet-teacher_original.npz"
#: The release builds 6,603,936 parameters, 372,992 of them in ``feature_extraction.lastconv``,
#: which its forward pass never calls and this port does not create.
RELEASE_PARAMS, UNUSED_PARAMS = 6_603_936, 372_992


@pytest.fixture(scope="module")
def net() -> DSNetTeacher:
    torch.manual_seed(0)
    return DSNetTeacher(max_disp=16)


def test_parameter_count_is_the_release_without_its_unused_layer(net):
    assert sum(p.numel() for p in net.parameters()) == RELEASE_PARAMS - UNUSED_PARAMS == 6_230_944
    assert not any("lastconv" in key for key in net.state_dict())


def test_release_module_names(net):
    names = set(net.state_dict())
    for key in ("dres1_att.0.0.weight", "dres2_att.attention_block.qkv_3d.weight", "classif_att.2.weight"):
        assert key in names, key
    assert not any(key.startswith(("dres1_att_", "classif_att_")) for key in names)
    assert net.dres2_att.attention_block.qkv_3d.in_features == 64  # 16-ch branch, 4× at the bottleneck


#: Shapes of the release's unused ``feature_extraction.lastconv`` (320→128 3×3 conv + BN, 128→32 1×1 conv).
UNUSED_SHAPES = {
    "feature_extraction.lastconv.0.0.weight": (128, 320, 3, 3),
    "feature_extraction.lastconv.0.1.weight": (128,),
    "feature_extraction.lastconv.0.1.bias": (128,),
    "feature_extraction.lastconv.0.1.running_mean": (128,),
    "feature_extraction.lastconv.0.1.running_var": (128,),
    "feature_extraction.lastconv.0.1.num_batches_tracked": (),
    "feature_extraction.lastconv.2.weight": (32, 128, 1, 1),
}


def test_import_drops_exactly_the_unused_layer(net, tmp_path):
    assert set(UNUSED_SHAPES) == set(UNUSED_RELEASE_KEYS)
    parameters = ("0.0.weight", "0.1.weight", "0.1.bias", "2.weight")
    assert sum(torch.Size(UNUSED_SHAPES[f"feature_extraction.lastconv.{k}"]).numel() for k in parameters) == (
        UNUSED_PARAMS
    )
    # A release checkpoint: our tensors plus the unused layer's, DataParallel-prefixed under "model".
    state = {**net.state_dict(), **{key: torch.zeros(shape) for key, shape in UNUSED_SHAPES.items()}}
    assert set(state) - set(net.map_original_state(state)) == set(UNUSED_RELEASE_KEYS)
    path = tmp_path / "release.ckpt"
    torch.save({"epoch": 0, "model": {f"module.{k}": v for k, v in state.items()}}, path)
    imported = import_checkpoint(path, arch="dsnet-teacher", max_disp=16)
    torch.testing.assert_close(imported.classif2[2].weight, net.classif2[2].weight)
    # Anything else that does not fit is still refused.
    state["feature_extraction.lastconv.3.weight"] = torch.zeros(1)
    torch.save({"model": state}, path)
    with pytest.raises(DataError, match=r"unexpected: feature_extraction\.lastconv\.3\.weight"):
        import_checkpoint(path, arch="dsnet-teacher", max_disp=16)


def test_train_forward_backward(net):
    net.train()
    out = net(*pair(b=2))
    assert out.disparity.shape == (2, 32, 64)
    assert len(out.aux) == 3 and all(a.shape == (2, 32, 64) for a in out.aux)
    assert len(net.loss_weights) == len(out.predictions) == 4
    assert all(torch.isfinite(p).all() for p in out.predictions)
    sum(w * p.mean() for w, p in zip(net.loss_weights, out.predictions, strict=True)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    net.zero_grad(set_to_none=True)


def test_eval_forward(net):
    net.eval()
    with torch.no_grad():
        out = net(*pair())
    assert out.disparity.shape == (1, 32, 64) and out.aux == [] and out.taps == {}
    assert torch.isfinite(out.disparity).all()


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


def test_head_zero_reads_dres0_output_not_the_stage(net):
    net.eval()
    seen = []
    hook = net.classif0.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    try:
        with torch.no_grad():
            out = net(*pair(), taps=["logits.0", "volume.agg.0"])
    finally:
        hook.remove()
    assert len(seen) == 1 and not torch.equal(seen[0], out.taps["volume.agg.0"])


def test_tap_shapes(net):
    assert net.tap_shapes(32, 64) == TAPS_32x64_D16


def test_unknown_tap_and_bad_inputs(net):
    with pytest.raises(ConfigError, match=r"offers: feat\.left\.s2"):
        net(*pair(), taps=["volume.nope"])
    with pytest.raises(InputError):
        net(torch.rand(1, 3, 32, 64), torch.rand(1, 3, 30, 64))


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
    model = randomize_(DSNetTeacher(max_disp=int(data["max_disp"])), seed=int(data["weight_seed"])).eval()
    left, right = pair(64, 128, seed=int(data["input_seed"]))
    with torch.no_grad():
        disparity = model(left, right).disparity
    np.testing.assert_allclose(disparity[0].numpy(), data["disparity"], atol=1e-4, rtol=0)
