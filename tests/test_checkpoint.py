import json
import pickle

import pytest
import torch

import stereodistill
from stereodistill.checkpoint import checkpoint_paths, load_model, save_model
from stereodistill.errors import DataError
from stereodistill.models.import_original import import_checkpoint, read_original
from stereodistill.models.registry import MODELS

from .models.tiny import TinyNet


@pytest.fixture
def tiny_registered(monkeypatch):
    import stereodistill.models.zoo  # noqa: F401  (register the real zoo first)

    monkeypatch.setitem(MODELS._items, "tiny", TinyNet)
    return TinyNet


def randomised(net):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        net.bn.running_mean.normal_(0, 0.1, generator=g)
        net.bn.running_var.uniform_(0.5, 2, generator=g)
    return net.eval()


def pair():
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, 24, 40, generator=g), torch.rand(1, 3, 24, 40, generator=g)


def test_save_then_load_gives_the_same_network(tmp_path, tiny_registered):
    net = randomised(TinyNet(max_disp=12))
    weights = save_model(tmp_path / "ckpt", net, step=7)
    assert weights.name == "ckpt.safetensors" and (tmp_path / "ckpt.json").is_file()
    meta = json.loads((tmp_path / "ckpt.json").read_text())
    assert meta["arch"] == "tiny" and meta["config"] == {"max_disp": 12} and meta["step"] == 7
    for path in (tmp_path / "ckpt", weights, tmp_path / "ckpt.json"):
        loaded = stereodistill.load_model(path)
        assert not loaded.training and loaded.max_disp == 12
        torch.testing.assert_close(loaded(*pair()).disparity, net(*pair()).disparity, rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json", "ckpt.safetensors"]


def test_checkpoint_that_is_not_ours_is_named(tmp_path, tiny_registered):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(DataError, match="not a stereodistill checkpoint") as info:
        load_model(tmp_path / "x.safetensors")
    assert "x.json" in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        load_model(tmp_path / "nothing")
    (tmp_path / "only.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="metadata is missing"):
        load_model(tmp_path / "only")
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_model(tmp_path / "y")


def test_truncated_or_foreign_weights_are_clear_errors(tmp_path, tiny_registered):
    weights = save_model(tmp_path / "c", randomised(TinyNet()))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(DataError, match="not a readable safetensors file") as info:
        load_model(weights)
    assert "c.safetensors" in str(info.value)


def test_weights_of_another_architecture_list_what_is_wrong(tmp_path, tiny_registered):
    save_model(tmp_path / "c", randomised(TinyNet(max_disp=16)))
    meta = json.loads((tmp_path / "c.json").read_text())
    meta["config"] = {"max_disp": 16}
    weights, _ = checkpoint_paths(tmp_path / "c")
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    state["extra.weight"] = torch.zeros(2)
    del state["head.bias"]
    state["features.weight"] = torch.zeros(1, 1)
    save_file(state, str(weights))
    with pytest.raises(DataError, match=r"1 missing: head.bias; 1 unexpected: extra.weight; 1 wrong shape"):
        load_model(tmp_path / "c")
    meta["arch"] = "no-such-net"
    (tmp_path / "c.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="unknown architecture 'no-such-net'"):
        load_model(tmp_path / "c")


# ----------------------------------------------------------------------- original checkpoints
def test_import_original_strips_dataparallel_prefix_and_finds_the_state(tmp_path, tiny_registered):
    net = randomised(TinyNet())
    for key in ("state_dict", "model"):
        path = tmp_path / f"{key}.tar"
        torch.save({key: {"module." + k: v for k, v in net.state_dict().items()}, "epoch": 3}, path)
        imported = import_checkpoint(path, arch="tiny")
        torch.testing.assert_close(imported(*pair()).disparity, net(*pair()).disparity, rtol=0, atol=0)
    torch.save(net.state_dict(), tmp_path / "flat.pth")
    assert set(read_original(tmp_path / "flat.pth")) == set(net.state_dict())


def test_import_refuses_pickled_objects_without_running_them(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(DataError, match="refused") as info:
        read_original(path)
    assert "evil.pth" in str(info.value)


def test_import_refuses_truncated_and_non_tensor_files(tmp_path, tiny_registered):
    path = tmp_path / "t.pth"
    torch.save({"state_dict": TinyNet().state_dict()}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="truncated"):
        read_original(path)
    torch.save({"state_dict": {"a": 1}}, tmp_path / "n.pth")
    with pytest.raises(DataError, match="not a tensor"):
        read_original(tmp_path / "n.pth")
    with pytest.raises(DataError, match="does not exist"):
        read_original(tmp_path / "missing.pth")
    torch.save({"state_dict": {5: torch.zeros(1)}}, tmp_path / "k.pth")
    with pytest.raises(DataError, match="key 5 is not a name"):
        read_original(tmp_path / "k.pth")


def test_loading_a_checkpoint_leaves_the_callers_random_state_alone(tmp_path):
    from stereodistill.models import build_model

    save_model(tmp_path / "m", build_model("lean-xs", max_disp=16))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    load_model(tmp_path / "m")  # its initial weights are drawn, then replaced
    assert torch.equal(torch.rand(3), expected)


def test_import_of_another_architecture_fails_naming_the_file(tmp_path, tiny_registered):
    torch.save({"state_dict": {"module.conv.weight": torch.zeros(3)}}, tmp_path / "other.tar")
    with pytest.raises(DataError, match="do not fit architecture 'tiny'") as info:
        import_checkpoint(tmp_path / "other.tar", arch="tiny")
    assert "other.tar" in str(info.value)


def test_a_run_folder_or_a_folder_given_as_a_checkpoint_says_what_to_give(tmp_path, tiny_registered):
    save_model(tmp_path / "run" / "model", TinyNet())
    with pytest.raises(DataError, match=r"is a run folder, not a checkpoint: use .*run/model"):
        load_model(tmp_path / "run")
    with pytest.raises(DataError, match="is a folder, not a checkpoint"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"hello world\n" * 10, "not a PyTorch checkpoint: it starts with 'hello world"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "an HTML page: a failed download?"),
        (bytes(range(7, 250)), "not a PyTorch checkpoint: it starts with '07 08 09"),
        (b"\x80\x02" + bytes(range(200)), "refused: a weights-only load cannot read it|not a readable"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_named_as_such_in_one_line(tmp_path, content, expected):
    path = tmp_path / "release.pth"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as info:
        read_original(path)
    message = str(info.value)
    assert "release.pth" in message and "\n" not in message and "weights_only" not in message


def test_numpy_scalars_beside_the_weights_load_and_other_objects_are_named_never_unpickled(tmp_path):
    import numpy as np

    state = {"conv.weight": torch.randn(2, 3)}
    torch.save({"model": state, "epoch": 10, "best_epe": np.float64(1.23), "step": np.int64(7)}, tmp_path / "a.pth")
    torch.testing.assert_close(read_original(tmp_path / "a.pth")["conv.weight"], state["conv.weight"])
    torch.save({"model": state, "history": np.zeros(3)}, tmp_path / "b.pth")
    with pytest.raises(DataError, match=r"refused: it holds a numpy\.\S+_reconstruct object") as info:
        read_original(tmp_path / "b.pth")
    message = str(info.value)
    assert "\x1b" not in message and "weights_only" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"arch": "nope"}, "unknown architecture 'nope'"),
        ({"config": {"max_disp": -4}}, "max_disp must be a positive multiple of 4, got -4"),
        ({"config": {"max_disp": 10**20}}, "max_disp must be at most 2048 px (its cost volume grows with it), got 1"),
        ({"config": {"max_disp": "16"}}, "option max_disp must be an integer, got '16'"),
        ({"config": {"max_disp": 16, "width": 1e9}}, "width must be a positive number up to 4"),
        ({"config": {"max_disp": 16, "depth": 3}}, "option depth must be a list of integers, got 3"),
        ({"config": {"max_disp": 16, "nonsense": 1}}, "unknown option 'nonsense'; valid: max_disp, width"),
    ],
)
def test_an_edited_checkpoint_config_is_refused_naming_the_json(tmp_path, edit, expected):
    from stereodistill.models import build_model

    save_model(tmp_path / "m", build_model("lean-xs", max_disp=16))
    record = json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps(record | edit))
    with pytest.raises(DataError, match="config does not fit architecture") as info:
        load_model(tmp_path / "m")
    assert info.value.path == tmp_path / "m.json" and expected in str(info.value)


