"""The synthetic generator: determinism, ranges, exact geometry, occlusion, dataset and files on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.measure import label

from stereodistill.data.formats import read_image, read_mask, read_pfm
from stereodistill.data.synthetic import SynthConfig, SyntheticPair, SyntheticStereo, generate_pair, write_synthetic
from stereodistill.data.synthetic.generate import pair_bytes
from stereodistill.data.synthetic.writer import pair_seed
from stereodistill.errors import ConfigError, DataError

H, W, MAX_DISP = 64, 128, 24
CONFIG = SynthConfig(height=H, width=W, max_disp=MAX_DISP)
CLEAN = SynthConfig(height=H, width=W, max_disp=MAX_DISP, photometric=False)
SEEDS = range(6)


def _sample_rows(image: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample ``image`` (H×W or H×W×C) at fractional columns ``x`` (H×W) by linear interpolation."""
    width = image.shape[1]
    x0 = np.clip(np.floor(x).astype(int), 0, width - 2)
    frac = np.clip(x - x0, 0.0, 1.0)
    rows = np.arange(image.shape[0])[:, None]
    if image.ndim == 3:
        frac = frac[..., None]
    return image[rows, x0] * (1 - frac) + image[rows, x0 + 1] * frac


def _warp_error(pair: SyntheticPair, disp: np.ndarray) -> np.ndarray:
    """Per-pixel mean abs difference between the left image and the right image warped by ``disp``."""
    x_right = np.arange(W)[None, :] - disp
    return np.abs(_sample_rows(pair.right, x_right) - pair.left).mean(axis=-1)


CURVED = SynthConfig(height=H, width=W, max_disp=MAX_DISP, photometric=False, curved_prob=1.0)


@pytest.fixture(scope="module", params=["planar", "curved"])
def clean_pairs(request: pytest.FixtureRequest) -> list[SyntheticPair]:
    """Scenes without photometric noise; the geometry tests run on planar and on curved objects."""
    config = CLEAN if request.param == "planar" else CURVED
    return [generate_pair(config, seed) for seed in SEEDS]


# -------------------------------------------------------------------------------- basics
def test_same_seed_gives_identical_arrays_and_other_seeds_differ() -> None:
    a, b, c = generate_pair(CONFIG, (7, 3)), generate_pair(CONFIG, (7, 3)), generate_pair(CONFIG, (7, 4))
    for name in ("left", "right", "disp", "disp_right", "occlusion"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.left, c.left)
    assert not np.array_equal(a.disp, c.disp)


@pytest.mark.parametrize("seed", SEEDS)
def test_shapes_dtypes_and_ranges(seed: int) -> None:
    pair = generate_pair(CONFIG, seed)
    for image in (pair.left, pair.right):
        assert image.shape == (H, W, 3) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0
    for disp in (pair.disp, pair.disp_right):
        assert disp.shape == (H, W) and disp.dtype == np.float32
        assert np.isfinite(disp).all()
        assert disp.min() > 0 and disp.max() < MAX_DISP
    assert pair.occlusion.shape == (H, W) and pair.occlusion.dtype == bool


def test_bad_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_disp"):
        SynthConfig(max_disp=2)
    with pytest.raises(ConfigError, match="max_slope"):
        SynthConfig(max_slope=0.9)
    with pytest.raises(ConfigError, match="n_objects"):
        SynthConfig(n_objects=-1)


def test_config_round_trips_through_a_dict() -> None:
    from dataclasses import asdict

    assert SynthConfig.from_dict(asdict(CONFIG)) == CONFIG
    with pytest.raises(ConfigError, match="bogus"):
        SynthConfig.from_dict({**asdict(CONFIG), "bogus": 1})


