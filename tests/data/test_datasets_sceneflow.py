"""SceneFlow reader on miniature copies of the official layouts (merged tree and one folder per subset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stereodistill.data.datasets import SceneFlow, build_dataset
from stereodistill.data.formats import write_image, write_pfm
from stereodistill.errors import ConfigError, DataError

H, W = 8, 12

# Frame folders inside frames_<pass>, one or two per subset, as the official archives lay them out.
FT3D_TRAIN = ("TRAIN", "A", "0000")
FT3D_TEST = ("TEST", "B", "0003")
DRIVING = ("15mm_focallength", "scene_forwards", "fast")
MONKAA = ("a_rain_of_stones_x2",)


def _frame(base: Path, inner: tuple[str, ...], number: int, *, pass_: str = "finalpass", seed: int = 0) -> np.ndarray:
    """Write one left/right/disparity frame under ``base`` and return its disparity."""
    rng = np.random.default_rng(seed + number)
    frames = base / f"frames_{pass_}" / Path(*inner)
    write_image(frames / "left" / f"{number:04d}.png", rng.random((H, W, 3)))
    write_image(frames / "right" / f"{number:04d}.png", rng.random((H, W, 3)))
    disp = rng.uniform(0.5, 40.0, (H, W)).astype(np.float32)
    write_pfm(base / "disparity" / Path(*inner) / "left" / f"{number:04d}.pfm", disp)
    return disp


def _merged_tree(root: Path) -> dict[str, np.ndarray]:
    """The PSMNet/GwcNet layout: all three subsets in one frames_finalpass/ + disparity/ tree."""
    gt = {
        "TRAIN/A/0000/0006": _frame(root, FT3D_TRAIN, 6),
        "TRAIN/A/0000/0007": _frame(root, FT3D_TRAIN, 7),
        "TEST/B/0003/0006": _frame(root, FT3D_TEST, 6),
        "15mm_focallength/scene_forwards/fast/0001": _frame(root, DRIVING, 1),
        "a_rain_of_stones_x2/0000": _frame(root, MONKAA, 0),
    }
    (root / "occlusion" / "TRAIN").mkdir(parents=True)  # shipped by some downloads; must be ignored
    return gt


def test_merged_layout_splits_subsets_and_ids(tmp_path: Path) -> None:
    _merged_tree(tmp_path)
    train = SceneFlow(tmp_path)
    assert [f.id for f in train.files] == [
        "15mm_focallength/scene_forwards/fast/0001",
        "TRAIN/A/0000/0006",
        "TRAIN/A/0000/0007",
        "a_rain_of_stones_x2/0000",
    ]
    subsets = {f.id: f.extra["subset"] for f in train.files}
    assert subsets["15mm_focallength/scene_forwards/fast/0001"] == "driving"
    assert subsets["TRAIN/A/0000/0006"] == "flyingthings3d"
    assert subsets["a_rain_of_stones_x2/0000"] == "monkaa"
    assert {f.extra["split"] for f in train.files} == {"train"}

    test = SceneFlow(tmp_path, split="test")
    assert [f.id for f in test.files] == ["TEST/B/0003/0006"]
    assert test.files[0].extra == {"subset": "flyingthings3d", "split": "test"}
    assert len(SceneFlow(tmp_path, split="all")) == 5
    assert len(build_dataset("sceneflow", tmp_path, split="all")) == 5


def test_sample_dict_and_dense_gt_round_trip(tmp_path: Path) -> None:
    gt = _merged_tree(tmp_path)
    ds = SceneFlow(tmp_path, split="all")
    for index, files in enumerate(ds.files):
        sample = ds[index]
        assert set(sample) == {"left", "right", "disp", "valid", "meta"}
        assert sample["left"].shape == sample["right"].shape == (3, H, W)
        assert sample["disp"].shape == sample["valid"].shape == (H, W)
        np.testing.assert_array_equal(sample["disp"].numpy(), gt[files.id])
        assert bool(sample["valid"].all())  # dense GT, no occlusion mask
        assert sample["meta"]["subset"] == files.extra["subset"]
        assert sample["meta"]["id"] == files.id and sample["meta"]["has_gt"] is True


def test_max_disp_masks_large_gt(tmp_path: Path) -> None:
    gt = _merged_tree(tmp_path)
    ds = SceneFlow(tmp_path, split="test", max_disp=20)
    sample = ds[0]
    np.testing.assert_array_equal(sample["valid"].numpy(), gt["TEST/B/0003/0006"] < 20)


def test_subset_filter(tmp_path: Path) -> None:
    _merged_tree(tmp_path)
    only_driving = SceneFlow(tmp_path, subsets=("driving",))
    assert [f.extra["subset"] for f in only_driving.files] == ["driving"]
    assert len(SceneFlow(tmp_path, subsets="monkaa")) == 1
    assert len(SceneFlow(tmp_path, subsets=("FlyingThings3D", "monkaa"), split="all")) == 4
    with pytest.raises(DataError, match="no sceneflow samples"):
        SceneFlow(tmp_path, subsets=("driving",), split="test")  # Driving has no test frames


@pytest.mark.parametrize(
    ("folders", "prefixes"),
    [
        (("FlyingThings3D", "Driving", "Monkaa"), ("FlyingThings3D/", "Driving/", "Monkaa/")),
        (("flyingthings3d", "driving", "monkaa"), ("flyingthings3d/", "driving/", "monkaa/")),
        (("SceneFlow/flyingthings3d", "SceneFlow/driving", "monkaa"), ("SceneFlow/flyingthings3d/", "", "monkaa/")),
    ],
)
def test_per_subset_layouts(tmp_path: Path, folders: tuple[str, str, str], prefixes: tuple[str, str, str]) -> None:
    ft3d, driving, monkaa = (tmp_path / folder for folder in folders)
    _frame(ft3d, FT3D_TRAIN, 6)
    _frame(ft3d, FT3D_TEST, 6)
    _frame(monkaa, MONKAA, 0)
    if prefixes[1]:
        _frame(driving, DRIVING, 1)
    else:  # mixed: Driving merged at the root, the others in subfolders
        _frame(tmp_path, DRIVING, 1)
    ds = SceneFlow(tmp_path, split="all")
    by_id = {f.id: f.extra for f in ds.files}
    assert by_id == {
        f"{prefixes[0]}TRAIN/A/0000/0006": {"subset": "flyingthings3d", "split": "train"},
        f"{prefixes[0]}TEST/B/0003/0006": {"subset": "flyingthings3d", "split": "test"},
        f"{prefixes[1]}15mm_focallength/scene_forwards/fast/0001": {"subset": "driving", "split": "train"},
        f"{prefixes[2]}a_rain_of_stones_x2/0000": {"subset": "monkaa", "split": "train"},
    }
    assert len(SceneFlow(tmp_path, split="test")) == 1
    assert ds[0]["disp"].shape == (H, W)


def test_frames_three_levels_down_are_not_searched(tmp_path: Path) -> None:
    _frame(tmp_path / "a" / "b" / "c", MONKAA, 0)
    with pytest.raises(DataError, match="expected frames_finalpass"):
        SceneFlow(tmp_path)


def test_cleanpass_option(tmp_path: Path) -> None:
    _merged_tree(tmp_path)
    _frame(tmp_path, MONKAA, 5, pass_="cleanpass")
    clean = SceneFlow(tmp_path, pass_="cleanpass")
    assert [f.id for f in clean.files] == ["a_rain_of_stones_x2/0005"]
    assert "frames_cleanpass" in clean.files[0].left.parts
    assert clean[0]["left"].shape == (3, H, W)
    with pytest.raises(ConfigError, match="pass_"):
        SceneFlow(tmp_path, pass_="final")
    clean_only = tmp_path / "clean_only"
    _frame(clean_only, MONKAA, 5, pass_="cleanpass")
    with pytest.raises(DataError, match="frames_cleanpass/ is here: read it with --option pass_=cleanpass"):
        SceneFlow(clean_only)
    with pytest.raises(DataError) as nothing:  # this pass is there, the split has nothing: no advice to switch
        SceneFlow(tmp_path, subsets=["driving"], exclude_file=None, split="test")
    assert "pass_=" not in str(nothing.value)


def test_exclude_file_drops_listed_frames(tmp_path: Path) -> None:
    _merged_tree(tmp_path)
    exclude = tmp_path / "all_unused_files.txt"
    # As in FlyingThings3D's official list: paths relative to frames_<pass>; a right-only entry counts too.
    exclude.write_text("TRAIN/A/0000/left/0006.png\nTEST/B/0003/right/0006.png\n", encoding="utf-8")
    ds = SceneFlow(tmp_path, split="all", exclude_file=exclude)
    assert [f.id for f in ds.files] == [
        "15mm_focallength/scene_forwards/fast/0001",
        "TRAIN/A/0000/0007",
        "a_rain_of_stones_x2/0000",
    ]
    with pytest.raises(DataError, match="list file does not exist"):
        SceneFlow(tmp_path, exclude_file=tmp_path / "missing.txt")


def test_list_file_restricts_samples(tmp_path: Path) -> None:
    _merged_tree(tmp_path)
    listing = tmp_path / "subset.txt"
    listing.write_text("# a comment\nframes_finalpass/TRAIN/A/0000/left/0007.png\na_rain_of_stones_x2/0000\n")
    ds = SceneFlow(tmp_path, list_file=listing)
    assert [f.id for f in ds.files] == ["TRAIN/A/0000/0007", "a_rain_of_stones_x2/0000"]


def test_missing_right_and_disparity_are_listed_then_named_on_load(tmp_path: Path) -> None:
    _merged_tree(tmp_path)
    right = tmp_path / "frames_finalpass" / "TRAIN" / "A" / "0000" / "right" / "0007.png"
    disp = tmp_path / "disparity" / "a_rain_of_stones_x2" / "left" / "0000.pfm"
    right.unlink()
    disp.unlink()
    ds = SceneFlow(tmp_path)
    ids = [f.id for f in ds.files]
    assert "TRAIN/A/0000/0007" in ids and "a_rain_of_stones_x2/0000" in ids
    with pytest.raises(DataError, match="file does not exist") as err:
        ds[ids.index("TRAIN/A/0000/0007")]
    assert err.value.path == right
    with pytest.raises(DataError, match="file does not exist") as err:
        ds[ids.index("a_rain_of_stones_x2/0000")]
    assert err.value.path == disp


def test_discovery_never_opens_images(tmp_path: Path) -> None:
    """Construction must stay cheap on ~40k frames: a garbage 'image' only fails when loaded."""
    _merged_tree(tmp_path)
    bad = tmp_path / "frames_finalpass" / "a_rain_of_stones_x2" / "left" / "0000.png"
    bad.write_bytes(b"not a png")
    ds = SceneFlow(tmp_path)
    with pytest.raises(DataError, match="not a readable image") as err:
        ds[[f.id for f in ds.files].index("a_rain_of_stones_x2/0000")]
    assert err.value.path == bad


def test_bad_options(tmp_path: Path) -> None:
    _merged_tree(tmp_path)
    with pytest.raises(ConfigError, match="split"):
        SceneFlow(tmp_path, split="val")
    with pytest.raises(ConfigError, match="subsets"):
        SceneFlow(tmp_path, subsets=("things",))
