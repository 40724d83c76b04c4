"""What every network returns, and the recorder that fills named taps only when they are asked for."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch


@dataclass
class StereoOutput:
    """``disparity``: B×H×W final prediction. ``aux``: the intermediate full-resolution predictions
    the supervised loss weighs in training (coarsest first; empty in eval). ``taps``: the named
    intermediate tensors that were asked for, and only those.
    """

    disparity: torch.Tensor
    aux: list[torch.Tensor] = field(default_factory=list)
    taps: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def predictions(self) -> list[torch.Tensor]:
        """Every full-resolution prediction, final last: what a multi-output loss iterates over."""
        return [*self.aux, self.disparity]


class TapRecorder:
    """Collects the requested taps; ``record`` with a callable computes a tap only when wanted."""

    def __init__(self, wanted: Iterable[str] = ()) -> None:
        self.wanted = frozenset(wanted)
        self.taps: dict[str, torch.Tensor] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.wanted

    def record(self, name: str, value: torch.Tensor | Callable[[], torch.Tensor]) -> None:
        if name in self.wanted:
            self.taps[name] = value() if callable(value) else value
