"""Dataset readers on miniature copies of the official layouts, bad inputs, and one real Middlebury pair.

Each test builds the few files a layout needs in ``tmp_path`` (8×12 images), so the whole file runs in
a few seconds. SceneFlow has its own file, ``test_datasets_sceneflow.py``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from stereodistill.data.datasets import (
    DATASETS,
    ETH3D,
    Kitti2012,
    Kitti2015,
    Middlebury,
    Pairs,
    build_dataset,
)
from stereodistill.data.formats import write_image, write_pfm, write_png_disparity
from stereodistill.errors import ConfigError, DataError

H, W = 8, 12


# ------------------------------------------------------------------------------------------ helpers
def _image(path: Path, seed: int = 0, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """Write a random RGB image and return what reading it back must give (8-bit quantised)."""
    image = np.random.default_rng(seed).random((*size, 3))
    write_image(path, image)
    return np.round(image * 255) / 255


def _gray(path: Path, seed: int = 0) -> None:
    """An 8-bit grayscale PNG, as ETH3D ships."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W), dtype=np.uint8)).save(path)


def _kitti_disp(seed: int = 0) -> np.ndarray:
    """Disparities on the 1/256 grid (exact in a KITTI PNG), a third of them 0 = no GT."""
    rng = np.random.default_rng(seed)
    disp = rng.integers(256, 60 * 256, (H, W)) / 256.0
    disp[rng.random((H, W)) < 0.33] = 0
    return disp.astype(np.float32)


def _mask(path: Path) -> np.ndarray:
    """A Middlebury/ETH3D mask: rows 0-1 unknown (0), rows 2-3 occluded (128), the rest evaluated (255)."""
    mask = np.full((H, W), 255, np.uint8)
    mask[:2] = 0
    mask[2:4] = 128
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
    return mask == 255


def _check_sample(sample: dict[str, Any], has_gt: bool = True) -> None:
    assert set(sample) == {"left", "right", "disp", "valid", "meta"}
    assert sample["left"].shape == sample["right"].shape == (3, H, W)
    assert sample["left"].dtype == sample["right"].dtype == sample["disp"].dtype == torch.float32
    assert sample["disp"].shape == sample["valid"].shape == (H, W)
    assert sample["valid"].dtype == torch.bool
    assert float(sample["left"].min()) >= 0 and float(sample["left"].max()) <= 1
    assert sample["meta"]["has_gt"] is has_gt
    if not has_gt:
        assert not bool(sample["valid"].any())


# ------------------------------------------------------------------------------------------- KITTI
def _kitti2015(root: Path) -> dict[str, np.ndarray]:
    gt = {}
    for index in (0, 1):
        for view in ("image_2", "image_3"):
            for frame in (10, 11):
                _image(root / "training" / view / f"{index:06d}_{frame}.png", seed=index)
        gt[f"training/{index:06d}_10"] = _kitti_disp(index)
        write_png_disparity(root / "training" / "disp_occ_0" / f"{index:06d}_10.png", gt[f"training/{index:06d}_10"])
    for view in ("image_2", "image_3"):
        _image(root / "testing" / view / "000000_10.png")
        _image(root / "testing" / view / "000000_11.png")
    return gt


def test_kitti2015_splits_ids_and_gt(tmp_path: Path) -> None:
    gt = _kitti2015(tmp_path)
    train = Kitti2015(tmp_path)
    assert [f.id for f in train.files] == ["training/000000_10", "training/000001_10"]  # no _11 frames
    for index, files in enumerate(train.files):
        sample = train[index]
        _check_sample(sample)
        np.testing.assert_array_equal(sample["disp"].numpy(), gt[files.id])
        np.testing.assert_array_equal(sample["valid"].numpy(), gt[files.id] > 0)
        assert sample["meta"]["dataset"] == "kitti2015" and sample["meta"]["split"] == "train"

    test = Kitti2015(tmp_path, split="test")
    assert [f.id for f in test.files] == ["testing/000000_10"]
    assert test.files[0].disp is None
    sample = test[0]
    _check_sample(sample, has_gt=False)
    assert not bool(sample["disp"].any())
    assert len(Kitti2015(tmp_path, split="all")) == 3