# ------------------------------------------------------------------------------ geometry
def test_right_image_warped_by_left_gt_reproduces_left(clean_pairs: list[SyntheticPair]) -> None:
    """Exact geometry: warping right by the GT matches left; a disparity off by ±1 px clearly does not."""
    for pair in clean_pairs:
        visible = ~pair.occlusion
        exact = _warp_error(pair, pair.disp)[visible].mean()
        off_by_one = min(_warp_error(pair, pair.disp + s)[visible].mean() for s in (-1.0, 1.0))
        assert exact < 0.012, exact
        assert exact < 0.4 * off_by_one, (exact, off_by_one)
        # Occluded pixels (that stay in frame) see another surface in the right view.
        in_frame = pair.occlusion & (np.arange(W)[None, :] - pair.disp >= 0)
        if in_frame.sum() > 20:
            assert _warp_error(pair, pair.disp)[in_frame].mean() > 3 * exact


def test_occlusion_agrees_with_right_disparity(clean_pairs: list[SyntheticPair]) -> None:
    """Visible left pixels land on a right pixel of the same disparity; occluded ones on a closer surface."""
    rows = np.arange(H)[:, None]
    for pair in clean_pairs:
        x_right = np.arange(W)[None, :] - pair.disp
        assert pair.occlusion[x_right < 0].all()  # out of the right frame
        nearest = pair.disp_right[rows, np.clip(np.rint(x_right).astype(int), 0, W - 1)]
        visible = ~pair.occlusion
        assert (np.abs(nearest - pair.disp)[visible] < 0.3).mean() > 0.98
        hidden = pair.occlusion & (x_right >= 0)
        if hidden.sum() > 20:
            assert (nearest - pair.disp)[hidden].min() > -0.3  # never a farther surface
            assert ((nearest - pair.disp)[hidden] > 0.3).mean() > 0.9


def test_right_disparity_is_consistent_with_left_view(clean_pairs: list[SyntheticPair]) -> None:
    """Every right pixel is seen from the left at x + d_r with the same disparity (the scene is opaque)."""
    for pair in clean_pairs:
        x_left = np.arange(W)[None, :] + pair.disp_right
        inside = x_left <= W - 1
        nearest = pair.disp[np.arange(H)[:, None], np.clip(np.rint(x_left).astype(int), 0, W - 1)]
        close = np.abs(nearest - pair.disp_right) < 0.3
        # Right pixels are either seen in the left view or hidden there by something closer.
        assert (close | (nearest > pair.disp_right))[inside].mean() > 0.99
        assert close[inside].mean() > 0.8


# ------------------------------------------------------------------------------- content
def _smooth_regions(disp: np.ndarray, min_pixels: int = 20) -> int:
    """Number of regions bounded by disparity jumps (> 0.6 px between neighbours; slopes are ≤ 0.25)."""
    edges = np.zeros(disp.shape, bool)
    edges[:, 1:] |= np.abs(np.diff(disp, axis=1)) > 0.6
    edges[1:, :] |= np.abs(np.diff(disp, axis=0)) > 0.6
    sizes = np.bincount(label(~edges, connectivity=1).ravel())[1:]
    return int((sizes >= min_pixels).sum())


def test_scenes_have_several_layers_and_occlusions(clean_pairs: list[SyntheticPair]) -> None:
    regions = [_smooth_regions(pair.disp) for pair in clean_pairs]
    assert min(regions) >= 3 and np.mean(regions) >= 4, regions
    for pair in clean_pairs:
        assert pair.occlusion.any()
        assert np.unique(np.round(pair.disp)).size >= 4
    in_frame = [(p.occlusion & (np.arange(W)[None, :] - p.disp >= 0)).mean() for p in clean_pairs]
    assert np.mean(in_frame) > 0.01  # occlusions by objects, not only the frame border
    # Textured: most of each image is not flat.
    for pair in clean_pairs:
        gradient = np.abs(np.diff(pair.left, axis=1)).mean(axis=-1)
        assert (gradient > 0.002).mean() > 0.3


