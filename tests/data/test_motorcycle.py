"""The real Motorcycle pair, reduced so that a network's range covers its ground truth."""

import numpy as np
import pytest

from stereodistill.data.motorcycle import MotorcycleStereo, fit_factor, load_motorcycle, reduce_pair
from stereodistill.errors import ConfigError


def test_the_fit_factor_brings_every_known_disparity_below_the_range():
    disp = load_motorcycle()[2]  # known values reach 59.9 px
    assert [fit_factor(disp, d) for d in (64, 32, 16, None)] == [1, 2, 4, 1]


def test_reducing_averages_the_images_and_samples_and_scales_the_ground_truth():
    rng = np.random.default_rng(0)
    left, right = rng.random((5, 7, 3), dtype=np.float32), rng.random((5, 7, 3), dtype=np.float32)
    disp = rng.uniform(1, 40, (5, 7)).astype(np.float32)
    disp[0, 0] = np.inf
    small_left, small_right, small_disp = reduce_pair(left, right, disp, 2)
    assert small_left.shape == (2, 3, 3) and small_disp.shape == (2, 3)
    np.testing.assert_allclose(small_left[1, 2], left[2:4, 4:6].mean(axis=(0, 1)), rtol=1e-6)
    np.testing.assert_allclose(small_right[0, 1], right[0:2, 2:4].mean(axis=(0, 1)), rtol=1e-6)
    assert np.isinf(small_disp[0, 0]) and small_disp[1, 2] == pytest.approx(disp[2, 4] / 2)


def test_by_default_every_ground_truth_pixel_counts():
    sample = MotorcycleStereo(max_disp=32)[0]
    coverage = sample["meta"]["gt_coverage"]
    assert sample["meta"]["reduced_by"] == 2 and tuple(sample["left"].shape) == (3, 250, 370)
    assert coverage["beyond_max_disp"] == 0 and int(sample["valid"].sum()) == coverage["with_gt"] > 80_000
    full = MotorcycleStereo(max_disp=32, reduce=1)[0]["meta"]["gt_coverage"]
    assert full["beyond_max_disp"] / full["with_gt"] == pytest.approx(0.547, abs=0.002)  # the motorcycle itself
    with pytest.raises(ConfigError, match="'reduce' must be 'fit' or a positive integer"):
        MotorcycleStereo(32, reduce=0.5)
