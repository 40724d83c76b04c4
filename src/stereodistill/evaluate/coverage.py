"""What share of the ground truth a score covers, said the same way by every command that scores.

A network scores only the ground truth below its range; on a list whose disparities reach past it,
a low EPE can hide that most pixels were never scored. ``eval`` and ``adapt`` print the same line
and the same warning.
"""

from __future__ import annotations

#: Share of the ground-truth pixels left out (at or beyond the range) above which a score is flagged.
LEFT_OUT_WARNING = 0.10


def coverage_line(coverage: dict[str, float | int], max_disp: float) -> str:
    """ "ground truth: N pixels; left out: A at or beyond D px, B occluded (S %)"."""
    share = coverage["left_out_share"]
    return (
        f"ground truth: {coverage['with_gt']:,} pixels; left out: {coverage['beyond_max_disp']:,} at or beyond "
        f"{max_disp:g} px, {coverage['occluded']:,} occluded ({100 * share:.1f} %)"
    )


#: What ``eval`` can do about it.
EVAL_ADVICE = (
    "evaluate a model of a larger range, or the pairs at a smaller size where the dataset has one "
    "(middlebury: --option resolution=H or Q), to cover them"
)


def left_out_warning(coverage: dict[str, float | int], max_disp: float, advice: str = EVAL_ADVICE) -> str | None:
    """A warning when more than :data:`LEFT_OUT_WARNING` of the ground truth lies beyond the range;
    ``advice``: what the caller's user can do about it."""
    if coverage["beyond_max_disp"] <= LEFT_OUT_WARNING * coverage["with_gt"]:
        return None
    return (
        f"warning: more than {LEFT_OUT_WARNING:.0%} of the ground-truth pixels lie at or beyond {max_disp:g} px "
        f"and are left out of these metrics; {advice}"
    )
