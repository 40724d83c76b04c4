"""SGBM, the classical baseline, behind the network contract: evaluated, benchmarked and run like
any network, never trained."""

import numpy as np
import pytest
import torch

from stereodistill.checkpoint import load_network
from stereodistill.errors import ConfigError
from stereodistill.models.sgbm import fill_from_left

pytest.importorskip("cv2")


def test_holes_take_the_nearest_valid_disparity_to_their_left():
    disparity = np.array([[0.0, 5.0, 0.0, 0.0, 7.0], [0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    valid = np.array([[0, 1, 0, 0, 1], [0, 0, 0, 0, 0]], bool)
    assert fill_from_left(disparity, valid).tolist() == [[5.0, 5.0, 5.0, 5.0, 7.0], [0.0] * 5]


def test_sgbm_finds_a_constant_shift_and_runs_like_a_network(tmp_path):
    g = torch.Generator().manual_seed(0)
    right = torch.rand(1, 3, 48, 96, generator=g)
    left = torch.roll(right, shifts=6, dims=-1)  # left pixel x sees right pixel x - 6
    net = load_network("sgbm", max_disp=30)  # by name: no checkpoint file
    assert net.max_disp == 32 and sum(p.numel() for p in net.parameters()) == 0
    disparity = net(left, right).disparity
    assert disparity.shape == (1, 48, 96)
    assert (disparity[0, 8:-8, 16:-8] - 6).abs().median() < 0.5
    with pytest.raises(ConfigError, match="nothing to train"):
        from stereodistill.config import from_dict
        from stereodistill.train.config import RunConfig
        from stereodistill.train.trainer import Trainer

        data = {"train": {"dataset": "synthetic", "pairs": 2, "size": [32, 64], "max_disp": 16}, "crop": [32, 64]}
        config = {"model": {"arch": "sgbm", "max_disp": 16}, "data": data, "output": str(tmp_path / "run")}
        Trainer(from_dict(RunConfig, config), distill=False)


def test_matches_beyond_max_disp_count_as_unmatched_when_the_search_is_rounded_up():
    g = torch.Generator().manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 35, 70, generator=g), size=(70, 140), mode="bicubic")
    base = base.clamp(0, 1)
    right, left = base[..., 40:130], base[..., 14:104]  # a true shift of 26 px, beyond a range of 20
    disparity = load_network("sgbm", max_disp=20)(left, right).disparity
    assert disparity.max() < 20  # the search ran to 32 (OpenCV's multiple of 16) and found 26
    assert load_network("sgbm", max_disp=32)(left, right).disparity[0, 8:-8, 40:-8].median() == pytest.approx(
        26, abs=0.5
    )


def test_images_narrower_than_the_range_cut_the_search_and_a_folder_named_sgbm_is_no_checkpoint(tmp_path, monkeypatch):
    from stereodistill.checkpoint import classical_network
    from stereodistill.errors import InputError

    net = load_network("sgbm")  # 192 disparities, for images 40 px wide: OpenCV alone would refuse them
    image = torch.rand(1, 3, 24, 40)
    assert net(image, image).disparity.shape == (1, 24, 40)
    with pytest.raises(InputError, match="16 px wide are too narrow"):
        net(image[..., :16], image[..., :16])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sgbm").mkdir()  # e.g. the output folder of `infer sgbm ... --out sgbm`
    assert classical_network("sgbm")
    (tmp_path / "sgbm.json").write_text("{}")  # a checkpoint of that name wins
    assert not classical_network("sgbm")


def test_prepare_loads_opencv_before_a_benchmark_measures_and_says_when_it_is_missing(monkeypatch):
    import sys

    from stereodistill.errors import InputError

    model = load_network("sgbm", max_disp=16)
    model.prepare()  # what bench calls before it reads the memory high-water mark
    assert "cv2" in sys.modules
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    with pytest.raises(InputError, match="sgbm needs OpenCV"):
        model.prepare()