def test_photometric_differences_between_views() -> None:
    clean_pairs = [generate_pair(CLEAN, seed) for seed in SEEDS]
    photo = [generate_pair(CONFIG, seed) for seed in SEEDS]
    for with_photo, without in zip(photo, clean_pairs, strict=True):
        assert np.array_equal(with_photo.disp, without.disp)  # same scene
        assert not np.array_equal(with_photo.left, without.left)
        visible = ~with_photo.occlusion
        error = _warp_error(with_photo, with_photo.disp)[visible].mean()
        assert _warp_error(without, without.disp)[visible].mean() < error < 0.2

    def channel_gap(pair: SyntheticPair) -> float:
        return float(np.abs(pair.left.mean(axis=(0, 1)) - pair.right.mean(axis=(0, 1))).max())

    assert np.mean([channel_gap(p) for p in photo]) > 2 * np.mean([channel_gap(p) for p in clean_pairs])


def test_no_objects_gives_a_slanted_background_only() -> None:
    pair = generate_pair(SynthConfig(height=H, width=W, max_disp=MAX_DISP, n_objects=0, photometric=False), 1)
    assert _smooth_regions(pair.disp) == 1
    assert pair.disp.max() < 0.35 * MAX_DISP
    assert np.array_equal(pair.occlusion, np.arange(W)[None, :] - pair.disp < 0)


# ------------------------------------------------------------------------------- dataset
def test_dataset_returns_sample_dicts_independent_of_access_order() -> None:
    forward = SyntheticStereo(4, CONFIG, seed=5, max_disp=20)
    backward = SyntheticStereo(4, CONFIG, seed=5, max_disp=20, cache=False)
    assert len(forward) == 4
    samples = [forward[i] for i in range(4)]
    for i in reversed(range(4)):
        other = backward[i]
        for key in ("left", "right", "disp", "valid", "occlusion"):
            assert torch.equal(samples[i][key], other[key]), key
    sample = samples[2]
    assert set(sample) >= {"left", "right", "disp", "valid", "meta", "occlusion"}
    assert sample["left"].shape == (3, H, W) and sample["left"].dtype == torch.float32
    assert sample["right"].shape == (3, H, W) and sample["right"].dtype == torch.float32
    assert sample["disp"].shape == (H, W) and sample["disp"].dtype == torch.float32
    assert sample["valid"].dtype == torch.bool and sample["occlusion"].dtype == torch.bool
    assert sample["occlusion"].shape == (H, W)
    assert sample["meta"]["dataset"] == "synthetic" and sample["meta"]["id"] == "000002"
    json.dumps(sample["meta"])  # JSON-friendly
    pair = generate_pair(CONFIG, (5, 2))
    assert np.array_equal(sample["disp"].numpy(), pair.disp)
    assert np.array_equal(sample["valid"].numpy(), pair.disp < 20)
    assert np.array_equal(sample["occlusion"].numpy(), pair.occlusion)
    assert torch.equal(forward[-1]["left"], samples[3]["left"])
    with pytest.raises(IndexError):
        forward[4]


