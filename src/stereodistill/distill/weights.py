"""How much each loss term counts, and when: schedules per term, adaptive weighting across terms.

A term's weight is a number or a schedule of the training position (step, and epoch as a float).
On top, a run may weigh its terms adaptively: uncertainty weighting learns one log-variance per
term (Kendall et al., 2018) and trains it with the student; DWA re-weights terms by how fast each
one's loss falls (Liu et al., 2019). Both keep their state in ``state_dict`` so a resumed run
continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stereodistill.errors import ConfigError


# ------------------------------------------------------------------------------------ schedules
@dataclass(frozen=True)
class Constant:
    value: float

    def __call__(self, step: int, epoch: float) -> float:
        return self.value


@dataclass(frozen=True)
class StepDecay:
    """``value`` divided by ``rate`` at each listed epoch reached (the DSNet code's feat/soft epochs)."""

    value: float
    epochs: tuple[float, ...]
    rate: float = 10.0

    def __call__(self, step: int, epoch: float) -> float:
        passed = sum(1 for boundary in self.epochs if epoch >= boundary)
        return self.value / self.rate**passed


@dataclass(frozen=True)
class Ramp:
    """From ``start`` to ``end`` over ``steps`` steps beginning at step ``begin``; linear or cosine."""

    end: float
    steps: int
    start: float = 0.0
    begin: int = 0
    shape: str = "linear"

    def __call__(self, step: int, epoch: float) -> float:
        progress = min(max((step - self.begin) / max(self.steps, 1), 0.0), 1.0)
        if self.shape == "cosine":
            progress = 0.5 - 0.5 * math.cos(math.pi * progress)
        return self.start + (self.end - self.start) * progress


Schedule = Constant | StepDecay | Ramp


#: ``{type: NAME, ...}`` weight schedules; their other keys are the fields of the class.
SCHEDULES: dict[str, type] = {"step": StepDecay, "linear": Ramp, "cosine": Ramp}


def build_schedule(spec: float | int | Mapping[str, Any], where: str = "weight") -> Schedule:
    """A number, or ``{type: step|linear|cosine, ...}`` (docs/config.md); unknown keys and values of
    the wrong type are errors naming the key."""
    from stereodistill.config import from_dict

    if isinstance(spec, bool) or not isinstance(spec, int | float | Mapping):
        raise ConfigError(f"{where}: a weight must be a number or a schedule, got {spec!r}")
    if isinstance(spec, int | float):
        _check_weight(spec, where)
        return Constant(float(spec))
    kind = spec.get("type")
    if kind not in SCHEDULES:
        raise ConfigError(f"{where}: unknown weight schedule type {kind!r} (expected step, linear or cosine)")
    fields = {k: v for k, v in spec.items() if k != "type"}
    if "shape" in fields:
        raise ConfigError(f"{where}: the ramp's shape is its type ({kind!r}); drop 'shape'")
    if SCHEDULES[kind] is Ramp:
        valid = [f.name for f in dataclasses.fields(Ramp) if f.name != "shape"]  # set by the type, not given
        unknown = sorted(set(fields) - set(valid))
        if unknown:
            close = difflib.get_close_matches(unknown[0], valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r} of a {kind} schedule{hint} (valid: {', '.join(valid)})"
            )
        fields["shape"] = kind
    schedule = from_dict(SCHEDULES[kind], fields, where)
    for name in ("value", "start", "end"):
        if hasattr(schedule, name):
            _check_weight(getattr(schedule, name), f"{where}.{name}")
    if isinstance(schedule, StepDecay) and not 0 < schedule.rate < math.inf:  # 0 divides by zero at the first
        raise ConfigError(  # epoch listed, below 0 makes the weight negative
            f"{where}.rate: the weight is divided by it at each listed epoch, so it must be a finite number above 0, "
            f"got {schedule.rate}"
        )
    return schedule


def _check_weight(value: float, where: str) -> None:
    """A weight is a finite number >= 0: a negative one would train the network to raise its loss."""
    if not 0 <= value < math.inf:  # also refuses NaN
        raise ConfigError(f"{where}: a weight must be a finite number >= 0, got {value}")


