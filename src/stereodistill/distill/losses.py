"""The loss library: every term a distillation run can name, keyed by name in :data:`LOSSES`.

Conventions, shared by every loss so that configs compose:

- ``loss(student, teacher, mask=None, **params) -> scalar``; the teacher is a target (no gradient).
- Dim 0 is the batch and dim 1 the "feature" axis the loss compares along: channels for features
  and volumes (B×C×H×W, B×C×D×H×W), disparities for distributions (B×D×H×W logits). Disparity
  maps are B×H×W.
- ``mask`` is B×H×W (bool or float weights) over the last two dims and broadcasts over any others;
  positions with weight 0 do not count. Every loss is a (weighted) **mean** over positions, so its
  scale does not depend on the batch size or the resolution.
- Temperature losses multiply by τ² so that their gradients keep the same scale as τ changes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from stereodistill.registry import Registry

LossFn = Callable[..., torch.Tensor]
LOSSES: Registry[LossFn] = Registry("loss")


def _expand_mask(mask: torch.Tensor | None, positions: torch.Tensor) -> torch.Tensor | None:
    """Broadcast a B×H×W mask to the shape of a per-position map (B×…×H×W)."""
    if mask is None:
        return None
    mask = mask.to(positions.dtype)
    if mask.shape[-2:] != positions.shape[-2:] or mask.shape[0] != positions.shape[0]:
        raise ValueError(f"mask {tuple(mask.shape)} does not fit positions {tuple(positions.shape)}")
    while mask.dim() < positions.dim():
        mask = mask.unsqueeze(1)
    return mask.expand_as(positions)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of a per-position map over the positions the mask keeps (0 when it keeps none)."""
    weights = _expand_mask(mask, values)
    if weights is None:
        return values.mean()
    return (values * weights).sum() / weights.sum().clamp(min=1e-12)


def _check(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ: add an adapter to the term"
        )