def test_kitti_max_disp(tmp_path: Path) -> None:
    gt = _kitti2015(tmp_path)
    sample = Kitti2015(tmp_path, max_disp=30)[0]
    expected = (gt["training/000000_10"] > 0) & (gt["training/000000_10"] < 30)
    np.testing.assert_array_equal(sample["valid"].numpy(), expected)


def test_kitti2012_layout(tmp_path: Path) -> None:
    left = _image(tmp_path / "training" / "colored_0" / "000007_10.png", seed=3)
    _image(tmp_path / "training" / "colored_0" / "000007_11.png", seed=3)
    _image(tmp_path / "training" / "colored_1" / "000007_10.png", seed=4)
    disp = _kitti_disp(7)
    write_png_disparity(tmp_path / "training" / "disp_occ" / "000007_10.png", disp)
    ds = build_dataset("kitti2012", tmp_path)
    assert isinstance(ds, Kitti2012)
    assert [f.id for f in ds.files] == ["training/000007_10"]
    sample = ds[0]
    _check_sample(sample)
    np.testing.assert_allclose(sample["left"].numpy().transpose(1, 2, 0), left, atol=1e-6)
    np.testing.assert_array_equal(sample["disp"].numpy(), disp)
    with pytest.raises(DataError, match="no kitti2012 samples"):
        Kitti2012(tmp_path, split="test")


def test_list_file_restricts_samples(tmp_path: Path, monkeypatch) -> None:
    _kitti2015(tmp_path)
    listing = tmp_path / "val.txt"
    listing.write_text("training/image_2/000001_10.png  training/image_3/000001_10.png\n", encoding="utf-8")
    assert [f.id for f in Kitti2015(tmp_path, list_file=listing).files] == ["training/000001_10"]
    listing.write_text("training/000000_10\n", encoding="utf-8")  # or by id
    assert [f.id for f in Kitti2015(tmp_path, list_file=listing).files] == ["training/000000_10"]
    listing.write_text("training/image_2/000099_10.png\n", encoding="utf-8")
    with pytest.raises(DataError, match="listed in"):
        Kitti2015(tmp_path, list_file=listing)
    # A path as given, absolute or from the working folder, names its file too.
    image = tmp_path / "training" / "image_2" / "000001_10.png"
    listing.write_text(f"{image}\n", encoding="utf-8")
    assert [f.id for f in Kitti2015(tmp_path, list_file=listing).files] == ["training/000001_10"]
    monkeypatch.chdir(tmp_path.parent)
    listing.write_text(f"{tmp_path.name}/training/image_2/000001_10.png\n", encoding="utf-8")
    assert [f.id for f in Kitti2015(tmp_path.name, list_file=listing).files] == ["training/000001_10"]
    listing.write_text(f"{image}\n./{tmp_path.name}/training/image_2/000001_10.png\n", encoding="utf-8")
    assert Kitti2015(tmp_path.name, list_file=listing).unlisted == []  # one file spelled two ways
    # Entries that name nothing are told, never silently dropped.
    listing.write_text("training/000000_10\ntraining/000009_10\ntrainig/000001_10\n", encoding="utf-8")
    dataset = Kitti2015(tmp_path, list_file=listing)
    assert [f.id for f in dataset.files] == ["training/000000_10"]
    assert dataset.unlisted == ["training/000009_10", "trainig/000001_10"]
    warning = dataset.unlisted_warning(listing)
    assert (
        warning.startswith(f"warning: {listing}: 2 entries name no kitti2015 sample") and "trainig/000001_10" in warning
    )
    listing.write_text("training/000000_10\n", encoding="utf-8")
    assert Kitti2015(tmp_path, list_file=listing).unlisted_warning(listing) is None


