import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stereodistill.evaluate.metrics import METRIC_KEYS, MetricAccumulator, compute_metrics, format_table


def test_hand_computed_values():
    gt = torch.tensor([[10.0, 100.0, 2.0, 50.0]])
    pred = torch.tensor([[10.4, 104.0, 4.5, 50.0]])  # errors 0.4, 4.0, 2.5, 0.0
    valid = torch.tensor([[True, True, True, False]])
    m = compute_metrics(pred, gt, valid)
    assert m["epe"] == pytest.approx((0.4 + 4.0 + 2.5) / 3)
    # D1 needs > 3 px AND > 5 % of |d|: 4.0 > 3 but 4.0 < 5 % of 100 = 5 → not D1.
    assert m["d1"] == 0.0
    assert m["bad0.5"] == pytest.approx(2 / 3)
    assert m["bad1"] == pytest.approx(2 / 3)
    assert m["bad2"] == pytest.approx(2 / 3)
    assert m["bad3"] == pytest.approx(1 / 3)


def test_d1_counts_when_both_thresholds_exceeded():
    gt = torch.tensor([[20.0, 20.0]])
    pred = torch.tensor([[23.5, 22.9]])  # 3.5 > 3 and > 1.0 (5 %); 2.9 not > 3
    m = compute_metrics(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    assert m["d1"] == pytest.approx(0.5)


def test_no_valid_pixel_gives_nan_and_is_left_out_of_per_image_mean():
    acc = MetricAccumulator()
    gt = torch.ones(2, 3, 4)
    valid = torch.zeros(2, 3, 4, dtype=torch.bool)
    valid[0] = True
    pred = gt + 1.0
    acc.update(pred, gt, valid, ids=["a", "b"])
    assert acc.per_image[1]["n_valid"] == 0
    assert math.isnan(acc.per_image[1]["epe"])
    assert acc.per_image_mean()["epe"] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in compute_metrics(pred[1], gt[1], valid[1]).values())


def test_non_finite_prediction_is_an_error_not_a_hit():
    gt = torch.tensor([[5.0, 5.0]])
    pred = torch.tensor([[float("nan"), 5.0]])
    m = compute_metrics(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    assert math.isinf(m["epe"])
    assert m["bad3"] == pytest.approx(0.5)
    acc = MetricAccumulator()
    acc.update(
        torch.tensor([[float("nan"), 5.0, float("inf")]]),
        torch.tensor([[5.0, 5.0, 5.0]]),
        torch.tensor([[1, 1, 0]]).bool(),
    )
    assert acc.summary()["nonfinite_pixels"] == acc.per_image[0]["n_nonfinite"] == 1  # the unscored inf is not counted


def test_pooled_differs_from_per_image_mean_when_counts_differ():
    acc = MetricAccumulator()
    # image a: 1 valid pixel with error 3; image b: 3 valid pixels with error 1.
    acc.update(torch.tensor([[4.0, 0, 0, 0]]), torch.tensor([[1.0, 1, 1, 1]]), torch.tensor([[1, 0, 0, 0]]).bool())
    acc.update(torch.tensor([[2.0, 2, 2, 0]]), torch.tensor([[1.0, 1, 1, 1]]), torch.tensor([[1, 1, 1, 0]]).bool())
    assert acc.pooled()["epe"] == pytest.approx((3 + 1 + 1 + 1) / 4)
    assert acc.per_image_mean()["epe"] == pytest.approx((3 + 1) / 2)
    summary = acc.summary()
    assert set(summary) == {"pooled", "per_image_mean", "per_image", "ground_truth", "nonfinite_pixels"}


def test_ground_truth_coverage_counts_what_the_metrics_leave_out_and_why():
    from stereodistill.data.sample import ground_truth_coverage

    disp = np.array([[np.inf, 0.0, 5.0, 40.0], [10.0, 20.0, 35.0, 2.0]], np.float32)
    nonoccluded = np.array([[1, 1, 1, 1], [0, 1, 1, 1]], bool)
    coverage = ground_truth_coverage(disp, max_disp=32, nonoccluded=nonoccluded)
    assert coverage == {"with_gt": 6, "beyond_max_disp": 2, "occluded": 1}  # 40 and 35; the 10 px pixel
    acc = MetricAccumulator()
    acc.count_ground_truth(coverage)
    assert acc.coverage()["left_out"] == 3 and acc.coverage()["left_out_share"] == pytest.approx(0.5)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shapes differ"):
        compute_metrics(torch.zeros(2, 3), torch.zeros(3, 2), torch.ones(2, 3, dtype=torch.bool))


def test_format_table_shows_percent():
    text = format_table([("model", {"epe": 1.234, "d1": 0.05, "bad0.5": 0.5, "bad1": 0.2, "bad2": 0.1, "bad3": 0.05})])
    assert "1.234" in text and "5.00%" in text


# ------------------------------------------------------------------------------ property-based
images = st.integers(min_value=1, max_value=4).flatmap(
    lambda b: st.tuples(st.just(b), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31 - 1))
)


def _random_batch(spec):
    b, h, w, seed = spec
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(b, h, w, generator=g) * 64
    pred = gt + torch.randn(b, h, w, generator=g) * 4
    valid = torch.rand(b, h, w, generator=g) > 0.3
    return pred, gt, valid


@settings(max_examples=60, deadline=None)
@given(images)
def test_metrics_are_fractions_and_thresholds_are_monotone(spec):
    pred, gt, valid = _random_batch(spec)
    m = compute_metrics(pred, gt, valid)
    if valid.any():
        for key in METRIC_KEYS[1:]:
            assert 0.0 <= m[key] <= 1.0
        assert m["bad0.5"] >= m["bad1"] >= m["bad2"] >= m["bad3"] >= m["d1"]
        assert m["epe"] >= 0
    else:
        assert all(math.isnan(v) for v in m.values())


@settings(max_examples=60, deadline=None)
@given(images, st.floats(min_value=0.0, max_value=10.0))
def test_constant_offset_gives_that_epe_and_invalid_pixels_do_not_matter(spec, offset):
    pred, gt, valid = _random_batch(spec)
    valid[..., 0, 0] = True
    m = compute_metrics(gt + offset, gt, valid)
    assert m["epe"] == pytest.approx(offset, abs=1e-5)
    garbage = torch.where(valid, pred, torch.full_like(pred, 1e6))
    assert compute_metrics(garbage, gt, valid) == pytest.approx(compute_metrics(pred, gt, valid), nan_ok=True)


@settings(max_examples=40, deadline=None)
@given(images)
def test_accumulating_image_by_image_equals_pooling_at_once(spec):
    pred, gt, valid = _random_batch(spec)
    acc = MetricAccumulator()
    for i in range(pred.shape[0]):
        acc.update(pred[i], gt[i], valid[i])
    assert acc.pooled() == pytest.approx(compute_metrics(pred, gt, valid), nan_ok=True)
    scored = [compute_metrics(pred[i], gt[i], valid[i]) for i in range(pred.shape[0]) if valid[i].any()]
    if scored:
        expected = {k: sum(s[k] for s in scored) / len(scored) for k in METRIC_KEYS}
        assert acc.per_image_mean() == pytest.approx(expected)
