"""Distillation terms, declared in config and paired by name (never by position).

A term names a student tap, a teacher tap, a loss from :data:`~stereodistill.distill.losses.LOSSES`,
a weight (number or schedule), and optionally an adapter (or a list of adapters applied in order,
see :mod:`~stereodistill.distill.adapters`) and a mask. ``disparity`` stands for a network's final
prediction (B×H×W), so "student disparity vs teacher disparity" is a term too. Everything is checked
when the term is built: the taps must exist (the error lists what the model offers), the loss must
exist and accept the given parameters, the shapes must agree or the adapters must make them agree
(the error names both shapes and the adapters that would fit).

Whether a ``volume.cost`` is a correlation or a concatenation volume decides which adapters pair it
meaningfully; every network of the zoo declares which (``StereoModel.cost_volume_kind``).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from stereodistill.config import keyword_options
from stereodistill.distill.adapters import CONCATENATION, CORRELATION, adapter_and_shape, is_cost_volume
from stereodistill.distill.losses import LOSSES
from stereodistill.distill.masks import MASKS, resize_mask
from stereodistill.distill.weights import build_schedule
from stereodistill.errors import ConfigError

DISPARITY = "disparity"
#: Tap families whose channels (or depth) are disparity bins: a term on them needs one range on both sides.
DISPARITY_AXIS_TAPS = ("logits", "prob", "volume")
#: Names the run's own losses and logs use: a term of one of them would be summed or weighted with it.
RESERVED_NAMES = ("supervised", "photometric", "total", "lr", "epoch")
#: Losses that compare two maps value by value: the only ones that fit a disparity (one value a pixel).
POINTWISE_LOSSES = ("smooth_l1", "l1", "log_l1", "mse")
#: Losses that compare distributions over dim 1: meaningful along the disparity axis only.
DISTRIBUTION_LOSSES = ("kl", "soft_ce", "dist")
#: The tap that holds probabilities, not logits: a distribution loss gets its log (softmax(log p) = p).
PROBABILITIES = "prob"


@dataclass
class TermConfig:
    """One distillation term as written in a config's ``distill.terms`` list."""

    name: str  # the term's name: stages, overrides and logs use it
    student: str  # student tap (or disparity)
    teacher: str  # teacher tap (or disparity)
    loss: str  # a loss (below)
    weight: float | dict[str, Any] = 1.0  # a number or a schedule (below)
    params: dict[str, Any] = field(default_factory=dict)  # the loss's options (below)
    adapter: str | list[str] | None = None  # one adapter, or a chain applied in order
    mask: str | None = None  # valid_gt, teacher_correct, confidence or lr_consistent
    mask_threshold: float | None = None  # teacher_correct: px (3); confidence: peak prob. (0.5); lr_consistent: px (1)

    def __post_init__(self) -> None:
        if not self.name or "." in self.name:
            raise ConfigError(
                f"term name {self.name!r}: give a non-empty name without dots (it keys the term's modules)"
            )
        if self.name in RESERVED_NAMES or self.name.startswith("_"):  # the logs and the weighting use these
            raise ConfigError(
                f"term name {self.name!r} is taken by the run itself ({', '.join(RESERVED_NAMES)}, or a leading "
                "underscore); give the term another name"
            )
        if self.mask is not None and self.mask not in MASKS:
            raise ConfigError(f"term {self.name!r}: unknown mask {self.mask!r} (expected one of {', '.join(MASKS)})")
        if self.mask_threshold is not None:
            if self.mask is None:
                raise ConfigError(f"term {self.name!r}: mask_threshold is given but the term has no mask")
            if not 0 < self.mask_threshold < math.inf:
                raise ConfigError(
                    f"term {self.name!r}: mask_threshold must be a number above 0, got {self.mask_threshold}"
                )
            if self.mask == "confidence" and self.mask_threshold > 1:  # it would keep no pixel
                raise ConfigError(
                    f"term {self.name!r}: confidence is the teacher's peak probability, so its mask_threshold "
                    f"must be at most 1, got {self.mask_threshold}"
                )
        build_schedule(self.weight, "weight")
        loss = LOSSES.get(self.loss)
        taps = (self.student, self.teacher)
        if DISPARITY in taps and self.loss not in POINTWISE_LOSSES:  # it would take image rows as channels
            raise ConfigError(
                f"term {self.name!r}: a disparity is one value a pixel, which loss {self.loss} cannot compare; "
                f"use {', '.join(POINTWISE_LOSSES)}"
            )
        if self.loss in DISTRIBUTION_LOSSES and not all(tap.split(".")[0] in DISPARITY_AXIS_TAPS for tap in taps):
            raise ConfigError(
                f"term {self.name!r}: loss {self.loss} compares distributions over disparities: give two taps along "
                f"the disparity axis (logits.K, prob, volume.*), got {self.student} and {self.teacher}"
            )
        positional = list(inspect.signature(loss).parameters)[:3]  # student, teacher or target, mask
        self.params = keyword_options(loss, self.params, f"params of loss {self.loss}", skip=positional)
        tau = self.params.get("tau")  # a softmax temperature: 0 divides by zero, below 0 inverts the distribution
        if tau is not None and not (isinstance(tau, (int, float)) and 0 < tau < math.inf):
            raise ConfigError(f"term {self.name!r}: params.tau must be a number above 0, got {tau!r}")


def check_tap(model: nn.Module, tap: str, role: str, term: str) -> None:
    """A tap the model does not offer is an error naming the tap and listing what it offers."""
    if tap == DISPARITY:
        return
    offered = model.offered_taps()
    if tap not in offered:
        raise ConfigError(
            f"term {term!r}: the {role} ({model.arch}) does not offer tap {tap!r}; it offers: "
            f"{', '.join((DISPARITY, *offered))}"
        )