# -------------------------------------------------------------------------------------- Middlebury
def _middlebury(root: Path) -> dict[str, Any]:
    """A 2014 scene, MiddEval3 training at Q and H, and a MiddEval3 test scene."""
    out: dict[str, Any] = {}
    scene = root / "Motorcycle-perfect"
    _image(scene / "im0.png")
    _image(scene / "im1.png", seed=1)
    disp = np.random.default_rng(0).uniform(1, 50, (H, W)).astype(np.float32)
    disp[0, :3] = np.inf  # unknown
    write_pfm(scene / "disp0.pfm", disp)
    (scene / "calib.txt").write_text("cam0=[1 0 0; 0 1 0; 0 0 1]\ndoffs=0\nbaseline=193.0\nndisp=270\n")
    out["Motorcycle-perfect"] = disp
    for res in ("Q", "H"):
        scene = root / "MiddEval3" / f"training{res}" / "Adirondack"
        _image(scene / "im0.png")
        _image(scene / "im1.png", seed=1)
        disp = np.random.default_rng(1).uniform(1, 50, (H, W)).astype(np.float32)
        disp[-1, -2:] = np.inf
        write_pfm(scene / "disp0GT.pfm", disp)
        out[f"MiddEval3/training{res}/Adirondack"] = disp
        out["mask"] = _mask(scene / "mask0nocc.png")
    scene = root / "MiddEval3" / "testQ" / "Australia"
    _image(scene / "im0.png")
    _image(scene / "im1.png", seed=1)
    (scene / "calib.txt").write_text("ndisp=not-a-number\n")  # auxiliary: ignored, not an error
    return out


def test_middlebury_discovery_splits_and_extra(tmp_path: Path) -> None:
    _middlebury(tmp_path)
    train = Middlebury(tmp_path)
    assert [f.id for f in train.files] == [
        "MiddEval3/trainingH/Adirondack",
        "MiddEval3/trainingQ/Adirondack",
        "Motorcycle-perfect",
    ]
    extras = {f.id: f.extra for f in train.files}
    assert extras["Motorcycle-perfect"] == {"split": "train", "ndisp": 270}
    assert extras["MiddEval3/trainingQ/Adirondack"] == {"split": "train", "resolution": "Q"}
    test = Middlebury(tmp_path, split="test")
    assert [f.id for f in test.files] == ["MiddEval3/testQ/Australia"]
    _check_sample(test[0], has_gt=False)
    assert len(Middlebury(tmp_path, split="all")) == 4
    # The root may also be MiddEval3/ itself, or one scene folder.
    assert len(Middlebury(tmp_path / "MiddEval3", split="all")) == 3
    assert [f.id for f in Middlebury(tmp_path / "Motorcycle-perfect").files] == ["Motorcycle-perfect"]


def test_middlebury_resolution_filter(tmp_path: Path) -> None:
    _middlebury(tmp_path)
    assert [f.id for f in Middlebury(tmp_path, resolution="Q", split="all").files] == [
        "MiddEval3/testQ/Australia",
        "MiddEval3/trainingQ/Adirondack",
    ]
    assert [f.id for f in Middlebury(tmp_path, resolution="h").files] == ["MiddEval3/trainingH/Adirondack"]
    with pytest.raises(DataError, match="no middlebury samples found for split 'test'"):
        Middlebury(tmp_path, resolution="H", split="test")
    with pytest.raises(ConfigError, match="resolution"):
        Middlebury(tmp_path, resolution="X")


def test_middlebury_gt_inf_and_nonocc_mask(tmp_path: Path) -> None:
    gt = _middlebury(tmp_path)
    ds = Middlebury(tmp_path)
    by_id = {f.id: i for i, f in enumerate(ds.files)}

    sample = ds[by_id["Motorcycle-perfect"]]  # 2014: no mask, inf = unknown
    _check_sample(sample)
    disp = gt["Motorcycle-perfect"]
    np.testing.assert_array_equal(sample["valid"].numpy(), np.isfinite(disp))
    np.testing.assert_array_equal(sample["disp"].numpy(), np.where(np.isfinite(disp), disp, 0))
    assert sample["meta"]["ndisp"] == 270

    sample = ds[by_id["MiddEval3/trainingQ/Adirondack"]]  # MiddEval3: only 255 in mask0nocc is evaluated
    _check_sample(sample)
    disp = gt["MiddEval3/trainingQ/Adirondack"]
    np.testing.assert_array_equal(sample["valid"].numpy(), np.isfinite(disp) & gt["mask"])
    assert not bool(sample["valid"][:4].any())  # unknown and occluded rows

    sample = Middlebury(tmp_path, max_disp=25)[by_id["MiddEval3/trainingQ/Adirondack"]]
    np.testing.assert_array_equal(sample["valid"].numpy(), np.isfinite(disp) & gt["mask"] & (disp < 25))


