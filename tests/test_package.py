"""The package's public entry points, imported lazily by `import stereodistill`, all resolve."""


def test_every_public_entry_point_of_the_package_resolves():
    import stereodistill

    for name in stereodistill.__all__:
        assert callable(getattr(stereodistill, name)) or name == "__version__", name
    assert stereodistill.build_model("lean-xs", max_disp=16).max_disp == 16
