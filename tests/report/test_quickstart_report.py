"""The quickstart report: D1 only where it says something, and error maps on their own colours."""

import numpy as np

from stereodistill.report.colormap import ERROR_ANCHORS, colorbar, colorize
from stereodistill.report.quickstart_report import metric_rows, metrics_note


def report(d1, bad3):
    metrics = {"synthetic": {"epe": 1.0, "d1": d1, "bad1": 0.3, "bad2": 0.2, "bad3": bad3}}
    return {"models": {"teacher": {"metrics": metrics}, "student_distilled": {"metrics": metrics}}}


def test_d1_is_left_out_where_it_equals_bad3_by_construction():
    header, rows = metric_rows(report(0.1, 0.1), "synthetic")
    assert "D1" not in header and len(rows[0]) == len(header)
    assert "D1 equals bad-3 by construction" in metrics_note(report(0.1, 0.1))
    header, rows = metric_rows(report(0.08, 0.1), "synthetic")  # disparities above 60 px: they differ
    assert header[2] == "D1" and rows[0][2] == "8.00 %"
    assert "by construction" not in metrics_note(report(0.08, 0.1))


def test_error_maps_use_a_colour_map_of_their_own_and_bars_are_labelled():
    values = np.array([[0.0, 5.0]])
    disparity, error = colorize(values, vmax=5.0), colorize(values, vmax=5.0, anchors=ERROR_ANCHORS)
    assert not np.allclose(disparity, error)
    assert error[0, 0].min() > 0.9  # no error: light
    bar = colorbar(200, vmax=32.0)
    assert bar.shape[1] == 200 and bar.shape[0] > 8 and (bar[-12:] < 0.5).any()  # the range is written
