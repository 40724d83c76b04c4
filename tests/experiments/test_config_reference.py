"""docs/config.md is generated from the code, and the test keeps it so."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from stereodistill.experiments.config_reference import field_rows, render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_docs_config_md_is_the_generated_reference():
    assert PAGE.read_text() == render(), (
        "docs/config.md is stale: python -m stereodistill.experiments.config_reference > docs/config.md"
    )


def test_every_key_of_the_reference_says_what_it_means():
    page = render()
    for key in ("`distill.terms[].mask`", "`distill.weighting`", "`optim.schedule`", "`stages[].fraction`"):
        assert key in page
    for row in (line for line in page.splitlines() if line.startswith("| `")):
        assert row.rstrip(" |").split(" | ")[-1], row


def test_a_field_without_a_comment_is_refused():
    @dataclass
    class Undocumented:
        documented: int = 1  # what it is
        silent: int = 2

    with pytest.raises(ValueError, match=r"Undocumented.silent: no comment"):
        list(field_rows(Undocumented))