# ---------------------------------------------------------------------------- adaptive weighting
class FixedWeighting(nn.Module):
    """No adaptation: the total is the sum of the (scheduled) weighted terms."""

    def __init__(self) -> None:  # no options (nn.Module's own would take any keyword)
        super().__init__()

    def forward(self, losses: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        total = sum(losses.values(), torch.zeros(()))
        return total, dict.fromkeys(losses, 1.0)

    def end_epoch(self, epoch_means: Mapping[str, float]) -> None:
        return None


class UncertaintyWeighting(nn.Module):
    """Kendall et al.: total = Σ_k ½·exp(−s_k)·L_k + ½·s_k with learnable s_k = log σ_k².

    ``s_k`` is clamped to ``[-clamp, clamp]`` in the forward pass, so that no term can be switched
    off (s → ∞) or blow up (s → −∞) however the losses behave early in training.
    """

    def __init__(self, names: Sequence[str], clamp: float = 4.0) -> None:
        super().__init__()
        self.names = list(names)
        self.clamp = clamp
        self.log_vars = nn.Parameter(torch.zeros(len(self.names)))

    def forward(self, losses: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.log_vars.clamp(-self.clamp, self.clamp)
        total = torch.zeros((), device=s.device)
        factors = {}
        for i, name in enumerate(self.names):
            if name in losses:
                total = total + 0.5 * torch.exp(-s[i]) * losses[name] + 0.5 * s[i]
                factors[name] = float(0.5 * torch.exp(-s[i]).detach())
        return total, factors

    def end_epoch(self, epoch_means: Mapping[str, float]) -> None:
        return None


class DynamicWeightAverage(nn.Module):
    """DWA: w_k = K·softmax_k(r_k / T) with r_k = L_k(e−1) / L_k(e−2), from per-epoch mean losses.

    Weights stay 1 for the first two epochs, which are real passes over the training data (not
    ``epoch_steps``, which paces the schedules: DWA compares mean losses over the same samples).
    The losses are the terms' raw values, before their weight schedules: a schedule that divides a
    term's weight by 10 at an epoch would otherwise read as that term learning 10× faster. The
    history lives in a buffer (checkpointed).
    """

    def __init__(self, names: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__()
        self.names = list(names)
        self.temperature = temperature
        self.register_buffer("history", torch.full((2, len(self.names)), math.nan))
        self.register_buffer("weights", torch.ones(len(self.names)))

    def forward(self, losses: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        total = torch.zeros((), device=self.weights.device)
        factors = {}
        for i, name in enumerate(self.names):
            if name in losses:
                total = total + self.weights[i] * losses[name]
                factors[name] = float(self.weights[i])
        return total, factors

    def end_epoch(self, epoch_means: Mapping[str, float]) -> None:
        current = torch.tensor([epoch_means.get(n, math.nan) for n in self.names], dtype=self.history.dtype)
        self.history[0] = self.history[1]
        self.history[1] = current.to(self.history.device)
        ratios = self.history[1] / self.history[0]
        known = torch.isfinite(ratios)
        if known.any():  # a term a stage left out of either epoch has no rate: it counts as level (1)
            ratios = torch.where(known, ratios, torch.ones_like(ratios))
            self.weights.copy_(len(self.names) * torch.softmax(ratios / self.temperature, dim=0))


#: ``distill.weighting: {type: NAME, ...}``; the other keys are the class's keyword parameters.
WEIGHTINGS: dict[str, type[nn.Module]] = {
    "fixed": FixedWeighting,
    "uncertainty": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
}


def check_weighting(spec: Mapping[str, Any] | None, where: str = "weighting") -> dict[str, Any]:
    """The weighting's options, checked (type, then each key against its class) before any work."""
    from stereodistill.config import keyword_options

    spec = dict(spec or {})
    kind = spec.pop("type", "fixed")
    if kind not in WEIGHTINGS:
        raise ConfigError(f"{where}: unknown weighting {kind!r} (expected fixed, uncertainty or dwa)")
    if kind == "fixed" and spec:
        raise ConfigError(f"{where}: the fixed weighting takes no options, got {', '.join(spec)}")
    options = keyword_options(WEIGHTINGS[kind], spec, f"{where} ({kind})", skip=("names",))
    for key in ("clamp", "temperature"):  # a bound on log-variances, a softmax temperature: both above 0
        value = options.get(key)
        if value is not None and not (isinstance(value, (int, float)) and 0 < value < math.inf):
            raise ConfigError(f"{where} ({kind}): {key} must be a number above 0, got {value!r}")
    return options


def weighting_in_full(spec: Any) -> Any:
    """A weighting as it runs: its type and every option, defaults written out (``None`` is ``{type:
    fixed}``), so that two configs that mean one weighting compare equal. A spec that does not check
    comes back as it is."""
    if not (spec is None or isinstance(spec, Mapping)):
        return spec
    try:
        options = check_weighting(spec)
    except ConfigError:
        return spec
    kind = (spec or {}).get("type", "fixed")
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(WEIGHTINGS[kind]).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return {"type": kind, **defaults, **options}


def build_weighting(spec: Mapping[str, Any] | None, names: Sequence[str]) -> nn.Module:
    """``None``/``{type: fixed}``, ``{type: uncertainty, clamp: 4}`` or ``{type: dwa, temperature: 2}``."""
    options = check_weighting(spec)
    kind = (spec or {}).get("type", "fixed")
    return FixedWeighting() if kind == "fixed" else WEIGHTINGS[kind](names, **options)