def test_dataset_keeps_pairs_only_up_to_its_memory_budget() -> None:
    one = pair_bytes(generate_pair(CONFIG, (5, 0)))
    bounded = SyntheticStereo(6, CONFIG, seed=5, max_disp=20, cache_bytes=2 * one + one // 2)
    unbounded = SyntheticStereo(6, CONFIG, seed=5, max_disp=20)
    for _ in range(2):  # the second pass re-renders what the budget did not keep
        for i in range(6):
            assert torch.equal(bounded[i]["left"], unbounded[i]["left"])
    assert sorted(bounded._pairs) == [0, 1] and bounded.kept_pairs == 2
    assert unbounded.kept_pairs == 6
    assert bounded.pair(0) is bounded.pair(0) and bounded.pair(3) is not bounded.pair(3)


def test_dataset_works_with_a_dataloader() -> None:
    loader = torch.utils.data.DataLoader(SyntheticStereo(3, CONFIG), batch_size=3)
    batch = next(iter(loader))
    assert batch["left"].shape == (3, 3, H, W) and batch["occlusion"].shape == (3, H, W)


# ------------------------------------------------------------------------------- on disk
def test_write_synthetic_layout_round_trip_and_manifest(tmp_path) -> None:
    calls: list[tuple[int, int]] = []
    lefts = write_synthetic(tmp_path, 12, CONFIG, seed=3, split="train", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (12, 12) and len(calls) == 12
    assert lefts[0] == tmp_path / "frames_finalpass/TRAIN/A/0000/left/0000.png"
    assert lefts[11] == tmp_path / "frames_finalpass/TRAIN/A/0001/left/0001.png"
    test_lefts = write_synthetic(tmp_path, 2, CONFIG, seed=3, split="test")
    assert test_lefts[1] == tmp_path / "frames_finalpass/TEST/A/0000/left/0001.png"

    pair = generate_pair(CONFIG, (3, 0, 11))
    scene = "TRAIN/A/0001"
    assert np.array_equal(read_pfm(tmp_path / f"disparity/{scene}/left/0001.pfm"), pair.disp)
    assert np.array_equal(read_pfm(tmp_path / f"disparity/{scene}/right/0001.pfm"), pair.disp_right)
    quantum = 0.5 / 255 + 1e-6  # 8-bit PNG rounding
    for view, image in (("left", pair.left), ("right", pair.right)):
        assert np.abs(read_image(tmp_path / f"frames_finalpass/{scene}/{view}/0001.png") - image).max() <= quantum
    occlusion = tmp_path / f"occlusion/{scene}/left/0001.png"
    assert np.array_equal(read_mask(occlusion), pair.occlusion)  # 255 = occluded

    # Splits never share a pair.
    test_disp = read_pfm(tmp_path / "disparity/TEST/A/0000/left/0000.pfm")
    assert np.array_equal(test_disp, generate_pair(CONFIG, pair_seed(3, "test", 0)).disp)
    assert not np.array_equal(test_disp, generate_pair(CONFIG, (3, 0, 0)).disp)

    manifest = json.loads((tmp_path / "synth.json").read_text())
    assert manifest["train"]["n_pairs"] == 12 and manifest["train"]["seed"] == 3
    assert manifest["test"]["n_pairs"] == 2
    assert SynthConfig.from_dict(manifest["train"]["config"]) == CONFIG
    assert not list(tmp_path.rglob("*.tmp*"))  # atomic writes leave no temporaries


def test_a_written_test_split_shares_no_pair_with_the_training_pairs_drawn_in_memory(tmp_path) -> None:
    config = SynthConfig(height=32, width=64, max_disp=16)
    write_synthetic(tmp_path, 3, config, seed=0, split="test")
    written = sorted((tmp_path / "disparity").rglob("left/*.pfm"))
    training = SyntheticStereo(6, config, seed=0)  # the quickstart trains on seed 0 and tests on its seed
    for path in written:  # NumPy drops trailing zeros of a seed: (0, 1, 0) once drew training pair 1
        assert not any(np.array_equal(read_pfm(path), training.pair(j).disp) for j in range(6)), path.name


def test_rewriting_a_smaller_split_removes_the_extra_pairs(tmp_path) -> None:
    write_synthetic(tmp_path, 12, CONFIG, split="test")
    write_synthetic(tmp_path, 3, CONFIG, split="test")
    assert len(list((tmp_path / "frames_finalpass").rglob("*.png"))) == 6
    assert not (tmp_path / "frames_finalpass/TEST/A/0001").exists()
    assert len(list((tmp_path / "disparity").rglob("*.pfm"))) == 6
    assert json.loads((tmp_path / "synth.json").read_text())["test"]["n_pairs"] == 3


def test_write_synthetic_rejects_bad_split_and_broken_manifest(tmp_path) -> None:
    with pytest.raises(ConfigError, match="split"):
        write_synthetic(tmp_path, 1, CONFIG, split="val")
    (tmp_path / "synth.json").write_text("{not json")
    with pytest.raises(DataError, match=r"synth\.json"):
        write_synthetic(tmp_path, 1, CONFIG)
    assert not (tmp_path / "frames_finalpass").exists()


def test_sceneflow_reader_reads_what_is_written(tmp_path) -> None:
    datasets = pytest.importorskip("stereodistill.data.datasets")
    write_synthetic(tmp_path, 3, CONFIG, seed=1, split="test")
    dataset = datasets.build_dataset("sceneflow", tmp_path, split="test", max_disp=MAX_DISP)
    assert len(dataset) == 3
    sample = dataset[0]
    assert sample["left"].shape == (3, H, W)
    assert np.array_equal(sample["disp"].numpy(), generate_pair(CONFIG, pair_seed(1, "test", 0)).disp)


# ----------------------------------------------------------------------- realistic scenes
REAL = SynthConfig(height=H, width=W, max_disp=MAX_DISP, photometric=False, photo_prob=1.0, thin_objects=3)


@pytest.mark.parametrize("seed", range(3))
def test_photo_textures_and_thin_bars_keep_the_geometry_exact(seed: int) -> None:
    """Real photographs are painted in left coordinates like any texture: warping right by the
    ground truth still reproduces left, and ±1 px does not."""
    pair = generate_pair(REAL, seed)
    visible = ~pair.occlusion
    exact = _warp_error(pair, pair.disp)[visible].mean()
    off_by_one = min(_warp_error(pair, pair.disp + s)[visible].mean() for s in (-1.0, 1.0))
    assert exact < 0.5 * off_by_one, (exact, off_by_one)


def test_photo_textures_have_natural_detail() -> None:
    """A photograph's texture is not value noise: its gradients are heavy-tailed (edges), so their
    kurtosis is well above that of the procedural textures (about a Gaussian field's 3)."""

    def kurtosis(config: SynthConfig) -> float:
        pairs = [generate_pair(config, seed) for seed in range(6)]
        grad = np.concatenate([np.diff(p.left.mean(axis=-1), axis=1).ravel() for p in pairs])
        return float(((grad - grad.mean()) ** 4).mean() / grad.var() ** 2)

    procedural = SynthConfig(height=H, width=W, max_disp=MAX_DISP, photometric=False, low_texture_prob=0, n_objects=0)
    photos = SynthConfig(height=H, width=W, max_disp=MAX_DISP, photometric=False, photo_prob=1.0, n_objects=0)
    assert kurtosis(photos) > 2 * kurtosis(procedural)


def test_photo_drawn_small_is_the_block_average_not_a_point_sample() -> None:
    """A photograph drawn at 1/4 scale shows the mean of each 4×4 block of the original (read from
    its pyramid), not every fourth pixel, which would alias its fine detail."""
    from stereodistill.data.synthetic.photos import photo_bank, photo_block

    full = photo_bank()[0][0]
    params = {
        "photo": 0,
        "scale": 0.25,
        "flip": (False, False, False),
        "origin": (0.0, 0.0),
        "colour": np.eye(3, dtype=np.float32),
        "level": np.zeros(3, np.float32),
    }
    block = photo_block(params, np.arange(40, dtype=np.float32), np.arange(60, dtype=np.float32))
    averaged = full[:160, :240].reshape(40, 4, 60, 4, 3).mean(axis=(1, 3))
    expected = averaged - averaged.reshape(-1, 3).mean(axis=0)  # photo_block centres each channel
    assert np.allclose(block, expected, atol=1e-5)
    sampled = full[:160:4, :240:4]
    assert not np.allclose(block, sampled - sampled.reshape(-1, 3).mean(axis=0), atol=1e-2)


def test_thin_bars_are_thin_layers_of_their_own() -> None:
    bars = SynthConfig(height=H, width=W, max_disp=MAX_DISP, photometric=False, n_objects=0, thin_objects=4)
    narrow = 0
    for seed in range(4):
        pair = generate_pair(bars, seed)
        closer = pair.disp > bars.background_max_frac * MAX_DISP  # the bars lie in front of the background
        runs = [
            len(r)
            for row in closer
            for r in np.split(np.flatnonzero(row), np.flatnonzero(np.diff(np.flatnonzero(row)) > 1) + 1)
            if len(r)
        ]
        narrow += sum(1 for r in runs if r <= 8)
    assert narrow > 20  # many rows cross a bar in a few pixels


def test_camera_effects_change_the_views_but_not_the_geometry() -> None:
    plain = SynthConfig(height=H, width=W, max_disp=MAX_DISP, photo_prob=1.0)
    effects = SynthConfig(height=H, width=W, max_disp=MAX_DISP, photo_prob=1.0, camera_effects=True)
    for seed in range(3):
        a, b = generate_pair(plain, seed), generate_pair(effects, seed)
        assert np.array_equal(a.disp, b.disp) and np.array_equal(a.occlusion, b.occlusion)
        assert np.abs(a.left - b.left).mean() > 0.005
        assert b.left.min() >= 0 and b.left.max() <= 1


def test_curved_objects_bend_and_stay_in_range() -> None:
    """With curved_prob 1 every object is a dome, bowl or cylinder: inside the objects the second
    differences of the disparity are not zero, as they are on planes; slopes stay bounded."""

    def curvature(config: SynthConfig) -> float:
        bent = []
        for seed in range(4):
            pair = generate_pair(config, seed)
            assert pair.disp.min() > 0 and pair.disp.max() < MAX_DISP
            objects = pair.disp > config.background_max_frac * MAX_DISP  # objects lie in front
            second = np.abs(pair.disp[:, 2:] - 2 * pair.disp[:, 1:-1] + pair.disp[:, :-2])
            inside = objects[:, 2:] & objects[:, 1:-1] & objects[:, :-2] & (second < 0.5)  # no edges
            slope = np.abs(np.diff(pair.disp, axis=1))[objects[:, 1:] & objects[:, :-1]]
            assert np.median(slope) <= config.max_slope + 1e-3
            bent.append(float(np.median(second[inside])))
        return float(np.mean(bent))

    assert curvature(CLEAN) < 1e-4
    assert curvature(CURVED) > 1e-3


def test_curved_right_disparity_inverts_the_left_one() -> None:
    """For a curved layer, the right view's disparity at xr = x − D(x) is D(x), to float precision."""
    from stereodistill.data.synthetic.scene import _curved_layer

    rng = np.random.default_rng(0)
    verts = np.array([[20.0, 10.0], [100.0, 10.0], [100.0, 60.0], [20.0, 60.0]])
    for _ in range(20):
        layer = _curved_layer(rng, verts, (20.0, 100.0, 10.0, 60.0), 8.0, 23.0, 0.25, {})
        assert layer.qx or layer.qy
        ys = np.arange(10, 61, dtype=np.float32)
        xs = np.arange(20, 101, dtype=np.float32)[None, :]
        d = layer.left_disparity(ys, xs)
        assert layer.dlo - 1e-3 <= d.min() and d.max() <= layer.dhi + 1e-3 and layer.dhi <= 23.0 + 1e-3
        assert np.allclose(layer.right_disparity(ys, xs - d), d, atol=1e-3)


def test_realistic_scene_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="curved_prob"):
        SynthConfig(curved_prob=2.0)
    with pytest.raises(ConfigError, match="photo_prob"):
        SynthConfig(photo_prob=1.5)
    with pytest.raises(ConfigError, match="thin_objects"):
        SynthConfig(thin_objects=-1)


def test_a_ground_plane_comes_nearer_towards_the_bottom_and_stays_in_range() -> None:
    ground = SynthConfig(height=H, width=W, max_disp=MAX_DISP, photometric=False, n_objects=0, ground_prob=1.0)
    for seed in range(4):
        pair = generate_pair(ground, seed)
        assert pair.disp.min() >= ground.min_disp - 1e-3 and pair.disp.max() < MAX_DISP
        bottom, top = pair.disp[-1].mean(), pair.disp[0].mean()
        assert bottom >= 0.5 * ground.disp_high - 1e-3 and bottom > top  # the floor is near at the bottom
    with pytest.raises(ConfigError, match="ground_prob"):
        SynthConfig(ground_prob=-0.1)