def test_middlebury_training_without_gt_is_listed(tmp_path: Path) -> None:
    _middlebury(tmp_path)
    missing = tmp_path / "MiddEval3" / "trainingQ" / "Adirondack" / "disp0GT.pfm"
    missing.unlink()
    ds = Middlebury(tmp_path, resolution="Q")
    assert ds.files[0].disp == missing
    with pytest.raises(DataError, match="file does not exist") as err:
        ds[0]
    assert err.value.path == missing


def test_middlebury_through_a_link_and_a_missing_mask(tmp_path: Path) -> None:
    _middlebury(tmp_path)
    (tmp_path / "myQ").symlink_to(tmp_path / "MiddEval3" / "trainingQ")  # a link named otherwise
    linked = Middlebury(tmp_path / "myQ", resolution="Q")
    assert [f.id for f in linked.files] == ["Adirondack"] and linked.files[0].extra["resolution"] == "Q"
    # MiddEval3 training always ships its mask: a missing one is named, never scored as "no mask".
    mask = tmp_path / "MiddEval3" / "trainingQ" / "Adirondack" / "mask0nocc.png"
    mask.unlink()
    with pytest.raises(DataError, match="file does not exist") as err:
        Middlebury(tmp_path, resolution="Q")[0]
    assert err.value.path == mask


# ------------------------------------------------------------------------------------------- ETH3D
def _eth3d(root: Path) -> dict[str, np.ndarray]:
    gt = {}
    for scene, gt_dir in (
        ("delivery_area_1l", root / "two_view_training_gt" / "delivery_area_1l"),  # separate _gt tree
        ("electro_1l", root / "two_view_training" / "electro_1l"),  # GT unpacked beside the images
    ):
        _gray(root / "two_view_training" / scene / "im0.png")
        _gray(root / "two_view_training" / scene / "im1.png", seed=1)
        disp = np.random.default_rng(5).uniform(0.5, 30, (H, W)).astype(np.float32)
        disp[H - 1] = np.inf
        write_pfm(gt_dir / "disp0GT.pfm", disp)
        gt[scene] = disp
        gt["mask"] = _mask(gt_dir / "mask0nocc.png")
    _gray(root / "two_view_test" / "lakeside_1l" / "im0.png")
    _gray(root / "two_view_test" / "lakeside_1l" / "im1.png", seed=1)
    return gt


def test_eth3d_splits_gt_folders_and_gray(tmp_path: Path) -> None:
    gt = _eth3d(tmp_path)
    train = ETH3D(tmp_path)
    assert [f.id for f in train.files] == ["two_view_training/delivery_area_1l", "two_view_training/electro_1l"]
    assert train.files[0].disp == tmp_path / "two_view_training_gt" / "delivery_area_1l" / "disp0GT.pfm"
    assert train.files[1].mask == tmp_path / "two_view_training" / "electro_1l" / "mask0nocc.png"
    for index, files in enumerate(train.files):
        sample = train[index]
        _check_sample(sample)
        left = sample["left"]
        assert torch.equal(left[0], left[1]) and torch.equal(left[1], left[2])  # gray repeated
        disp = gt[files.id.split("/")[1]]
        np.testing.assert_array_equal(sample["valid"].numpy(), np.isfinite(disp) & gt["mask"])
        np.testing.assert_array_equal(sample["disp"].numpy(), np.where(np.isfinite(disp), disp, 0))
    test = ETH3D(tmp_path, split="test")
    assert [f.id for f in test.files] == ["two_view_test/lakeside_1l"]
    _check_sample(test[0], has_gt=False)
    assert len(ETH3D(tmp_path, split="all")) == 3
    _gray(tmp_path / "two_view_testing" / "playground_1l" / "im0.png")  # RAFT-Stereo's name for the folder
    _gray(tmp_path / "two_view_testing" / "playground_1l" / "im1.png", seed=1)
    assert [f.id for f in ETH3D(tmp_path, split="test").files][-1] == "two_view_testing/playground_1l"
    for name in ("im0.png", "im1.png"):  # the same scene unpacked into both test folders counts once
        _gray(tmp_path / "two_view_testing" / "lakeside_1l" / name)
    ids = [f.id for f in ETH3D(tmp_path, split="test").files]
    assert ids == ["two_view_test/lakeside_1l", "two_view_testing/playground_1l"]
    (tmp_path / "list.txt").write_text("two_view_testing/lakeside_1l\n")  # named by its other folder
    listed = ETH3D(tmp_path, split="test", list_file=tmp_path / "list.txt")
    assert [f.id for f in listed.files] == ["two_view_test/lakeside_1l"] and not listed.unlisted


