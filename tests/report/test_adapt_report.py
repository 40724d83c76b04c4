"""The adapt report's metric table: a metric with no figure is written n/a, never nan or a crash."""

from stereodistill.report.adapt_report import _metric_rows


def test_metrics_before_and_after_with_no_figure_are_n_a():
    before = {"epe": 2.5, "d1": 0.25, "bad1": 0.5, "bad2": 0.4, "bad3": 0.25}
    after = {"epe": float("inf"), "d1": float("nan"), "bad1": None, "bad2": 0.0, "bad3": 0.0}
    rows = _metric_rows({"before": before, "after": after})
    assert rows[0][0] == "before" and rows[0][1] == "2.500" and "25.00 %" in rows[0]
    assert rows[1][0] == "after" and rows[1][1] == "n/a" and rows[1].count("n/a") == 3 and "0.00 %" in rows[1]
