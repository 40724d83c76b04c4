"""The schema of a training or distillation run (``stereodistill train|distill CONFIG``).

Every key is documented here (the comment on its line) and in docs/config.md, generated from these
classes; a config is validated against them before any work starts (:mod:`stereodistill.config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from stereodistill.config import keyword_options
from stereodistill.data.motorcycle import NAME as MOTORCYCLE
from stereodistill.distill.terms import TermConfig
from stereodistill.errors import ConfigError
from stereodistill.runtime import DEVICE_NAMES

#: Datasets made in memory, which need no ``root``.
IN_MEMORY = ("synthetic", MOTORCYCLE)
#: A run's steps when its config gives none.
DEFAULT_STEPS = 1000


@dataclass
class ModelConfig:
    """The network to train (the student, when distilling)."""

    arch: str  # the network (`stereodistill models` lists them)
    max_disp: int = 192  # disparity range in px (a multiple of 4; some networks need more)
    options: dict[str, Any] = field(default_factory=dict)  # further constructor options of the arch
    init: str | None = None  # a stereodistill checkpoint to start from

    def __post_init__(self) -> None:
        self.options = network_options(self.arch, self.options)


def absolute_stages(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A run config's stages when every one is given in absolute steps (they then set its length),
    else [] (stages that mix steps and fractions are the run config's to refuse)."""
    stages = run.get("stages") or []
    absolute = all(
        isinstance(stage, Mapping) and isinstance(stage.get("steps"), int) and stage.get("fraction") is None
        for stage in stages
    )
    return list(stages) if stages and absolute else []


def contradicting_steps(steps: int, total: int) -> str:
    """What is wrong with a ``steps`` beside stages in absolute steps that add up to another number."""
    return (
        f"steps is {steps}, but the stages, given in absolute steps, add up to {total}: the run would train their "
        "sum; change the stages' steps (or give them as fractions of steps)"
    )


def scale_run_steps(run: dict[str, Any], steps: int | None, factor: float, where: str) -> None:
    """Set a run config's length to ``steps`` × ``factor`` (at least 1). Stages in absolute steps set
    the length themselves: each is scaled by ``factor`` (one that had steps keeps at least one), and a
    ``steps`` in ``run`` that contradicts their sum is an error."""
    stages = absolute_stages(run)
    if not stages:
        run["steps"] = max(1, round((steps or 1) * factor))
        return
    total = sum(stage["steps"] for stage in stages)
    if run.get("steps") is not None and run["steps"] != total:
        raise ConfigError(f"{where}: {contradicting_steps(run['steps'], total)}")
    run["stages"] = [
        {**stage, "steps": max(1, round(stage["steps"] * factor)) if stage["steps"] > 0 else 0} for stage in stages
    ]
    run["steps"] = sum(stage["steps"] for stage in run["stages"])


