"""Connectors that make a student tap comparable with a teacher tap.

- ``conv``: a learnable 1×1 (2-D features) or 1×1×1 (3-D volumes) convolution mapping the student's
  channels to the teacher's; it trains with the student and is dropped after training.
- ``resize``: interpolates the student tap to the teacher's spatial size (bilinear, trilinear for
  volumes; for disparity logits the disparity axis is resized too).
- ``disparity_pool``: sums the teacher's distribution (or volume) over groups of disparities so that
  it matches a student that works with fewer disparity bins.

Adapters are built from the two taps' shapes (found by a dry run), so a config only names them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.errors import ConfigError

ADAPTERS = ("conv", "resize", "disparity_pool")


def is_distribution(tap: str) -> bool:
    """Taps whose dim 1 is the disparity axis of a distribution (logits or probabilities)."""
    return tap.startswith("logits.") or tap == "prob" or tap == "volume.attention"


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


def build_adapter(
    kind: str | None, student_tap: str, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]
) -> nn.Module | None:
    """The adapter ``kind`` for these shapes; ``None`` when shapes already agree and none is asked."""
    distribution = is_distribution(student_tap)
    if kind is None:
        if student_shape != teacher_shape:
            raise ConfigError(
                f"tap {student_tap}: student shape {student_shape} differs from the teacher's {teacher_shape}; "
                f"add an adapter ({', '.join(ADAPTERS)})"
            )
        return None
    if kind == "conv":
        if distribution or len(student_shape) not in (4, 5):
            raise ConfigError(f"tap {student_tap}: a conv adapter needs a feature map or volume")
        if student_shape[2:] != teacher_shape[2:]:
            raise ConfigError(
                f"tap {student_tap}: conv adapter maps channels only, but sizes differ "
                f"({student_shape[2:]} vs {teacher_shape[2:]}); resize first or choose another tap"
            )
        return ChannelConv(student_shape[1], teacher_shape[1], len(student_shape))
    if kind == "resize":
        return Resize(distribution)
    if kind == "disparity_pool":
        axis = 1 if distribution else 2
        s, t = student_shape[axis], teacher_shape[axis]
        if t % s:
            raise ConfigError(f"tap {student_tap}: teacher has {t} disparities, not a multiple of the student's {s}")
        return DisparityPool(t // s, distribution)
    raise ConfigError(f"unknown adapter {kind!r} (expected one of {', '.join(ADAPTERS)})")