# --------------------------------------------------------------------------------------- features
@LOSSES.register("cosine")
def cosine(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """1 − cosine similarity along dim 1, averaged over positions (the DSNet code's StereoSimilarity)."""
    _check(student, teacher)
    return masked_mean(1.0 - F.cosine_similarity(student, teacher.detach(), dim=1), mask)


@LOSSES.register("mse")
def mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """FitNets hint: squared error averaged over channels and positions (a B×H×W map, such as a
    disparity, is one channel)."""
    _check(student, teacher)
    error = (student - teacher.detach()).square()
    return masked_mean(error.mean(1) if error.dim() > 3 else error, mask)


def _standardise(x: torch.Tensor, weights: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Zero mean, unit variance per sample and channel over the remaining dims (over the positions
    ``weights``, B×1×…, keeps, where given)."""
    dims = tuple(range(2, x.dim()))
    if weights is None:
        mean = x.mean(dims, keepdim=True)
        var = x.var(dims, keepdim=True, unbiased=False)
    else:
        total = weights.sum(dims, keepdim=True).clamp(min=1e-12)
        mean = (x * weights).sum(dims, keepdim=True) / total
        var = ((x - mean).square() * weights).sum(dims, keepdim=True) / total
    return (x - mean) / var.add(eps).sqrt()


@LOSSES.register("pkd")
def pkd(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """PKD: MSE between Pearson-standardised maps (insensitive to the teacher's feature magnitude), / 2.
    With a mask, the statistics too are over the kept positions only."""
    _check(student, teacher)
    weights = _expand_mask(mask, student[:, :1])
    diff = _standardise(student, weights) - _standardise(teacher.detach(), weights)
    return 0.5 * masked_mean(diff.square().mean(1), mask)


@LOSSES.register("cwd")
def cwd(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None, tau: float = 4.0
) -> torch.Tensor:
    """Channel-wise distillation: per channel, KL between spatial softmaxes at temperature τ, × τ².

    Masked positions are left out of both softmaxes. Averaged over batch and channels.
    """
    _check(student, teacher)
    s = (student / tau).flatten(2)
    t = (teacher.detach() / tau).flatten(2)
    if mask is not None:
        keep = _expand_mask(mask, student[:, 0]).bool().flatten(1).unsqueeze(1)  # B×1×N
        s = s.masked_fill(~keep, -1e4)
        t = t.masked_fill(~keep, -1e4)
    log_p_t = F.log_softmax(t, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - F.log_softmax(s, dim=-1))).sum(-1)  # B×C
    return kl.mean() * tau**2


# --------------------------------------------------------------------------- distributions/volumes
def _logits(x: torch.Tensor) -> torch.Tensor:
    """B×1×D×H×W volumes are B×D×H×W distributions with a singleton channel."""
    return x.squeeze(1) if x.dim() == 5 and x.shape[1] == 1 else x


@LOSSES.register("kl")
def kl(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None, tau: float = 1.0
) -> torch.Tensor:
    """KL(teacher ‖ student) over the disparity axis (dim 1) of logits at temperature τ, × τ²."""
    s, t = _logits(student), _logits(teacher.detach())
    _check(s, t)
    log_p_t = F.log_softmax(t / tau, dim=1)
    per_position = (log_p_t.exp() * (log_p_t - F.log_softmax(s / tau, dim=1))).sum(1)
    return masked_mean(per_position, mask) * tau**2


@LOSSES.register("soft_ce")
def soft_ce(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the student's softmax against the teacher's, over dim 1 (the DSNet code's
    ``CriterionPixelWise``), averaged over positions. The DSNet code sums over the batch instead of
    averaging: its value is this one times the batch size.
    """
    s, t = _logits(student), _logits(teacher.detach())
    _check(s, t)
    per_position = -(F.softmax(t, dim=1) * F.log_softmax(s, dim=1)).sum(1)
    return masked_mean(per_position, mask)


def _pearson_distance(a: torch.Tensor, b: torch.Tensor, dim: int, weights: torch.Tensor | None) -> torch.Tensor:
    """1 − Pearson correlation of a and b along ``dim`` (weighted where weights are given)."""
    if weights is None:
        a = a - a.mean(dim, keepdim=True)
        b = b - b.mean(dim, keepdim=True)
        num = (a * b).sum(dim)
        den = (a.square().sum(dim) * b.square().sum(dim)).clamp(min=1e-12).sqrt()
        return 1.0 - num / den
    total = weights.sum(dim, keepdim=True).clamp(min=1e-12)
    a = a - (a * weights).sum(dim, keepdim=True) / total
    b = b - (b * weights).sum(dim, keepdim=True) / total
    num = (weights * a * b).sum(dim)
    den = ((weights * a.square()).sum(dim) * (weights * b.square()).sum(dim)).clamp(min=1e-12).sqrt()
    return 1.0 - num / den


@LOSSES.register("dist")
def dist(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
    tau: float = 1.0,
    inter: float = 1.0,
    intra: float = 1.0,
) -> torch.Tensor:
    """DIST relation loss on disparity distributions (Huang et al., 2022), × τ².

    Inter: per pixel, 1 − Pearson correlation of the two distributions across disparities.
    Intra: per disparity, 1 − Pearson correlation across the (valid) pixels of each image, averaged
    over the images that keep at least two pixels (one pixel has no correlation to speak of, and a
    mask that keeps nothing gives 0, as every term's does).
    """
    s, t = _logits(student), _logits(teacher.detach())
    _check(s, t)
    p_s = F.softmax(s / tau, dim=1)
    p_t = F.softmax(t / tau, dim=1)
    inter_term = masked_mean(_pearson_distance(p_s, p_t, 1, None), mask)
    flat_s, flat_t = p_s.flatten(2), p_t.flatten(2)  # B×D×N
    if mask is None:
        intra_term = _pearson_distance(flat_s, flat_t, 2, None).mean()
    else:  # over the images with two kept pixels or more: fewer have no correlation to speak of
        weights = mask.to(p_s.dtype).flatten(1).unsqueeze(1).expand_as(flat_s)
        kept = ((mask.flatten(1) != 0).sum(1) >= 2).to(p_s.dtype)  # pixels counted, not weights summed
        intra_term = (_pearson_distance(flat_s, flat_t, 2, weights).mean(1) * kept).sum() / kept.sum().clamp(min=1)
    return (inter * inter_term + intra * intra_term) * tau**2


# ---------------------------------------------------------------------------------------- disparity
@LOSSES.register("smooth_l1")
def smooth_l1(student: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Smooth-L1 (Huber, β = 1) between disparity maps, averaged over valid pixels."""
    _check(student, target)
    return masked_mean(F.smooth_l1_loss(student, target.detach(), reduction="none"), mask)


@LOSSES.register("l1")
def l1(student: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    _check(student, target)
    return masked_mean((student - target.detach()).abs(), mask)


@LOSSES.register("log_l1")
def log_l1(student: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """log(|d̂ − d| + 0.5), averaged over valid pixels (the DSNet code's LogL1_v2): small errors weigh
    more than under L1, large ones less."""
    _check(student, target)
    return masked_mean(torch.log((student - target.detach()).abs() + 0.5), mask)


# ----------------------------------------------------------------------------------------- supervised
def multi_output_loss(
    predictions: list[torch.Tensor],
    target: torch.Tensor,
    mask: torch.Tensor | None,
    weights: tuple[float, ...] | list[float],
    loss: str | LossFn = "smooth_l1",
    clamp: float | None = None,
) -> torch.Tensor:
    """Σ_k w_k · loss(prediction_k, target): a network's own multi-output supervision (e.g. 0.5/0.7/1.0).

    ``predictions`` are coarsest first, final last (``StereoOutput.predictions``). Weights are matched
    from the end, so in eval mode (final prediction only) the final weight applies. ``clamp`` (px)
    truncates the loss: pixels of a prediction further than that from the target are left out, so a
    wrong label (a pseudo-label's residue) pulls no gradient once the network disagrees with it.
    """
    fn = LOSSES.get(loss) if isinstance(loss, str) else loss
    if len(weights) < len(predictions):
        raise ValueError(f"{len(predictions)} predictions but only {len(weights)} loss weights")
    used = list(weights)[len(weights) - len(predictions) :]

    def kept(pred: torch.Tensor) -> torch.Tensor | None:
        if clamp is None:
            return mask
        near = (pred.detach() - target).abs() <= clamp
        return near if mask is None else mask & near

    return sum(w * fn(pred, target, kept(pred)) for w, pred in zip(used, predictions, strict=True))