def network_options(arch: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against the network's constructor (docs/config.md lists each one's), and
    ``fine``, which every trainable network takes."""
    from stereodistill.models.base import COMMON_OPTIONS, checked_fine_radius
    from stereodistill.models.zoo import model_class

    cls = model_class(arch)
    checked = keyword_options(cls, options, f"options of {arch}", skip=("max_disp",), also=COMMON_OPTIONS)
    if "fine" in checked:
        checked["fine"] = checked_fine_radius(cls, checked["fine"])
    return checked


@dataclass
class TeacherConfig:
    """The teacher: our checkpoint, or an original-repository checkpoint imported on the fly."""

    checkpoint: str | None = None  # our checkpoint (NAME, NAME.safetensors or NAME.json)
    original: str | None = None  # or a release's checkpoint file, imported with ``arch``
    arch: str | None = None  # required with ``original``
    max_disp: int | None = None  # with ``original``: the network's range (default 192)
    options: dict[str, Any] = field(default_factory=dict)  # with ``original``: e.g. {align_corners: true}

    def __post_init__(self) -> None:
        if (self.checkpoint is None) == (self.original is None):
            raise ConfigError("give exactly one of 'checkpoint' or 'original'")
        if self.original is not None and self.arch is None:
            raise ConfigError("'original' needs 'arch'")
        if self.arch is not None and self.original is None:  # ours records its network: a name here would go unread
            raise ConfigError("'arch' applies to an 'original' checkpoint (ours records its own network)")
        if self.options and self.original is None:
            raise ConfigError("'options' apply to an 'original' checkpoint (ours records its own)")
        if self.max_disp is not None and self.original is None:
            raise ConfigError("'max_disp' applies to an 'original' checkpoint (ours records its own)")
        if self.original is not None and self.max_disp is None:
            self.max_disp = 192
        if self.original is not None:
            self.options = network_options(self.arch, self.options)


@dataclass
class DatasetConfig:
    """A dataset: a registered reader (``sceneflow``, ``kitti2015``, ``pairs``, …), ``synthetic``, or
    ``middlebury-motorcycle`` (the real pair in scikit-image's wheel)."""

    dataset: str  # a reader (sceneflow, kitti2012/2015, middlebury, eth3d, pairs), synthetic or middlebury-motorcycle
    root: str | None = None  # dataset root folder (a CSV for pairs)
    split: str | None = None  # train, test or all (null: train to train on; to score, each reader's evaluation split)
    list_file: str | None = None  # restrict to the samples listed (ids or image paths, one per line)
    max_disp: float | None = None  # ground truth at or beyond this is not valid (null: the network's max_disp)
    options: dict[str, Any] = field(default_factory=dict)  # reader options (see "Dataset options")
    # ``synthetic`` only: pairs generated in memory.
    pairs: int = 200  # synthetic: how many pairs
    size: tuple[int, int] = (96, 192)  # synthetic: H, W
    seed: int = 0  # synthetic: seed of the pairs (test pairs never repeat train pairs)

    def __post_init__(self) -> None:
        from stereodistill.data.datasets import DATASETS

        if self.dataset not in IN_MEMORY and self.dataset not in DATASETS:  # before 'root', which it would ask for
            valid = sorted((*DATASETS.names(), *IN_MEMORY))
            close = difflib.get_close_matches(self.dataset, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown dataset {self.dataset!r}{hint}; valid: {', '.join(valid)}")
        self._check_keys_apply()
        if self.max_disp is not None and not (math.isfinite(self.max_disp) and self.max_disp > 0):
            # 0 or less leaves no valid ground-truth pixel: a run would train at a loss of 0
            raise ConfigError(f"max_disp must be a number of pixels above 0 (null: the network's), got {self.max_disp}")
        if self.dataset == "synthetic" and self.split not in (None, "train", "test"):  # it picks the pairs' seed
            raise ConfigError(f"synthetic data has a train and a test split, got split {self.split!r}")
        if self.dataset not in IN_MEMORY and self.root is None:
            raise ConfigError(f"dataset {self.dataset!r} needs 'root'")
        reader, fixed = reader_of(self.dataset)
        self.options = keyword_options(reader, self.options, f"options of {self.dataset}", skip=fixed)

    def _check_keys_apply(self) -> None:
        """A key the dataset does not read is an error, not ignored: ``root`` left in a synthetic set, or a
        synthetic ``pairs`` kept after switching to a reader, would say the run used data it did not."""
        if self.dataset in IN_MEMORY:
            given = [key for key in ("root", "list_file") if getattr(self, key) is not None]
            made = "pairs are generated in memory" if self.dataset == "synthetic" else "pair is in scikit-image's wheel"
            if given:
                verb, them = ("do not apply", "them") if len(given) > 1 else ("does not apply", "it")
                raise ConfigError(f"{' and '.join(given)} {verb} to {self.dataset} (its {made}); drop {them}")
        if self.dataset == "synthetic":
            return
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in ("pairs", "size", "seed")}
        given = [key for key, default in defaults.items() if _differs(getattr(self, key), default)]
        if given:
            raise ConfigError(
                f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} to synthetic data only, not to "
                f"{self.dataset} (which reads its pairs as they are); drop {'them' if len(given) > 1 else 'it'}"
            )

    @property
    def evaluation_split(self) -> str:
        """The split scored when none is given: the one a benchmark evaluates on, never the one a
        run trains on by default where the dataset has another (SceneFlow's TEST, synthetic test)."""
        if self.dataset == "synthetic":
            return "test"
        if self.dataset == MOTORCYCLE:  # one pair: no split is read ("train", as recorded before this default)
            return "train"
        return reader_of(self.dataset)[0].scoring_split(self.list_file, self.options)


