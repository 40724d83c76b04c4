import math
import xml.etree.ElementTree as ET

from stereodistill.report.svg import _ticks, bar_chart, line_chart, scatter_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_line_chart_is_valid_svg_with_one_line_per_series():
    svg = line_chart(
        {"a": [(0, 1.0), (10, 0.5), (20, 0.25)], "b <&>": [(0, 2.0), (20, math.nan), (30, 1.0)]},
        "loss",
        "step",
        "value",
        log_y=True,
    )
    root = ET.fromstring(svg)  # escaped labels: parses as XML
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    assert len(lines[1].get("points").split()) == 2  # the NaN point is skipped
    assert "b <&>" in "".join(root.itertext())


def test_line_chart_without_data_says_so():
    assert "no data" in line_chart({"a": []}, "t", "x", "y")


def test_ticks_are_round_and_cover_the_range():
    ticks = _ticks(0.13, 0.97)
    assert ticks[0] >= 0.13 and ticks[-1] <= 0.97 and len(ticks) >= 3
    assert all(abs(t * 10 - round(t * 10)) < 1e-9 for t in ticks)


def test_bar_chart_marks_failed_cells_and_draws_error_bars():
    svg = bar_chart([("ok", 2.0, 0.5), ("failed one", math.nan, math.nan)], "EPE", "px")
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG}rect")) == 1
    assert "failed" in "".join(root.itertext())
    assert len(root.findall(f"{SVG}line")) >= 3  # the error bar and its two caps


def test_scatter_chart_places_labelled_points_on_a_log_axis():
    svg = scatter_chart(
        [("fast", 100.0, 2.0, 0.1), ("slow", 1000.0, 1.5, math.nan), ("failed", math.nan, math.nan, math.nan)],
        "speed and accuracy",
        "latency ms",
        "EPE px",
    )
    root = ET.fromstring(svg)
    circles = root.findall(f"{SVG}circle")
    assert len(circles) == 2  # the failed cell has no point
    fast, slow = (float(c.get("cx")) for c in circles)
    assert slow > fast
    assert float(circles[1].get("cy")) > float(circles[0].get("cy"))  # lower EPE sits lower
    text = "".join(root.itertext())
    assert "fast" in text and "slow" in text and "latency ms (log)" in text
    assert "no data" in scatter_chart([], "t", "x", "y")


def test_scatter_labels_of_coinciding_points_do_not_overlap():
    svg = scatter_chart([("a", 100.0, 2.0, 0.1), ("b", 101.0, 2.0, 0.1), ("c", 1000.0, 3.0, 0.1)], "t", "x", "y")
    labels = [el for el in ET.fromstring(svg).iter(f"{SVG}text") if el.text in ("a", "b")]
    assert abs(float(labels[0].get("y")) - float(labels[1].get("y"))) >= 12
