"""Connectors that make a student tap comparable with a teacher tap.

- ``conv``: a learnable 1×1 (2-D features) or 1×1×1 (3-D volumes) convolution mapping the student's
  channels to the teacher's; it trains with the student and is dropped after training. It maps
  channels only: the sizes must already agree (``[resize, conv]`` when they do not).
- ``resize``: interpolates the student tap to the teacher's spatial size (bilinear, trilinear for
  volumes; for disparity logits the disparity axis is resized too).
- ``disparity_pool``: sums the teacher's distribution (or volume) over groups of disparities so that
  it matches a student that works with fewer disparity bins.
- ``group_pool``: averages the teacher's correlation groups (dim 1 of a B×G×D×H×W group-wise
  correlation volume) in blocks of consecutive groups down to the student's number of groups. A
  group's correlation is the mean of left·right over its channels, so the mean of k consecutive
  groups *is* the group-wise correlation of the same features with G/k groups: parameter-free and
  exact (40 teacher groups → 8 student groups: the mean of every 5).

A term names one adapter (``adapter: conv``) or a chain applied in order (``adapter: [group_pool,
resize]``); each step sees the shapes the previous ones produced, and after the last the two taps
must agree. Adapters are built from the taps' shapes (found by a dry run), so a config only names
them. A term whose taps do not agree gets an error naming both shapes and the adapter(s) that would
make them agree (:func:`suggest_adapters`), or saying why no adapter pairs them meaningfully (a
concatenation volume with a correlation volume: pair ``logits.K``, ``prob`` or ``disparity``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.errors import ConfigError

ADAPTERS = ("conv", "resize", "disparity_pool", "group_pool")

#: Kinds of a ``volume.cost`` tap: group-wise (or plain, one-group) correlation, or concatenation of
#: both views' features. ``None`` where unknown.
CORRELATION = "correlation"
CONCATENATION = "concatenation"

Shape = tuple[int, ...]


def is_distribution(tap: str) -> bool:
    """Taps whose dim 1 is the disparity axis of a distribution (logits or probabilities)."""
    return tap.startswith("logits.") or tap == "prob" or tap == "volume.attention"


def is_cost_volume(tap: str) -> bool:
    return tap.startswith("volume.cost")


def tap_kind(tap: str, shape: Shape) -> str:
    """``disparity`` (B×H×W), ``distribution``, ``features`` (B×C×H×W) or ``volume`` (B×C×D×H×W)."""
    if len(shape) == 3:
        return "disparity"
    if is_distribution(tap):
        return "distribution"
    return {4: "features", 5: "volume"}.get(len(shape), "other")


# ------------------------------------------------------------------------------------------ modules
class ChannelConv(nn.Module):
    """1×1(×1) convolution from student to teacher channels."""

    def __init__(self, in_channels: int, out_channels: int, dims: int) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 4 else nn.Conv3d
        self.conv = conv(in_channels, out_channels, kernel_size=1, bias=False)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(student), teacher


class Resize(nn.Module):
    """Interpolate the student tap to the teacher tap's trailing shape."""

    def __init__(self, distribution: bool) -> None:
        super().__init__()
        self.distribution = distribution

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if student.shape[2:] == teacher.shape[2:] and not (self.distribution and student.shape[1] != teacher.shape[1]):
            return student, teacher
        if self.distribution and student.dim() == 4:  # B×D×H×W: resize D, H and W together
            resized = F.interpolate(student.unsqueeze(1), size=teacher.shape[1:], mode="trilinear", align_corners=False)
            return resized.squeeze(1), teacher
        mode = "bilinear" if student.dim() == 4 else "trilinear"
        return F.interpolate(student, size=teacher.shape[2:], mode=mode, align_corners=False), teacher