def _differs(value: Any, default: Any) -> bool:
    """A value other than the default (a size given as a list is the default tuple)."""
    return (tuple(value) if isinstance(value, list) else value) != default


#: Reader parameters a dataset config sets through its own keys, not through ``options``.
_READER_KEYS = ("root", "split", "list_file", "max_disp", "transform")


def reader_of(dataset: str) -> tuple[Any, tuple[str, ...]]:
    """What a dataset's ``options`` are passed to, and the parameters they may not set (the config's
    own keys set those); docs/config.md lists the rest from the same answer."""
    from stereodistill.data.datasets import DATASETS
    from stereodistill.data.motorcycle import MotorcycleStereo
    from stereodistill.data.synthetic import SynthConfig

    if dataset == "synthetic":
        return SynthConfig, ("height", "width", "max_disp")  # from the config's size and max_disp
    if dataset == MOTORCYCLE:
        return MotorcycleStereo, ("max_disp",)
    return DATASETS.get(dataset), _READER_KEYS


@dataclass
class DataConfig:
    """What a step trains on: the data, the crop and the batch."""

    train: DatasetConfig
    val: DatasetConfig | None = None
    unlabeled: DatasetConfig | None = None  # pairs without ground truth (any it has is ignored)
    unlabeled_ratio: float = 0.5  # share of the steps that draw their batch from ``unlabeled``
    crop: tuple[int, int] = (256, 512)  # training crop H, W
    batch_size: int = 4  # global batch: split across processes under DDP
    workers: int = 0  # data loader processes (0: in the training process)
    color_jitter: bool = True  # asymmetric photometric jitter of the two views
    vertical_flip: float = 0.0  # probability of flipping both views upside down

    def __post_init__(self) -> None:
        #: The validation split was not given but resolved here: a resumed run keeps the one it recorded
        #: (one written before the validation default changed reads as it did).
        self.val_split_defaulted = self.val is not None and self.val.split is None
        for dataset in (self.train, self.unlabeled):
            if dataset is not None and dataset.split is None:
                dataset.split = "train"
        if self.val is not None and self.val.split is None:
            self.val.split = self.val.evaluation_split
        if not 0 < self.unlabeled_ratio <= 1:
            raise ConfigError(f"data.unlabeled_ratio must be in (0, 1], got {self.unlabeled_ratio}")
        if len(self.crop) != 2 or not all(isinstance(v, int) and v >= 8 for v in self.crop):
            raise ConfigError(f"data.crop must be [H, W], whole numbers of at least 8 px, got {list(self.crop)}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ConfigError(f"data.batch_size must be a whole number of at least 1, got {self.batch_size!r}")
        if not 0 <= self.vertical_flip <= 1:
            raise ConfigError(f"data.vertical_flip is a probability in [0, 1], got {self.vertical_flip}")
        if not (isinstance(self.workers, int) and self.workers >= 0):
            raise ConfigError(f"data.workers must be a whole number of at least 0, got {self.workers!r}")

    def unlabeled_steps(self, step: int) -> int:
        """How many of the first ``step`` steps draw an unlabeled batch: ``floor(step × ratio)``, spread
        evenly, so the source of a step (and a resumed run's position in both lists) follows from it."""
        return 0 if self.unlabeled is None else math.floor(step * self.unlabeled_ratio + 1e-9)

    def is_unlabeled_step(self, step: int) -> bool:
        return self.unlabeled_steps(step + 1) > self.unlabeled_steps(step)


@dataclass
class OptimConfig:
    """The optimiser and its learning-rate schedule."""

    name: Literal["adam", "adamw"] = "adamw"  # adam or adamw
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # decoupled for adamw, L2 for adam
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's beta1, beta2
    schedule: Literal["constant", "cosine", "onecycle", "step"] = "onecycle"  # learning-rate schedule over the run
    warmup_steps: int = 0  # linear warm-up steps before the schedule
    milestones: list[float] = field(default_factory=list)  # epochs, for ``step``
    gamma: float = 0.5  # factor at each milestone, for ``step``
    grad_clip: float | None = None  # clip the gradient norm to this (null: no clipping)
    accumulate: int = 1  # micro-batches accumulated per step
    anchor: float = 0.0  # pull toward the weights the run started from, decoupled like adamw's decay (L2-SP)

    def __post_init__(self) -> None:
        if not 0 < self.lr < math.inf:  # also refuses NaN
            raise ConfigError(f"optim.lr must be a finite number above 0, got {self.lr}")
        if not 0 <= self.anchor < math.inf:
            raise ConfigError(f"optim.anchor must be a finite number of at least 0, got {self.anchor}")
        if self.accumulate < 1:
            raise ConfigError(f"optim.accumulate must be at least 1, got {self.accumulate}")
        if not 0 <= self.weight_decay < math.inf:
            raise ConfigError(f"optim.weight_decay must be a finite number of at least 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be at least 0, got {self.warmup_steps}")
        if not 0 < self.gamma < math.inf or any(not m >= 0 for m in self.milestones):
            raise ConfigError(
                f"optim.gamma must be a number above 0 and optim.milestones epochs >= 0, got {self.gamma}, "
                f"{self.milestones}"
            )
        if self.grad_clip is not None and not 0 < self.grad_clip < math.inf:
            raise ConfigError(f"optim.grad_clip must be a number above 0 (null: no clipping), got {self.grad_clip}")
        if self.milestones and self.schedule != "step":  # only the step schedule reads them
            raise ConfigError(
                f"optim.milestones are the step schedule's; the {self.schedule} schedule would not read them "
                "(set schedule: step, or drop them)"
            )


@dataclass
class SupervisedConfig:
    """The ground-truth loss over the network's own outputs (aux heads and final)."""

    loss: str = "smooth_l1"  # smooth_l1, l1 or log_l1 against the ground truth
    weights: list[float] | None = None  # default: the architecture's published weights
    weight: float | dict[str, Any] = 1.0  # a number or a schedule (below)
    clamp: float | None = None  # px: pixels predicted further than this from the label are left out (robust)

    def __post_init__(self) -> None:
        from stereodistill.distill.weights import build_schedule

        build_schedule(self.weight, "weight")
        if self.clamp is not None and not self.clamp > 0:
            raise ConfigError(f"supervised.clamp must be a positive number of pixels, got {self.clamp}")
        if self.weights is not None and not all(0 <= w < math.inf for w in self.weights):
            raise ConfigError(f"supervised.weights must be finite numbers of at least 0, got {self.weights}")


@dataclass
class PhotometricConfig:
    """A loss that needs no ground truth: the left view against the right view warped by the network's
    disparity (SSIM and L1), plus an edge-aware smoothness; on every batch, labelled or not. It lets a
    network learn from the images themselves (Monodepth; MADNet's online adaptation); alone it sharpens
    textured regions and harms occluded and textureless ones (docs/results.md). Asymmetric colour
    jitter breaks the views' agreement it relies on, so ``data.color_jitter`` then jitters both views
    alike. ``mask``: ``none``, everywhere; ``valid``, only where the batch has ground truth or a kept
    pseudo-label; ``lr_consistent``, only where the network's own right view (a second forward pass,
    without gradients) agrees within ``mask_threshold`` px, which leaves out occlusions and
    mismatches."""

    weight: float | dict[str, Any] = 0.0  # a number or a schedule (below); 0: off
    ssim: float = 0.85  # share of the SSIM distance in the reconstruction error (the rest: L1)
    smoothness: float = 0.01  # weight of the edge-aware smoothness within the term
    occlusion: bool = True  # leave out the pixels the right view cannot see, by the network's own disparity
    mask: Literal["none", "valid", "lr_consistent"] = "none"  # where else it applies (see the section)
    mask_threshold: float = 1.0  # lr_consistent: px

    def __post_init__(self) -> None:
        from stereodistill.distill.weights import build_schedule

        build_schedule(self.weight, "weight")
        if not 0 <= self.ssim <= 1:
            raise ConfigError(f"photometric.ssim must be in [0, 1], got {self.ssim}")
        if self.smoothness < 0:
            raise ConfigError(f"photometric.smoothness must not be negative, got {self.smoothness}")

    @property
    def enabled(self) -> bool:
        return self.weight != 0


@dataclass
class DistillConfig:
    """The distillation terms (student tap against teacher tap, by name) and how they combine."""

    terms: list[TermConfig] = field(default_factory=list)
    weighting: dict[str, Any] | None = None  # {type: fixed|uncertainty|dwa, ...}

    def __post_init__(self) -> None:
        from stereodistill.distill.weights import check_weighting

        check_weighting(self.weighting)


@dataclass
class StageConfig:
    """A phase of a staged ("progressive") run: its length, active terms and learning rate.

    Give every stage either ``fraction`` (of the run's ``steps``: then ``steps=N`` on the command
    line scales the whole schedule) or absolute ``steps`` (then the run lasts their sum).
    """

    name: str  # stage name (in scalars.csv)
    fraction: float | None = None  # share of the run's steps
    steps: int | None = None  # or absolute steps (then in every stage)
    terms: list[str] | None = None  # active distillation terms (None: all)
    supervised: bool = True  # include the ground-truth loss
    lr: float | None = None  # peak learning rate of the stage (default the run's)

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.steps is None):
            raise ConfigError(f"stage {self.name!r}: give exactly one of 'fraction' or 'steps'")
        if self.fraction is not None and not 0 <= self.fraction <= 1:
            raise ConfigError(f"stage {self.name!r}: fraction must be in [0, 1], got {self.fraction}")
        if self.steps is not None and self.steps < 0:
            raise ConfigError(f"stage {self.name!r}: steps must be at least 0, got {self.steps}")
        if self.lr is not None and not 0 < self.lr < math.inf:
            raise ConfigError(f"stage {self.name!r}: lr must be a finite number above 0, got {self.lr}")