def test_eth3d_missing_gt_names_expected_file(tmp_path: Path) -> None:
    _eth3d(tmp_path)
    _gray(tmp_path / "two_view_training" / "terrains_1l" / "im0.png")
    _gray(tmp_path / "two_view_training" / "terrains_1l" / "im1.png")
    ds = ETH3D(tmp_path)
    assert [f.id for f in ds.files][-1] == "two_view_training/terrains_1l"
    with pytest.raises(DataError, match="file does not exist") as err:
        ds[2]
    assert err.value.path == tmp_path / "two_view_training_gt" / "terrains_1l" / "disp0GT.pfm"


def test_eth3d_missing_mask_and_dead_links_are_named_on_load(tmp_path: Path) -> None:
    _eth3d(tmp_path)
    mask = tmp_path / "two_view_training" / "electro_1l" / "mask0nocc.png"
    mask.unlink()
    ds = ETH3D(tmp_path)
    with pytest.raises(DataError, match="file does not exist") as err:
        ds[1]
    assert err.value.path == mask
    dead = tmp_path / "two_view_test" / "lakeside_1l" / "im0.png"
    dead.unlink()
    dead.symlink_to(tmp_path / "nowhere.png")
    test = ETH3D(tmp_path, split="test")
    with pytest.raises(DataError, match=r"a broken link .*nowhere\.png does not exist") as err:
        test[0]
    assert err.value.path == dead


def test_kitti_lists_a_frame_whose_image_is_a_dead_link(tmp_path: Path) -> None:
    _kitti2015(tmp_path)
    dead = tmp_path / "training" / "image_2" / "000001_10.png"
    dead.unlink()
    dead.symlink_to(tmp_path / "nowhere.png")
    ds = Kitti2015(tmp_path, split="train")
    assert "training/000001_10" in [f.id for f in ds.files]
    with pytest.raises(DataError, match=r"a broken link .*nowhere\.png does not exist") as err:
        ds[[f.id for f in ds.files].index("training/000001_10")]
    assert err.value.path == dead


