"""The schema of a training or distillation run (``stereodistill train|distill CONFIG``).

Every key is documented here and in the README's config reference; a config is validated against
these dataclasses before any work starts (:mod:`stereodistill.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from stereodistill.data.motorcycle import NAME as MOTORCYCLE
from stereodistill.distill.terms import TermConfig
from stereodistill.errors import ConfigError

#: Datasets made in memory, which need no ``root``.
IN_MEMORY = ("synthetic", MOTORCYCLE)


@dataclass
class ModelConfig:
    """The network to train (the student, when distilling)."""

    arch: str
    max_disp: int = 192
    options: dict[str, Any] = field(default_factory=dict)  # further constructor options of the arch
    init: str | None = None  # a stereodistill checkpoint to start from


@dataclass
class TeacherConfig:
    """The teacher: our checkpoint, or an original-repository checkpoint imported on the fly."""

    checkpoint: str | None = None
    original: str | None = None
    arch: str | None = None  # required with ``original``
    max_disp: int = 192

    def __post_init__(self) -> None:
        if (self.checkpoint is None) == (self.original is None):
            raise ConfigError("teacher: give exactly one of 'checkpoint' or 'original'")
        if self.original is not None and self.arch is None:
            raise ConfigError("teacher: 'original' needs 'arch'")


@dataclass
class DatasetConfig:
    """A dataset: a registered reader (``sceneflow``, ``kitti2015``, ``pairs``, …), ``synthetic``, or
    ``middlebury-motorcycle`` (the real pair in scikit-image's wheel)."""

    dataset: str
    root: str | None = None
    split: str = "train"
    list_file: str | None = None
    max_disp: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # ``synthetic`` only: pairs generated in memory.
    pairs: int = 200
    size: tuple[int, int] = (96, 192)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in IN_MEMORY and self.root is None:
            raise ConfigError(f"dataset {self.dataset!r} needs 'root'")


@dataclass
class DataConfig:
    train: DatasetConfig
    val: DatasetConfig | None = None
    crop: tuple[int, int] = (256, 512)
    batch_size: int = 4  # global batch: split across processes under DDP
    workers: int = 0
    color_jitter: bool = True
    vertical_flip: float = 0.0


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "cosine", "onecycle", "step"] = "onecycle"
    warmup_steps: int = 0
    milestones: list[float] = field(default_factory=list)  # epochs, for ``step``
    gamma: float = 0.5  # factor at each milestone, for ``step``
    grad_clip: float | None = None
    accumulate: int = 1


@dataclass
class SupervisedConfig:
    """The ground-truth loss over the network's own outputs (aux heads and final)."""

    loss: str = "smooth_l1"
    weights: list[float] | None = None  # default: the architecture's published weights
    weight: float | dict[str, Any] = 1.0


@dataclass
class DistillConfig:
    terms: list[TermConfig] = field(default_factory=list)
    weighting: dict[str, Any] | None = None  # {type: fixed|uncertainty|dwa, ...}


@dataclass
class StageConfig:
    """A phase of a staged ("progressive") run: its length, active terms and learning rate.

    Give every stage either ``fraction`` (of the run's ``steps``: then ``steps=N`` on the command
    line scales the whole schedule) or absolute ``steps`` (then the run lasts their sum).
    """

    name: str
    fraction: float | None = None
    steps: int | None = None
    terms: list[str] | None = None  # active distillation terms (None: all)
    supervised: bool = True
    lr: float | None = None

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.steps is None):
            raise ConfigError(f"stage {self.name!r}: give exactly one of 'fraction' or 'steps'")


@dataclass
class RunConfig:
    model: ModelConfig
    data: DataConfig
    name: str = "run"
    output: str | None = None  # default runs/<name>
    seed: int = 0
    device: str = "auto"
    steps: int = 1000  # with stages given in absolute steps, their sum instead
    epoch_steps: int | None = None  # steps per "epoch" for schedules; default: one pass over the data
    teacher: TeacherConfig | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    stages: list[StageConfig] = field(default_factory=list)
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    sync_bn: bool = False  # SyncBatchNorm under DDP (CUDA only)
    log_every: int = 10
    val_every: int = 0  # 0: only at the end
    val_samples: int | None = None
    checkpoint_every: int = 0  # 0: only at the end
    keep_last: int = 2
    max_nonfinite: int = 5

    @property
    def total_steps(self) -> int:
        if self.stages and self.stages[0].steps is not None:
            return sum(stage.steps or 0 for stage in self.stages)
        return self.steps

    def stage_ends(self) -> list[int]:
        """The step at which each stage ends (cumulative; a stage may get 0 steps in a short run)."""
        if not self.stages:
            return [self.steps]
        if self.stages[0].steps is not None:
            ends, end = [], 0
            for stage in self.stages:
                end += stage.steps or 0
                ends.append(end)
            return ends
        ends, cumulative = [], 0.0
        for stage in self.stages:
            cumulative += stage.fraction or 0.0
            ends.append(round(cumulative * self.steps))
        return ends

    @property
    def output_dir(self) -> str:
        return self.output or f"runs/{self.name}"

    def __post_init__(self) -> None:
        names = {t.name for t in self.distill.terms}
        if self.stages:
            kinds = {stage.fraction is None for stage in self.stages}
            if len(kinds) > 1:
                raise ConfigError("stages: use 'fraction' for every stage or 'steps' for every stage, not both")
            if self.stages[0].fraction is not None and abs(sum(s.fraction or 0 for s in self.stages) - 1) > 1e-6:
                raise ConfigError("stages: the fractions must add up to 1")
        for stage in self.stages:
            unknown = sorted(set(stage.terms or ()) - names)
            if unknown:
                raise ConfigError(f"stage {stage.name!r} names unknown term(s) {', '.join(unknown)}")
        if self.total_steps < 1:
            raise ConfigError("a run needs at least one step")
