def test_measurements_keep_three_figures_in_positional_notation():
    from stereodistill.report.htmlpage import figures

    assert [figures(v) for v in (2.75e-05, 0.0275, 1, 15.25, 99.96, 1543.2)] == [
        "0.0000275",
        "0.0275",
        "1.00",
        "15.2",
        "100",
        "1543",
    ]