class DistillTerm(nn.Module):
    """A built term: its adapter (if any) trains with the student."""

    def __init__(
        self,
        config: TermConfig,
        student_shape: tuple[int, ...],
        teacher_shape: tuple[int, ...],
        *,
        student_volume: str | None = None,
        teacher_volume: str | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.name = config.name
        self.loss_fn = LOSSES.get(config.loss)  # its params were checked with the config
        if config.adapter is None:  # before the shapes' error, which would suggest an adapter
            for tap, shape in ((config.teacher, teacher_shape), (config.student, student_shape)):
                _check_distribution_axis(config, tap, shape)
        try:
            self.adapter, compared = adapter_and_shape(
                config.adapter,
                config.student,
                student_shape,
                teacher_shape,
                teacher_tap=config.teacher,
                student_volume=student_volume,
                teacher_volume=teacher_volume,
            )
        except ConfigError as exc:
            raise ConfigError(f"term {config.name!r}: {exc}") from None
        if config.adapter is not None:  # without one, both shapes were checked above
            _check_distribution_axis(config, f"{config.teacher} after the adapter", compared)
        self.schedule = build_schedule(config.weight)
        # The distribution losses softmax what they get (at their temperature): a probability would be
        # softened once more (a confident teacher's peak 0.9 came out as 0.14), its log is what they expect.
        logs = config.loss in DISTRIBUTION_LOSSES
        self.log_student = logs and config.student == PROBABILITIES
        self.log_teacher = logs and config.teacher == PROBABILITIES

    def weight(self, step: int, epoch: float) -> float:
        return self.schedule(step, epoch)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The unweighted loss; ``mask`` is at full resolution and is reduced to the compared size."""
        if self.log_student:
            student = _log_probability(student)
        if self.log_teacher:
            teacher = _log_probability(teacher)
        if self.adapter is not None:
            student, teacher = self.adapter(student, teacher)
        if mask is not None:
            mask = resize_mask(mask, tuple(teacher.shape[-2:]))
        return self.loss_fn(student, teacher.detach(), mask, **self.config.params)


def _log_probability(prob: torch.Tensor) -> torch.Tensor:
    """log p, with empty bins at the smallest normal float's log (-87 in float32): a larger floor
    (1e-12) would give them real mass once a loss divides by a temperature (10 % of it at τ = 4 with
    190 empty bins of 192, as the top-k distributions of CoEx and Fast-ACVNet have)."""
    return prob.clamp(min=torch.finfo(prob.dtype).tiny).log()


def _check_distribution_axis(config: TermConfig, tap: str, shape: tuple[int, ...]) -> None:
    """A distribution loss on a volume of groups or channels would take its distribution over them."""
    if config.loss in DISTRIBUTION_LOSSES and len(shape) == 5 and shape[1] != 1:
        raise ConfigError(
            f"term {config.name!r}: {tap} is {'×'.join(map(str, shape[1:]))} (its first axis holds groups or "
            f"channels, not disparities), so loss {config.loss} would take its distribution over them; "
            "use cosine or mse on it, or a logits or prob tap"
        )


def cost_volume_kind(model: nn.Module, tap: str) -> str | None:
    """``correlation`` or ``concatenation`` for a model's ``volume.cost`` tap, as the model declares it
    (``StereoModel.cost_volume_kind``); ``None`` for other taps or a model that does not say."""
    if not is_cost_volume(tap):
        return None
    declared = getattr(model, "cost_volume_kind", None)
    return declared if declared in (CORRELATION, CONCATENATION) else None


def build_terms(
    configs: list[TermConfig], student: nn.Module, teacher: nn.Module, height: int, width: int
) -> nn.ModuleDict:
    """Check every term against both models and build it with the taps' shapes at H×W."""
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"distillation term names must be unique; repeated: {', '.join(duplicates)}")
    for c in configs:
        check_tap(student, c.student, "student", c.name)
        check_tap(teacher, c.teacher, "teacher", c.name)
        along_disparity = any(tap.split(".")[0] in DISPARITY_AXIS_TAPS for tap in (c.student, c.teacher))
        if along_disparity and getattr(student, "max_disp", None) != getattr(teacher, "max_disp", None):
            raise ConfigError(
                f"term {c.name!r}: {c.student} and {c.teacher} lie along the disparity axis, but the student's range "
                f"is {student.max_disp} px and the teacher's {teacher.max_disp}: a bin would mean two disparities "
                "(give both networks one max_disp, or distil features or disparity instead)"
            )
        if c.teacher == DISPARITY and getattr(teacher, "max_disp", 0) < getattr(student, "max_disp", 0):
            raise ConfigError(
                f"term {c.name!r}: the teacher's disparity stops below {teacher.max_disp} px, the student's range is "
                f"{student.max_disp} px: its labels could not reach the top of the student's range (use a teacher "
                "of at least the student's range: teacher.max_disp for an original release)"
            )
    student_shapes = student.tap_shapes(height, width, batch=2) if configs else {}
    teacher_shapes = teacher.tap_shapes(height, width, batch=2) if configs else {}
    disparity_shape = (2, height, width)
    terms = nn.ModuleDict()
    for c in configs:
        s_shape = disparity_shape if c.student == DISPARITY else student_shapes[c.student]
        t_shape = disparity_shape if c.teacher == DISPARITY else teacher_shapes[c.teacher]
        terms[c.name] = DistillTerm(
            c,
            s_shape,
            t_shape,
            student_volume=cost_volume_kind(student, c.student),
            teacher_volume=cost_volume_kind(teacher, c.teacher),
        )
    return terms
