"""The quickstart report: D1 only where it says something, and error maps on their own colours."""

import numpy as np

from stereodistill.report.colormap import ERROR_ANCHORS, colorbar, colorize
from stereodistill.report.quickstart_report import metric_rows, metrics_note, verdict


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


def test_a_metric_with_no_figure_is_n_a_in_the_table_and_not_finite_in_the_verdict():
    diverged = {"epe": None, "d1": None, "bad1": None, "bad2": None, "bad3": float("nan")}
    finite = {"epe": 1.25, "d1": 0.08, "bad1": 0.3, "bad2": 0.2, "bad3": 0.1}
    rep = {"models": {"teacher": {"metrics": {"s": finite}}, "student_distilled": {"metrics": {"s": diverged}}}}
    header, rows = metric_rows(rep, "s")
    assert rows[0][1] == "1.250"  # the column header carries the unit
    assert rows[1][1:] == ["n/a"] * (len(header) - 1)
    rep |= {
        "seed": 0,
        "steps": {"student_distilled": 10},
        "distillation": {"epe_scratch": 2.0, "epe_distilled": None},
    }
    assert "not finite distilled against 2.000 px from scratch" in verdict(rep)