def test_a_release_checkpoint_and_ours_given_in_each_others_place_say_which_they_are(tmp_path, tiny_registered):
    torch.save({"state_dict": TinyNet().state_dict()}, tmp_path / "release.tar")
    with pytest.raises(DataError, match=r"release.tar: is not a stereodistill checkpoint .* `stereodistill convert"):
        load_model(tmp_path / "release.tar")
    save_model(tmp_path / "ours", TinyNet())
    for given in (tmp_path / "ours", tmp_path / "ours.safetensors"):
        with pytest.raises(DataError, match=r"is a (stereodistill checkpoint \(ours.json\)|safetensors file).*as ours"):
            read_original(given)


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        ({"weights": {"a": torch.zeros(1)}, "epoch": 3}, r"no state dict found: it holds 'weights', 'epoch' \(a state"),
        ({"epoch": 1, "optimizer": {}}, r"no state dict found: it holds 'epoch', 'optimizer'"),
        ({"state_dict": {}}, r"its state dict \('state_dict'\) is empty"),
        ([torch.zeros(1)], r"no state dict found: it holds a list, not a mapping of tensors"),
    ],
)
def test_a_release_file_without_a_state_dict_says_what_it_holds(tmp_path, saved, expected):
    torch.save(saved, tmp_path / "r.pth")
    with pytest.raises(DataError, match=expected):
        read_original(tmp_path / "r.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.pth: is empty \(0 bytes\)"):
        read_original(tmp_path / "empty.pth")


