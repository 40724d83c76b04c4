"""Run logging: every scalar to a CSV (always), to TensorBoard (when installed), and a progress line
(loss, lr, it/s, ETA), redrawn on a terminal; in a log, written at the first step, every tenth of
the run and at least every 30 s."""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

#: In a log (not a terminal), the longest silence between two progress lines.
PROGRESS_SECONDS = 30.0


class ProgressClock:
    """When a log (not a terminal) is due its next progress line: never more than PROGRESS_SECONDS
    after the last one; ``due(True)`` for a line due anyway (a tenth of the run, the end)."""

    def __init__(self, due_at_start: bool = False) -> None:
        self._last: float | None = None if due_at_start else time.monotonic()

    def due(self, anyway: bool = False) -> bool:
        now = time.monotonic()
        if anyway or self._last is None or now - self._last >= PROGRESS_SECONDS:
            self._last = now
            return True
        return False


class RunLogger:
    """Long-format CSV (``step,stage,name,value``): terms may come and go between stages."""

    def __init__(self, out: Path, *, enabled: bool = True, total_steps: int = 0, label: str = "") -> None:
        """``label``: the run's name at the start of every line, for runs that share a terminal (which
        then get whole lines, not one redrawn line each)."""
        self.enabled = enabled
        self.total_steps = total_steps
        self.prefix = f"[{label}] " if label else ""
        self.tty = sys.stderr.isatty() and not label
        self._clock = ProgressClock(due_at_start=True)  # in a log: the first step, then at least every 30 s
        self._file = None
        self._writer = None
        self._tb = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        self._file = open(out / "scalars.csv", "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._file)
        if self._file.tell() == 0:
            self._writer.writerow(["step", "stage", "name", "value"])
            self._file.flush()  # on disk at once: it marks the folder as a run's, which --force may clear
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # tensorboard is optional
            self._tb = None

    def scalars(
        self,
        step: int,
        values: dict[str, Any],
        *,
        rate: float | None = None,
        stage: str = "",
        every: int = 1,
        force: bool = False,
    ) -> None:
        if not self.enabled:
            return
        if force or every <= 1 or step % every == 0 or step == self.total_steps:
            for name, value in values.items():
                self._writer.writerow([step, stage, name, f"{float(value):.6g}"])
                if self._tb is not None:
                    self._tb.add_scalar(name, float(value), step)
            self._file.flush()
        if rate is None:
            return
        # On a terminal the line redraws every step; in a log file a line at the first step, every
        # tenth of the run, and whenever PROGRESS_SECONDS have passed without one.
        tenth = max(1, self.total_steps // 10)
        if self.tty or self._clock.due(step % tenth == 0 or step == self.total_steps):
            eta = (self.total_steps - step) / rate if rate > 0 else math.inf
            loss = values.get("total", math.nan)
            line = (
                f"  {self.prefix}step {step}/{self.total_steps} [{stage}] loss {loss:.4f} lr {values.get('lr', 0):.2e} "
                f"{rate:.2f} it/s ETA {eta:.0f} s"
            )
            if self.tty:
                print("\r" + line + "   ", end="" if step < self.total_steps else "\n", file=sys.stderr, flush=True)
            else:
                print(line, file=sys.stderr, flush=True)

    def image(self, step: int, name: str, disparity: Any, max_disp: float) -> None:
        """A disparity map (H×W tensor) to TensorBoard as a gray image scaled by ``max_disp``."""
        if self.enabled and self._tb is not None:
            self._tb.add_image(name, (disparity.detach().float().cpu() / max_disp).clamp(0, 1)[None], step)

    def note(self, message: str) -> None:
        if self.enabled:
            print(("\n" if self.tty else "") + self.prefix + message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