class DisparityPool(nn.Module):
    """Sum the teacher over groups of ``factor`` consecutive disparities.

    Distributions (logits) are summed as probabilities and returned as log-probabilities, which
    are valid logits for any softmax-based loss; volumes (B×C×D×H×W) are summed along D.
    """

    def __init__(self, factor: int, distribution: bool) -> None:
        super().__init__()
        self.factor = factor
        self.distribution = distribution

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.factor
        if self.distribution:
            t = teacher.squeeze(1) if teacher.dim() == 5 else teacher
            prob = F.softmax(t, dim=1)
            pooled = prob.unflatten(1, (t.shape[1] // k, k)).sum(2)
            out = pooled.clamp(min=1e-12).log()
            return student, out.unsqueeze(1) if teacher.dim() == 5 else out
        return student, teacher.unflatten(2, (teacher.shape[2] // k, k)).sum(3)


class GroupPool(nn.Module):
    """Average the teacher's correlation groups (dim 1) in blocks of ``factor`` consecutive groups."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.factor
        if k == 1:
            return student, teacher
        return student, teacher.unflatten(1, (teacher.shape[1] // k, k)).mean(2)


class AdapterChain(nn.Module):
    """Adapters applied in order, each to the pair the previous one returned."""

    def __init__(self, steps: Sequence[nn.Module]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for step in self.steps:
            student, teacher = step(student, teacher)
        return student, teacher


# -------------------------------------------------------------------------------------- suggestions
@dataclass(frozen=True)
class Suggestion:
    """Adapter chains that make two taps agree, best first, or why none pairs them meaningfully."""

    chains: tuple[tuple[str, ...], ...] = ()
    reason: str = ""

    def text(self) -> str:
        if not self.chains:
            return self.reason
        options = " or ".join(f"adapter: {format_chain(chain)}" for chain in self.chains)
        return f"try {options}" + (f" ({self.reason})" if self.reason else "")


def format_chain(chain: Sequence[str]) -> str:
    """A chain as a config writes it: ``conv``, or ``[group_pool, resize]``."""
    return chain[0] if len(chain) == 1 else f"[{', '.join(chain)}]"


def suggest_adapters(
    student_tap: str,
    student_shape: Shape,
    teacher_shape: Shape,
    *,
    teacher_tap: str | None = None,
    student_volume: str | None = None,
    teacher_volume: str | None = None,
) -> Suggestion:
    """The adapters that would make these taps agree, computed from their shapes (and, for cost
    volumes, their kinds: ``correlation``, ``concatenation`` or ``None`` when unknown)."""
    teacher_tap = teacher_tap or student_tap
    s, t = tuple(student_shape), tuple(teacher_shape)
    s_kind, t_kind = tap_kind(student_tap, s), tap_kind(teacher_tap, t)
    if s_kind != t_kind:
        return Suggestion(
            reason=f"no adapter compares a {s_kind} tap with a {t_kind} tap: pair taps of one kind "
            "(features, volume, logits.K/prob, disparity)"
        )
    if len(s) != len(t):  # one kind, other layouts: B×D×H×W logits against a B×C×D×H×W attention volume
        return Suggestion(
            reason=f"no adapter compares a {len(s)}-D {s_kind} tap with a {len(t)}-D one: pair taps of one layout"
        )
    if mixed_volumes(student_volume, teacher_volume):
        return Suggestion(reason=concatenation_reason(student_volume, teacher_volume))
    if s == t:
        return Suggestion(reason="the shapes already agree: no adapter is needed")
    if s_kind == "disparity":
        return Suggestion(reason="disparity maps are compared at input resolution: no adapter applies")
    spatial = s[2:] != t[2:]
    if s_kind == "features":
        if s[1] != t[1]:
            return Suggestion(chains=(("resize", "conv"),) if spatial else (("conv",),))
        return Suggestion(chains=(("resize",),))
    if s_kind == "volume":
        correlations = (
            is_cost_volume(student_tap)
            and is_cost_volume(teacher_tap)
            and CONCATENATION not in (student_volume, teacher_volume)
        )
        reason = ""
        if s[1] == t[1]:
            chain: tuple[str, ...] = ()
        elif correlations and t[1] % s[1] == 0:
            chain = ("group_pool",)
            reason = f"group_pool averages the teacher's {t[1]} groups {t[1] // s[1]} at a time, parameter-free"
        else:
            chain = ("conv",)
            if correlations:
                reason = (
                    f"a learnt map; group_pool would need the teacher's {t[1]} groups to be a multiple of the "
                    f"student's {s[1]}: give the student a number of groups that divides {t[1]}"
                )
        if spatial:  # conv maps channels at equal sizes, so resize goes first; group_pool does not mind
            chain = ("resize", *chain) if chain == ("conv",) else (*chain, "resize")
        return Suggestion(chains=(chain,), reason=reason)
    if s_kind == "distribution":
        axis = 1 if len(s) == 4 else 2
        if len(s) == 5 and s[1] != t[1]:
            return Suggestion(reason="these distributions differ in their channel axis: no adapter applies")
        multiple = t[axis] != s[axis] and t[axis] % s[axis] == 0
        other = s[axis + 1 :] != t[axis + 1 :]
        if multiple and not other:
            return Suggestion(
                chains=(("disparity_pool",), ("resize",)),
                reason=f"disparity_pool sums the teacher's {t[axis]} disparities {t[axis] // s[axis]} at a time",
            )
        if multiple:
            return Suggestion(chains=(("disparity_pool", "resize"), ("resize",)))
        return Suggestion(chains=(("resize",),), reason="resize interpolates the student's disparity axis too")
    return Suggestion(reason=f"no adapter applies to {len(s)}-D taps")


def mixed_volumes(student_volume: str | None, teacher_volume: str | None) -> bool:
    """A concatenation volume against a correlation volume (both kinds known)."""
    return {student_volume, teacher_volume} == {CORRELATION, CONCATENATION}


def concatenation_reason(student_volume: str | None, teacher_volume: str | None) -> str:
    concat = "teacher's" if teacher_volume == CONCATENATION else "student's"
    corr = "student's" if concat == "teacher's" else "teacher's"
    return (
        f"the {concat} volume.cost is a concatenation volume (features of both views side by side) and the {corr} "
        "a correlation volume (their products): no adapter maps one onto the other meaningfully; "
        "pair logits.K, prob or disparity instead"
    )


# ------------------------------------------------------------------------------------------ building
def _describe(student_tap: str, teacher_tap: str, s: Shape, t: Shape) -> str:
    if student_tap == teacher_tap:
        return f"tap {student_tap}: student shape {s}, teacher shape {t}"
    return f"student tap {student_tap} {s}, teacher tap {teacher_tap} {t}"


def build_adapter(*args: Any, **kwargs: Any) -> nn.Module | None:
    """The adapter (or chain) of :func:`adapter_and_shape`, without the shape it leaves."""
    return adapter_and_shape(*args, **kwargs)[0]


def adapter_and_shape(
    kind: str | Sequence[str] | None,
    student_tap: str,
    student_shape: Shape,
    teacher_shape: Shape,
    *,
    teacher_tap: str | None = None,
    student_volume: str | None = None,
    teacher_volume: str | None = None,
) -> tuple[nn.Module | None, Shape]:
    """The adapter (or chain) ``kind`` for these shapes (``None`` when shapes already agree and none is
    asked), and the shape both taps have after it: the one the loss compares.

    Every step is checked when it is built (``conv`` needs equal sizes, ``group_pool`` a teacher whose
    groups are a multiple of the student's, …) and the chain must leave the two taps' shapes equal;
    otherwise the error names both shapes and suggests the adapters that would fit.
    """
    teacher_tap = teacher_tap or student_tap
    s, t = tuple(student_shape), tuple(teacher_shape)
    described = _describe(student_tap, teacher_tap, s, t)

    def advice() -> str:
        return suggest_adapters(
            student_tap,
            s,
            t,
            teacher_tap=teacher_tap,
            student_volume=student_volume,
            teacher_volume=teacher_volume,
        ).text()

    if mixed_volumes(student_volume, teacher_volume):
        raise ConfigError(f"{described}: {concatenation_reason(student_volume, teacher_volume)}")
    chain = [kind] if isinstance(kind, str) else list(kind or [])
    for step in chain:
        if step not in ADAPTERS:
            raise ConfigError(f"unknown adapter {step!r} (expected one of {', '.join(ADAPTERS)})")
    if not chain:
        if s != t:
            raise ConfigError(f"{described}: the shapes differ and the term has no adapter; {advice()}")
        return None, t
    distribution = is_distribution(student_tap)
    modules: list[nn.Module] = []
    cur_s, cur_t = s, t
    for step in chain:
        module, cur_s, cur_t = _build_step(
            step, student_tap, teacher_tap, cur_s, cur_t, distribution, teacher_volume, described, advice
        )
        modules.append(module)
    if cur_s != cur_t:
        steps = format_chain(chain)
        raise ConfigError(
            f"{described}: after 'adapter: {steps}' the student is {cur_s} and the teacher {cur_t}; {advice()}"
        )
    return (modules[0] if len(modules) == 1 else AdapterChain(modules)), cur_t


def _build_step(
    step: str,
    student_tap: str,
    teacher_tap: str,
    s: Shape,
    t: Shape,
    distribution: bool,
    teacher_volume: str | None,
    described: str,
    advice: Callable[[], str],
) -> tuple[nn.Module, Shape, Shape]:
    """One adapter at the shapes it sees, with the shapes it leaves."""
    if len(s) != len(t):
        raise ConfigError(f"{described}: {step} cannot compare a {len(s)}-D tap with a {len(t)}-D one; {advice()}")
    if step == "conv":
        if distribution or len(s) not in (4, 5):
            raise ConfigError(f"{described}: a conv adapter needs a feature map or volume; {advice()}")
        if s[2:] != t[2:]:
            raise ConfigError(
                f"{described}: the conv adapter maps channels only, but sizes differ at its step "
                f"({s[2:]} vs {t[2:]}); {advice()}"
            )
        return ChannelConv(s[1], t[1], len(s)), (s[0], t[1], *s[2:]), t
    if step == "resize":
        if len(s) not in (4, 5):
            raise ConfigError(f"{described}: resize needs a feature map, volume or distribution; {advice()}")
        if distribution and len(s) == 4:
            return Resize(distribution), (s[0], *t[1:]), t
        return Resize(distribution), (*s[:2], *t[2:]), t
    if step == "disparity_pool":
        if len(s) not in (4, 5) or (not distribution and len(s) != 5):
            raise ConfigError(f"{described}: disparity_pool needs a distribution or a volume; {advice()}")
        axis = 1 if distribution and len(s) == 4 else 2
        if s[axis] > t[axis] or t[axis] % s[axis]:
            raise ConfigError(
                f"{described}: disparity_pool needs the teacher's disparities to be a multiple of the student's, "
                f"but the teacher has {t[axis]}, not a multiple of the student's {s[axis]}; {advice()}"
            )
        k = t[axis] // s[axis]
        return DisparityPool(k, distribution), s, (*t[:axis], s[axis], *t[axis + 1 :])
    # group_pool
    if distribution or len(s) != 5:
        raise ConfigError(f"{described}: group_pool needs a B×G×D×H×W correlation volume; {advice()}")
    if not (is_cost_volume(student_tap) and is_cost_volume(teacher_tap)):
        raise ConfigError(
            f"{described}: group_pool averages correlation groups, which only volume.cost taps have; {advice()}"
        )
    if teacher_volume == CONCATENATION:
        raise ConfigError(
            f"{described}: the teacher's volume.cost is a concatenation volume: its channels are features, "
            f"not correlation groups, and group_pool would average them meaninglessly; {advice()}"
        )
    if s[1] > t[1] or t[1] % s[1]:
        raise ConfigError(
            f"{described}: group_pool needs the teacher's groups to be a multiple of the student's, but the "
            f"teacher has {t[1]} groups, not a multiple of the student's {s[1]}; {advice()}"
        )
    return GroupPool(t[1] // s[1]), s, (t[0], s[1], *t[2:])