def test_checkpoint_metadata_without_its_network_config_is_named(tmp_path, tiny_registered):
    save_model(tmp_path / "m", TinyNet())
    record = json.loads((tmp_path / "m.json").read_text())
    del record["config"]
    (tmp_path / "m.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match=r"m.json: checkpoint metadata lacks a valid 'arch' and 'config'"):
        load_model(tmp_path / "m")


def test_a_release_with_weights_that_are_not_finite_is_refused_naming_them(tmp_path, tiny_registered):
    state = TinyNet().state_dict()
    state["bn.running_var"][0] = float("nan")
    torch.save({"state_dict": state}, tmp_path / "r.pth")
    with pytest.raises(
        DataError, match=r"r.pth: holds weights that are not finite \(NaN or infinite\): bn.running_var"
    ):
        read_original(tmp_path / "r.pth")


def test_a_release_made_for_another_range_says_which_range_its_weights_fit(tmp_path):
    from stereodistill.models import build_model

    torch.save({"model_state": build_model("lean-xs", max_disp=64).state_dict()}, tmp_path / "r.pth")
    with pytest.raises(DataError, match=r"its weights fit a range of 64, not 32: give max disparity 64"):
        import_checkpoint(tmp_path / "r.pth", arch="lean-xs", max_disp=32)
    assert import_checkpoint(tmp_path / "r.pth", arch="lean-xs", max_disp=64).max_disp == 64


def test_a_classical_method_has_no_weights_to_import(tmp_path):
    from stereodistill.errors import ConfigError

    torch.save({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "r.pth")
    with pytest.raises(ConfigError, match=r"^sgbm is a classical method: it has no weights to import$"):
        import_checkpoint(tmp_path / "r.pth", arch="sgbm")


def test_model_init_of_another_architecture_without_options_of_its_own_is_refused(tmp_path):
    from stereodistill.checkpoint import check_init
    from stereodistill.errors import ConfigError
    from stereodistill.models import build_model

    save_model(tmp_path / "coex", build_model("coex", max_disp=32))
    for max_disp in (32, 64):  # neither has options: their configs agree, their layers do not
        with pytest.raises(ConfigError, match=r"coex: a coex checkpoint, but model.arch is lightstereo-s$"):
            check_init(tmp_path / "coex", build_model("lightstereo-s", max_disp=max_disp))