# ------------------------------------------------------------------------------------------- pairs
def test_pairs_csv_formats_ids_and_empty_cells(tmp_path: Path) -> None:
    pairs_dir = tmp_path / "mine"
    for i in range(4):
        _image(pairs_dir / f"p{i}" / "im0.png", seed=i)
        _image(pairs_dir / f"p{i}" / "im1.png", seed=i + 10)
    d_pfm = np.random.default_rng(0).uniform(1, 40, (H, W)).astype(np.float32)
    d_npy = np.random.default_rng(1).uniform(1, 40, (H, W)).astype(np.float32)
    d_png = (np.random.default_rng(2).integers(100, 4000, (H, W)) / 100.0).astype(np.float32)
    write_pfm(pairs_dir / "p0" / "disp.pfm", d_pfm)
    np.save(pairs_dir / "p1" / "disp.npy", d_npy)
    write_png_disparity(pairs_dir / "p2" / "disp.png", d_png, scale=100.0)
    mask = _mask(pairs_dir / "p0" / "mask.png")
    absolute_left = (pairs_dir / "p1" / "im0.png").resolve()
    csv_path = pairs_dir / "pairs.csv"
    csv_path.write_text(
        "left,right,disp,mask\n"
        "p0/im0.png,p0/im1.png,p0/disp.pfm,p0/mask.png\n"
        "\n"
        f"{absolute_left},p1/im1.png,p1/disp.npy,\n"
        "p2/im0.png, p2/im1.png ,p2/disp.png,\n"
        "p3/im0.png,p3/im1.png,,\n",
        encoding="utf-8",
    )
    ds = Pairs(csv_path, png_scale=100.0)
    assert [f.id for f in ds.files] == ["0000-im0", "0001-im0", "0002-im0", "0003-im0"]
    assert ds.files[1].left == absolute_left
    assert ds.files[3].disp is None and ds.files[1].mask is None
    samples = [ds[i] for i in range(4)]
    for sample in samples[:3]:
        _check_sample(sample)
    _check_sample(samples[3], has_gt=False)
    np.testing.assert_array_equal(samples[0]["disp"].numpy(), d_pfm)
    np.testing.assert_array_equal(samples[0]["valid"].numpy(), mask)
    np.testing.assert_array_equal(samples[1]["disp"].numpy(), d_npy)
    np.testing.assert_allclose(samples[2]["disp"].numpy(), d_png, rtol=0, atol=1e-5)
    assert bool(samples[1]["valid"].all()) and bool(samples[2]["valid"].all())
    # Default KITTI scale reads the same PNG 100/256 as large: the option really reaches the reader.
    np.testing.assert_allclose(Pairs(csv_path)[2]["disp"].numpy(), d_png * 100 / 256, atol=1e-5)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("left,right,disp,conf\na.png,b.png,c.pfm,d.png\n", "unknown column 'conf'"),
        ("left,disp\na.png,c.pfm\n", "line 1: header has no right"),
        ("left,right,left\na.png,b.png,c.png\n", "repeated column"),
        ("left,right\na.png,b.png\n\na.png,b.png,c.pfm\n", "line 4: 3 cells but the header has 2"),
        ("left,right\na.png,\n", "line 2: empty 'right' cell"),
        ('left,right\n"a.png,b.png\n', "malformed CSV"),
        ("\n\n", "empty CSV"),
    ],
)
def test_pairs_malformed_csv(tmp_path: Path, text: str, match: str) -> None:
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=match) as err:
        Pairs(csv_path)
    assert err.value.path == csv_path


def test_pairs_root_must_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CSV file") as err:
        Pairs(tmp_path)
    assert err.value.path == tmp_path
    with pytest.raises(ConfigError, match="png_scale"):
        Pairs(tmp_path, png_scale=0)


# -------------------------------------------------------------------------------------- bad inputs
def _one_pair(tmp_path: Path, right_size: tuple[int, int] = (H, W), disp_size: tuple[int, int] = (H, W)) -> Path:
    _image(tmp_path / "l.png")
    _image(tmp_path / "r.png", seed=1, size=right_size)
    write_pfm(tmp_path / "d.pfm", np.ones(disp_size, np.float32))
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("left,right,disp\nl.png,r.png,d.pfm\n", encoding="utf-8")
    return csv_path


def test_left_right_size_mismatch_names_right(tmp_path: Path) -> None:
    ds = Pairs(_one_pair(tmp_path, right_size=(H, W + 2)))
    with pytest.raises(DataError, match=r"right image is 8x14 \(HxW\)") as err:
        ds[0]
    assert err.value.path == tmp_path / "r.png"


def test_disparity_size_mismatch_names_disp(tmp_path: Path) -> None:
    ds = Pairs(_one_pair(tmp_path, disp_size=(H - 1, W)))
    with pytest.raises(DataError, match=r"disparity is 7x12 \(HxW\)") as err:
        ds[0]
    assert err.value.path == tmp_path / "d.pfm"


def test_missing_right_image(tmp_path: Path) -> None:
    _kitti2015(tmp_path)
    missing = tmp_path / "training" / "image_3" / "000001_10.png"
    missing.unlink()
    ds = Kitti2015(tmp_path)
    assert len(ds) == 2  # still listed, so `data check` can report it
    with pytest.raises(DataError, match="file does not exist") as err:
        ds[1]
    assert err.value.path == missing
    assert str(missing) in str(err.value)