@dataclass
class RunConfig:
    """A training or distillation run."""

    model: ModelConfig
    data: DataConfig
    name: str = "run"  # run name (default output runs/NAME)
    output: str | None = None  # default runs/<name>
    seed: int = 0  # seed of weights, data order and augmentation
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    steps: int = DEFAULT_STEPS  # with stages given in absolute steps, their sum (give it or leave it out)
    epoch_steps: int | None = None  # steps per "epoch" for schedules (dwa: real passes); default: one pass
    teacher: TeacherConfig | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    stages: list[StageConfig] = field(default_factory=list)
    amp: Literal["none", "bf16", "fp16"] = "none"  # autocast: bf16 (CPU or CUDA) or fp16 (CUDA)
    channels_last: bool = False  # channels-last memory format
    sync_bn: bool = False  # SyncBatchNorm under DDP (CUDA only)
    freeze_bn: bool = False  # BatchNorm keeps its running statistics while the weights train (fine-tuning)
    precise_bn: int = 0  # after the last step, BatchNorm statistics recomputed over N batches of uncropped train pairs
    log_every: int = 10  # steps between scalars.csv rows
    val_every: int = 0  # 0: only at the end
    val_samples: int | None = None  # validate on the first N pairs only (default all)
    checkpoint_every: int = 0  # 0: only at the end
    keep_last: int = 2  # step checkpoints kept
    max_nonfinite: int = 5  # steps with a non-finite loss or gradient in a row before the run aborts

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
        stage_names = [stage.name for stage in self.stages]
        if len(set(stage_names)) != len(stage_names):
            raise ConfigError(f"stages: each needs its own name (scalars.csv logs them by name), got {stage_names}")
        if not DEVICE_NAMES.fullmatch(self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.keep_last < 0:
            raise ConfigError(f"keep_last must be at least 0 (0: every step checkpoint), got {self.keep_last}")
        for key in ("log_every", "max_nonfinite"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.precise_bn < 0:
            raise ConfigError(f"precise_bn must be at least 0 (0: off), got {self.precise_bn}")
        if self.precise_bn and self.freeze_bn:
            raise ConfigError(
                "precise_bn recomputes the BatchNorm statistics that freeze_bn keeps: set one of them, not both"
            )
        for key in ("val_every", "checkpoint_every"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be at least 0 (0: only at the end), got {getattr(self, key)}")
        for key in ("val_samples", "epoch_steps"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1 (null: the default), got {getattr(self, key)}")
        if self.stages:
            kinds = {stage.fraction is None for stage in self.stages}
            if len(kinds) > 1:
                raise ConfigError("stages: use 'fraction' for every stage or 'steps' for every stage, not both")
            if self.stages[0].fraction is not None and abs(sum(s.fraction or 0 for s in self.stages) - 1) > 1e-6:
                raise ConfigError("stages: the fractions must add up to 1")
            if self.stages[0].steps is not None:  # the stages set the run's length, which steps must not contradict
                total = sum(stage.steps or 0 for stage in self.stages)
                if self.steps not in (DEFAULT_STEPS, total):
                    raise ConfigError(contradicting_steps(self.steps, total))
                self.steps = total  # what config.yaml, reports and resumes then say
        for stage in self.stages:
            unknown = sorted(set(stage.terms or ()) - names)
            if unknown:
                raise ConfigError(f"stage {stage.name!r} names unknown term(s) {', '.join(unknown)}")
            active = names if stage.terms is None else set(stage.terms)
            runs = (stage.fraction or 0) > 0 or (stage.steps or 0) > 0  # a stage of no steps never starts
            if runs and not (stage.supervised or active or self.photometric.enabled):  # found now, not when it starts
                raise ConfigError(
                    f"stage {stage.name!r} has neither supervision nor active terms: it has no loss; set supervised: "
                    "true, list a term, or set photometric.weight"
                )
        if self.total_steps < 1:
            raise ConfigError("a run needs at least one step")
        train_disp = self.data.train.max_disp  # ground truth the network cannot reach, trained toward
        if train_disp is not None and train_disp > self.model.max_disp:
            raise ConfigError(
                f"data.train.max_disp is {train_disp:g} px, beyond model.max_disp ({self.model.max_disp}): ground "
                f"truth the network cannot reach would be trained on; set data.train.max_disp to "
                f"{self.model.max_disp} or leave it out (null: the network's)"
            )
        if self.val_samples is not None and self.data.val is None:
            raise ConfigError("val_samples is given but the run has no data.val to take them from")
        if self.data.unlabeled is not None:
            self._check_unlabeled()

    @property
    def reads_ground_truth(self) -> bool:
        """Whether a labelled batch's ground truth is read: by the supervised loss (unless its weight is
        0 or no stage includes it), a term's mask, or the photometric loss kept to pixels with ground
        truth."""
        from stereodistill.distill.masks import GROUND_TRUTH_MASKS

        weight = self.supervised.weight
        supervised = any(stage.supervised for stage in self.stages) if self.stages else True
        return (
            (supervised and not (isinstance(weight, (int, float)) and weight == 0))
            or any(term.mask in GROUND_TRUTH_MASKS for term in self.distill.terms)
            or (self.photometric.enabled and self.photometric.mask == "valid")
        )

    def _check_unlabeled(self) -> None:
        """Unlabeled batches learn from the teacher alone: terms must exist on every step and must not
        read the ground truth (checked here, before any work, not found as a zero mask later)."""
        from stereodistill.distill.masks import GROUND_TRUTH_MASKS

        if not self.distill.terms and not self.photometric.enabled:
            raise ConfigError(
                "data.unlabeled: pairs without ground truth learn only from distillation terms or the photometric "
                "loss, and there are neither (use `stereodistill distill` with distill.terms, or photometric.weight)"
            )
        for term in self.distill.terms:
            if term.mask in GROUND_TRUTH_MASKS:
                raise ConfigError(
                    f"term {term.name!r}: mask {term.mask} reads the ground truth, which the data.unlabeled pairs "
                    "do not have; use confidence or lr_consistent"
                )
        if self.photometric.enabled and self.photometric.mask == "valid":
            raise ConfigError(
                "photometric.mask valid keeps only pixels with ground truth, which the data.unlabeled pairs do not "
                "have; use none or lr_consistent"
            )
        for stage in self.stages:
            if stage.terms is not None and not stage.terms and not self.photometric.enabled:
                raise ConfigError(f"stage {stage.name!r} has no terms: its unlabeled batches would have no loss")