def test_truncated_pfm(tmp_path: Path) -> None:
    ds = Pairs(_one_pair(tmp_path))
    pfm = tmp_path / "d.pfm"
    pfm.write_bytes(pfm.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated") as err:
        ds[0]
    assert err.value.path == pfm


def test_nan_and_inf_gt_are_masked_not_errors(tmp_path: Path) -> None:
    ds = Pairs(_one_pair(tmp_path))
    disp = np.full((H, W), 5.0, np.float32)
    disp[0, 0], disp[1, 1], disp[2, 2], disp[3, 3] = np.nan, np.inf, -np.inf, 0.0
    write_pfm(tmp_path / "d.pfm", disp)
    sample = ds[0]
    _check_sample(sample)
    expected = np.ones((H, W), bool)
    expected[[0, 1, 2, 3], [0, 1, 2, 3]] = False
    np.testing.assert_array_equal(sample["valid"].numpy(), expected)
    assert bool(torch.isfinite(sample["disp"]).all())


@pytest.mark.parametrize("name", ["sceneflow", "kitti2012", "kitti2015", "middlebury", "eth3d", "pairs"])
def test_empty_root_names_root_and_layout(tmp_path: Path, name: str) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    if name == "pairs":
        root = root / "pairs.csv"
        root.write_text("left,right\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        build_dataset(name, root)
    assert err.value.path == root
    message = str(err.value)
    assert str(root) in message and f"no {name} samples" in message
    assert DATASETS.get(name).layout in message


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="root does not exist"):
        Middlebury(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["kitti2012", "kitti2015", "middlebury", "eth3d"])
def test_unknown_split(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="split"):
        build_dataset(name, tmp_path, split="validation")


# ------------------------------------------------------------------------------------ real data
def test_real_middlebury_motorcycle_through_pairs(tmp_path: Path) -> None:
    """The real Middlebury 2014 Motorcycle pair (quarter size, shipped with scikit-image, no network)."""
    skimage_data = pytest.importorskip("skimage.data")
    left, right, disp = skimage_data.stereo_motorcycle()
    Image.fromarray(left).save(tmp_path / "im0.png")
    Image.fromarray(right).save(tmp_path / "im1.png")
    write_pfm(tmp_path / "disp0.pfm", disp)
    csv_path = tmp_path / "motorcycle.csv"
    csv_path.write_text("left,right,disp\nim0.png,im1.png,disp0.pfm\n", encoding="utf-8")

    sample = Pairs(csv_path)[0]
    height, width = disp.shape
    assert sample["left"].shape == (3, height, width) and sample["valid"].shape == (height, width)
    np.testing.assert_array_equal((sample["left"].numpy() * 255).round().astype(np.uint8), left.transpose(2, 0, 1))

    known = np.isfinite(disp)
    valid = sample["valid"].numpy()
    np.testing.assert_array_equal(valid, known & (disp > 0))
    assert not valid[np.isinf(disp)].any()
    assert 0.06 < 1 - valid.mean() < 0.09  # about 7 % of the pixels have no GT
    np.testing.assert_array_equal(sample["disp"].numpy()[valid], disp[valid])

    # A zero-disparity guess is off by the GT itself: EPE = mean valid GT (tens of pixels).
    expected = float(np.abs(disp[known].astype(np.float64)).mean())
    assert expected > 20
    zero = torch.zeros_like(sample["disp"])
    epe_torch = float((zero - sample["disp"]).abs()[sample["valid"]].double().mean())
    assert math.isclose(epe_torch, expected, rel_tol=1e-9)
    metrics = pytest.importorskip("stereodistill.evaluate.metrics")
    result = metrics.compute_metrics(zero, sample["disp"], sample["valid"])
    assert math.isclose(result["epe"], expected, rel_tol=1e-9)


def test_a_readers_options_are_checked_by_name_and_type_before_it_reads(tmp_path, capsys):
    from stereodistill.cli.main import main
    from stereodistill.data.datasets import build_dataset
    from stereodistill.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^pairs.options: unknown option 'png_scal' \(did you mean 'png_scale'\?\)"):
        build_dataset("pairs", tmp_path / "absent.csv", png_scal=2)  # before the missing root is even looked at
    with pytest.raises(ConfigError, match=r"^pairs.options.png_scale: expected a number, got 'x'"):
        build_dataset("pairs", tmp_path / "absent.csv", png_scale="x")
    assert main(["data", "check", "--dataset", "sceneflow", "--root", str(tmp_path), "--option", "foo=1"]) == 2
    err = capsys.readouterr().err
    assert "sceneflow.options: unknown option 'foo'; valid options: pass_, subsets, exclude_file" in err
