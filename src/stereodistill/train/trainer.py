"""The training loop, for supervised training and distillation alike.

One optimiser step = ``accumulate`` micro-batches. Per micro-batch: the teacher (eval mode, no
gradient, never wrapped in DDP) produces the taps the terms ask for; the student (wrapped, with the
adapters and learnable loss weights, so DDP synchronises all of them) produces its taps; the loss is
the supervised term plus the active distillation terms, each with its scheduled weight, combined
by the run's weighting. A non-finite loss or gradient skips the step; ``max_nonfinite`` in a row abort
the run.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from stereodistill.checkpoint import check_init, checkpoint_paths, load_model, read_metadata, read_weights, save_model
from stereodistill.config import to_dict
from stereodistill.distill.losses import multi_output_loss
from stereodistill.distill.masks import full_resolution_mask, left_right_consistent, right_view_disparity
from stereodistill.distill.photometric import self_supervised_loss
from stereodistill.distill.terms import DISPARITY, build_terms
from stereodistill.distill.weights import build_schedule, build_weighting
from stereodistill.errors import ConfigError, DataError, SharedRefusal, StereoDistillError
from stereodistill.evaluate.evaluator import evaluate_dataset
from stereodistill.fileio import nan_for_null
from stereodistill.models import build_model
from stereodistill.models.import_original import import_checkpoint
from stereodistill.models.state_dict import load_state_strict
from stereodistill.models.zoo import model_class
from stereodistill.runtime import exit_with_parent, resolve_device
from stereodistill.train import data as train_data
from stereodistill.train import precise_bn, run_folder
from stereodistill.train import state as ckpt
from stereodistill.train.config import RunConfig, StageConfig
from stereodistill.train.logging import RunLogger
from stereodistill.train.optim import build_optimizer, lr_factor, pull_toward, set_lr

SUPERVISED = "supervised"
PHOTOMETRIC = "photometric"


class TrainingError(StereoDistillError, RuntimeError):
    """A run cannot go on (e.g. the loss stayed non-finite)."""


def run_reads(config: RunConfig) -> list[str | Path]:
    """The files and folders a run reads (checkpoints, dataset roots and lists): never to be cleared."""
    found: list[str | Path] = []
    if config.model.init:
        found += checkpoint_paths(config.model.init)
    if config.teacher is not None:
        found += checkpoint_paths(config.teacher.checkpoint) if config.teacher.checkpoint else [config.teacher.original]
    for dataset in (config.data.train, config.data.val, config.data.unlabeled):
        if dataset is not None:
            found += [path for path in (dataset.root, dataset.list_file) if path]
    return found


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_channels_last(module: nn.Module) -> None:
    """NHWC weights for the 2-D convolutions (where oneDNN and cuDNN run faster); 3-D ones stay."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def new_run_hint(out: Path) -> str:
    """What to do about a folder that holds a run, when a new one is asked for there."""
    if not ckpt.complete_checkpoints(out / "checkpoints") and not (out / "model.json").is_file():
        return "it stopped before its first checkpoint, so there is nothing to resume: --force to start over"
    return "--resume to continue it, or --force to start over"


def check_batch_of_one(config: RunConfig, world: int = 1) -> None:
    """Refuse, before any step, a network whose batch norm sees a single value per channel at a batch
    of one pair and this crop (PSMNet's and CFNet's pyramid pooling on small crops), which fails in
    its first step; a forward on the meta device finds it (shapes only: no memory, no arithmetic)."""
    height, width = config.data.crop
    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        model = build_model(config.model.arch, max_disp=config.model.max_disp, **config.model.options).train()
        try:
            model(torch.empty(1, 3, height, width), torch.empty(1, 3, height, width))
            return
        except Exception as exc:  # anything else (an operation meta tensors lack): the first step will tell
            if not (isinstance(exc, ValueError) and "more than 1 value per channel" in str(exc)):
                return
    raise ConfigError(
        f"{config.model.arch} cannot train on one pair at a time at a crop of {height}x{width}: a batch norm of it "
        f"would see a single value per channel; use data.batch_size {2 * world} or more (2 per process), a larger "
        "data.crop, or freeze_bn: true"
    )


class StudentWithExtras(nn.Module):
    """What trains: the student, the terms' adapters and the weighting's parameters (one DDP unit)."""

    def __init__(self, student: nn.Module, terms: nn.ModuleDict, weighting: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.terms = terms
        self.weighting = weighting

    def extras(self) -> nn.ModuleDict:
        return nn.ModuleDict({"terms": self.terms, "weighting": self.weighting})

    def forward(
        self, left: torch.Tensor, right: torch.Tensor, taps: frozenset[str], losses_of: Callable[[Any], Any]
    ) -> Any:
        """The student's output turned into losses by ``losses_of``, all inside this forward: under DDP
        the adapters and the learnable loss weights are then used where DDP sees them, so their
        gradients are synchronised like the student's (used outside, DDP would refuse them)."""
        return losses_of(self.student(left, right, taps=taps))


@contextlib.contextmanager
def batchnorm_statistics_kept(module: nn.Module) -> Iterator[None]:
    """Inside, a forward pass normalises as usual but leaves no trace in the BatchNorm running
    statistics: a pass that only computes a mask (the mirrored pair) must not count as training data."""
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{name: buffer.clone() for name, buffer in m.named_buffers()} for m in layers]
    try:
        yield
    finally:
        for layer, buffers in zip(layers, saved, strict=True):
            for name, value in buffers.items():
                getattr(layer, name).copy_(value)


def epoch_sums_from(saved: dict[str, Any]) -> dict[str, float]:
    """A checkpoint's running epoch sums (each term's raw loss and, under ``_n.NAME``, its steps),
    with JSON's null back to NaN. A checkpoint written before 2026-12-06 holds one count, ``_n``, for
    every term: it becomes the count of each term summed so far, not of terms a later stage adds."""
    sums = {key: float(value) for key, value in nan_for_null(saved).items()}
    legacy = sums.pop("_n", None)
    if legacy is not None:
        sums.update({f"_n.{name}": legacy for name in list(sums) if not name.startswith("_n.")})
    return sums


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        *,
        distill: bool,
        resume: bool = False,
        force: bool = False,
        allow_changes: bool = False,
        inputs: tuple[str, ...] = (),
        label: str = "",
    ) -> None:
        """``resume``: continue the run in the output folder (its config may differ only in what
        ``allow_changes`` accepts); otherwise the folder must be new or empty, unless ``force``, or
        hold only ``inputs``: files a caller prepared there for this run (``adapt``'s labels).
        ``label``: the run's name on its progress lines (runs trained side by side share a terminal)."""
        if distill and config.teacher is None:
            raise ConfigError("distill needs a 'teacher' section (checkpoint, or original + arch)")
        if distill and not config.distill.terms:
            raise ConfigError("distill needs at least one term in 'distill.terms'")
        if not distill and config.distill.terms:
            raise ConfigError("'distill.terms' given to `train`; use `stereodistill distill` for distillation")
        if not model_class(config.model.arch).trainable:
            raise ConfigError(f"{config.model.arch} is a classical method: it has nothing to train")
        self.config = config
        self.distill = distill
        self.out = Path(config.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.dist = Distributed.from_env()
        self.device = resolve_device(config.device)
        if self.dist.world > 1:
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if not dist.is_initialized():  # rank 0 validates alone while the others wait: a long validation
                dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))  # must not time them out
            if "TORCHELASTIC_RUN_ID" in os.environ:  # torchrun killed: its workers stop, not finish the run unseen
                exit_with_parent(os.getppid(), says="torchrun, which started this process, is gone")
            if self.device.type == "cuda":
                self.device = torch.device("cuda", self.dist.local_rank)
                torch.cuda.set_device(self.device)
        seed_everything(config.seed)
        self._changes: dict[str, tuple[Any, Any]] = {}
        clear_old_run = False  # with --force: only once everything below is built and checked
        if resume:  # every process reads the same pairs
            run_folder.keep_recorded_val_split(self.out, config.data)
        refused: Exception | None = None
        if self.dist.main:
            try:
                if resume:
                    self._changes = run_folder.check_resume(self.out, to_dict(config), allow_changes=allow_changes)
                else:
                    clear_old_run = run_folder.prepare_new_run(
                        self.out,
                        force=force,
                        inputs=inputs,
                        reads=run_reads(config),
                        clear=False,
                        hint=new_run_hint(self.out),
                    )
            except Exception as exc:  # any failure here (a folder that cannot be read, too) stops every process
                refused = exc
        if self.dist.world > 1:  # no process writes into the folder before it has been checked; the others
            said = [None if refused is None else str(refused)]  # stop with rank 0's refusal, not a broken pipe
            dist.broadcast_object_list(said, src=0)
            if said[0] is not None and refused is None:
                raise SharedRefusal(said[0])
        if refused is not None:
            raise refused

        # Networks ---------------------------------------------------------------------------
        synced = config.sync_bn and self.dist.world > 1 and self.device.type == "cuda"  # statistics over all processes
        if config.data.batch_size // self.dist.world == 1 and not (config.freeze_bn or synced):
            check_batch_of_one(config, self.dist.world)
        self.student = build_model(config.model.arch, max_disp=config.model.max_disp, **config.model.options)
        notes: list[str] = []  # said once the run's log is open
        val_disp = config.data.val.max_disp if config.data.val is not None else None
        if val_disp is not None and val_disp > config.model.max_disp:  # a protocol's choice, but never a quiet one
            notes.append(
                f"note: data.val.max_disp is {val_disp:g} px, beyond model.max_disp ({config.model.max_disp}): "
                "validation scores ground truth the network cannot reach"
            )
        if config.sync_bn and not synced:
            notes.append("note: sync_bn has no effect here: batch norm is synchronised across CUDA processes only")
        if config.model.init:  # weights only: they must fit the configured network exactly
            init_note = check_init(config.model.init, self.student)  # a folder or a foreign file is named as such
            notes += [init_note] if init_note else []
            load_state_strict(self.student, read_weights(config.model.init), checkpoint_paths(config.model.init)[0])
        self.teacher = self._load_teacher() if distill else None
        height, width = config.data.crop
        terms = (
            build_terms(config.distill.terms, self.student.train(), self.teacher, height, width)
            if distill
            else nn.ModuleDict()
        )
        photometric = [PHOTOMETRIC] if config.photometric.enabled else []
        weighting = build_weighting(config.distill.weighting, [SUPERVISED, *photometric, *terms.keys()])
        if config.sync_bn and self.dist.world > 1 and self.device.type == "cuda":
            self.student = nn.SyncBatchNorm.convert_sync_batchnorm(self.student)
        self.unit = StudentWithExtras(self.student, terms, weighting).to(self.device)
        if config.channels_last:
            to_channels_last(self.unit)
        self.wrapped: nn.Module = self.unit
        if self.dist.world > 1:
            # A depthwise kernel (one input channel) has the same memory in channels-last as in NCHW but not
            # the same strides; DDP then warns, once per process, that it copies its gradient (a few values).
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.unit, device_ids=ids, find_unused_parameters=True)
        self.supervised_weight = build_schedule(config.supervised.weight)
        self.photometric_weight = build_schedule(config.photometric.weight)
        self.loss_weights = tuple(config.supervised.weights or self.student.loss_weights)
        if len(self.loss_weights) != len(self.student.loss_weights):  # found now, not at the first step; a longer
            raise ConfigError(  # list would have its first weights left unread
                f"supervised.weights: {config.model.arch} trains {len(self.student.loss_weights)} output(s), "
                f"got {len(self.loss_weights)} weight(s) {list(self.loss_weights)}: give one per output, coarsest first"
            )

        # What each forward must return ---------------------------------------------------------
        self.student_taps = frozenset(t.student for t in config.distill.terms if t.student != DISPARITY)
        teacher_taps = {t.teacher for t in config.distill.terms if t.teacher != DISPARITY}
        if any(t.mask == "confidence" for t in config.distill.terms):
            teacher_taps.add("prob")
        self.teacher_taps = frozenset(teacher_taps)
        self.teacher_right = any(t.mask == "lr_consistent" for t in config.distill.terms)

        # Data -----------------------------------------------------------------------------------
        dataset = train_data.build(config.data.train, max_disp=config.model.max_disp)
        train_data.check_before_training(dataset, "data.train", truth=config.reads_ground_truth, headers=False)
        self.sampler = train_data.EpochSampler(
            len(dataset), config.data.batch_size, config.seed, self.dist.rank, self.dist.world, what="data.train"
        )
        transform = train_data.train_transform(config.data, symmetric=config.photometric.enabled)
        augmented = train_data.SeededAugment(dataset, transform, config.seed)
        self.loader = train_data.train_loader(augmented, self.sampler, config.data.workers, config.seed)
        self.train_set = dataset  # uncropped, for precise_bn
        self.unlabeled: train_data.BatchStream | None = None
        if config.data.unlabeled is not None:  # pairs without ground truth: the terms or the photometric loss
            pairs = train_data.ViewsOnly(train_data.build(config.data.unlabeled, max_disp=config.model.max_disp))
            where = config.data.unlabeled.root or config.data.unlabeled.dataset
            train_data.check_before_training(pairs, f"data.unlabeled ({where})", truth=False, headers=True)
            sampler = train_data.EpochSampler(
                len(pairs),
                config.data.batch_size,
                config.seed + 1,
                self.dist.rank,
                self.dist.world,
                what=f"data.unlabeled ({where})",
            )
            seeded = train_data.SeededAugment(pairs, transform, config.seed + 1)
            loader = train_data.train_loader(seeded, sampler, config.data.workers, config.seed + 1)
            self.unlabeled = train_data.BatchStream(loader, sampler)
        val = config.data.val
        self.val_set = train_data.build(val, max_disp=config.model.max_disp) if val is not None else None
        if self.val_set is not None:
            train_data.check_before_training(
                self.val_set, "data.val", truth=True, headers=True, limit=config.val_samples
            )
            train_data.check_scorable(self.val_set, "data.val", limit=config.val_samples)
            if train_data.same_pairs(val, config.data.train):
                notes.append(
                    f"warning: data.val is the training set itself ({val.dataset}, split {val.split}): its scores say "
                    "how well the run fits what it trains on; give data.val another split or list_file to measure more"
                )

        # Optimisation ---------------------------------------------------------------------------
        self.optimizer = build_optimizer(self.unit.parameters(), config.optim)
        # The student's weights before any step (model.init, or the seeded initialisation): the anchor.
        self.start_weights = [p.detach().clone() for p in self.student.parameters()] if config.optim.anchor else []
        amp = config.amp
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16" and self.device.type == "cuda")
        self.step = 0
        self.best_epe = float("inf")
        self._epoch_sums: dict[str, float] = {}  # this epoch's per-term raw loss sums, for DWA
        if clear_old_run:
            run_folder.clear_folder(self.out)
        resumed_from = self._resume() if resume else None
        finishing = resumed_from is not None and self.step == config.total_steps
        self._finished = finishing and (self.out / "model.json").is_file()  # run() has nothing to do
        if resumed_from is not None and self.dist.main and not self._finished:
            # stopped between its last checkpoint and its model: the final validation runs again, its rows go
            run_folder.truncate_scalars(self.out, self.step, validated=not finishing)
        self.logger = RunLogger(self.out, enabled=self.dist.main, total_steps=config.total_steps, label=label)
        if self.dist.main:  # the folder exists now (made again after --force cleared it): held from here on
            run_folder.claim(self.out)
        for note in notes:
            self.logger.note(note)
        if resumed_from is not None:
            self.logger.note(f"resumed from {resumed_from} at step {self.step}")

    # -- set-up helpers -------------------------------------------------------------------------------
    def _load_teacher(self) -> nn.Module:
        t = self.config.teacher
        assert t is not None
        try:
            teacher = (
                load_model(t.checkpoint)
                if t.checkpoint
                else import_checkpoint(t.original, arch=t.arch, max_disp=t.max_disp, **t.options)
            )
        except ConfigError as exc:  # e.g. a range its architecture cannot take: said of the teacher
            raise ConfigError(f"teacher: {exc}") from None
        teacher = teacher.to(self.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def _resume(self) -> str:
        """Load the newest complete checkpoint; its name."""
        found = ckpt.complete_checkpoints(self.ckpt_dir)
        if not found:
            raise ConfigError(
                f"--resume: no complete checkpoint in {self.ckpt_dir}: no run there reached its first one; start the "
                "run without --resume (with --force where a stopped run's folder is in the way)"
            )
        meta = ckpt.load_training_state(found[-1], self.unit.student, self.unit.extras(), self.optimizer, self.scaler)
        self.step = int(meta["training"]["step"])
        if self.step > self.config.total_steps:  # it would train nothing and call the checkpoint the final model
            raise ConfigError(
                f"--resume: the newest checkpoint, {found[-1].with_suffix('.json')}, is at step {self.step}, "
                f"beyond this run's {self.config.total_steps} steps; resume with {self.step} steps or more"
            )
        info = found[-1].with_suffix(".json")
        best, sums = meta.get("best_epe"), meta.get("epoch_sums", {})  # null: not finite (JSON holds neither)
        if not (best is None or _is_number(best)):
            raise DataError(info, f"best_epe must be a number or null, got {best!r}; --force to start the run over")
        if not (isinstance(sums, dict) and all(v is None or _is_number(v) for v in sums.values())):
            raise DataError(info, f"epoch_sums must map names to numbers, got {sums!r}; --force to start the run over")
        self.best_epe = float("inf") if best is None else float(best)
        self._epoch_sums = epoch_sums_from(sums)  # DWA's running sums and counts
        return found[-1].name

    # -- schedule ----------------------------------------------------------------------------------------
    def stage_at(self, step: int) -> StageConfig:
        if not self.config.stages:
            return StageConfig(name="main", steps=self.config.total_steps)
        for stage, end in zip(self.config.stages, self.config.stage_ends(), strict=True):
            if step < end:
                return stage
        return self.config.stages[-1]

    def epoch_at(self, step: int) -> float:
        """Passes over the labelled data so far: the steps that drew from ``data.unlabeled`` do not count."""
        if self.config.epoch_steps:
            return step / self.config.epoch_steps
        labelled = step - self.config.data.unlabeled_steps(step)
        return labelled * self.config.optim.accumulate / self.sampler.batches_per_epoch

    # -- one micro-batch ---------------------------------------------------------------------------------
    def compute_losses(self, batch: dict[str, Any], stage: StageConfig, step: int, epoch: float, labelled: bool = True):
        """``labelled`` False: a batch of data.unlabeled, so no supervised loss (config checks that
        its terms do not read the ground truth either)."""
        left, right = batch["left"].to(self.device), batch["right"].to(self.device)
        gt, valid = batch["disp"].to(self.device), batch["valid"].to(self.device)
        if self.config.channels_last:
            left, right = (
                left.contiguous(memory_format=torch.channels_last),
                right.contiguous(memory_format=torch.channels_last),
            )
        active = [name for name in self.unit.terms if stage.terms is None or name in stage.terms]
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        full_precision = (
            torch.autocast(self.device.type, enabled=False)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )

        def losses_of(out: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float], dict[str, Any]]:
            with full_precision:  # the losses in float32, as the networks' outputs are cast to it
                return self._losses(
                    out,
                    teacher_out,
                    gt,
                    valid,
                    stage,
                    step,
                    epoch,
                    active,
                    labelled,
                    teacher_right,
                    (left, right),
                    own_right,
                )

        with autocast:
            teacher_out, teacher_right = None, None
            if active:
                with torch.no_grad():
                    teacher_out = self.teacher(left, right, taps=self.teacher_taps)
                    if self.teacher_right:
                        teacher_right = right_view_disparity(self.teacher, left, right)
            own_right = None
            if self.config.photometric.enabled and self.config.photometric.mask == "lr_consistent":
                with torch.no_grad(), batchnorm_statistics_kept(self.unit.student):
                    own_right = right_view_disparity(self.unit.student, left, right).float()
            return self.wrapped(left, right, self.student_taps if active else frozenset(), losses_of)

    def _losses(
        self,
        out: Any,
        teacher_out: Any,
        gt: torch.Tensor,
        valid: torch.Tensor,
        stage: StageConfig,
        step: int,
        epoch: float,
        active: list[str],
        labelled: bool = True,
        teacher_right: torch.Tensor | None = None,
        images: tuple[torch.Tensor, torch.Tensor] | None = None,
        own_right: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float], dict[str, Any]]:
        """The supervised loss, the photometric loss and the active terms, weighted and combined by
        the weighting."""
        losses: dict[str, torch.Tensor] = {}  # each term's loss times its scheduled weight
        raw: dict[str, torch.Tensor] = {}  # before the schedule: what DWA's loss ratios are taken of
        if stage.supervised and labelled:
            sup = multi_output_loss(
                [p.float() for p in out.predictions],
                gt,
                valid,
                self.loss_weights,
                self.config.supervised.loss,
                clamp=self.config.supervised.clamp,
            )
            raw[SUPERVISED] = sup
            losses[SUPERVISED] = self.supervised_weight(step, epoch) * sup
        if self.config.photometric.enabled and images is not None:
            settings = self.config.photometric
            left, right = (image.float() for image in images)
            where = {"none": None, "valid": valid}.get(settings.mask)
            if own_right is not None:
                where = left_right_consistent(out.disparity.detach().float(), own_right, settings.mask_threshold)
            raw[PHOTOMETRIC] = self_supervised_loss(
                [p.float() for p in out.predictions],
                left,
                right,
                self.loss_weights,
                ssim=settings.ssim,
                smoothness=settings.smoothness,
                occlusion=settings.occlusion,
                mask=where,
            )
            losses[PHOTOMETRIC] = self.photometric_weight(step, epoch) * raw[PHOTOMETRIC]
        for name in active:
            term = self.unit.terms[name]
            cfg = term.config
            s = out.disparity if cfg.student == DISPARITY else out.taps[cfg.student]
            t = teacher_out.disparity if cfg.teacher == DISPARITY else teacher_out.taps[cfg.teacher]
            mask = None
            if cfg.mask is not None:
                mask = full_resolution_mask(
                    cfg.mask,
                    valid=valid,
                    gt=gt,
                    teacher_disparity=teacher_out.disparity,
                    teacher_prob=teacher_out.taps.get("prob"),
                    teacher_right_disparity=teacher_right,
                    threshold=cfg.mask_threshold,
                )
            raw[name] = term(s.float(), t.float(), mask)
            losses[name] = term.weight(step, epoch) * raw[name]
        if not losses:
            raise ConfigError(f"stage {stage.name!r} has neither supervision nor active terms")
        total, factors = self.unit.weighting(losses)
        return total, losses, factors, raw

    # -- the loop ----------------------------------------------------------------------------------------
    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to the end, or until step ``stop_at`` (then checkpoint and return: resume later)."""
        config = self.config
        total_steps = config.total_steps
        if self._finished:  # resumed when there was nothing left: the run and its rows stay as they are
            self.logger.note(
                f"the run is finished (step {self.step} of {total_steps}, its model written): nothing to resume; "
                "more steps (with --allow-changes) train it on"
            )
            if self._changes:  # accepted, but nothing ran under them: said, not recorded as if applied
                self.logger.note(f"not applied, as nothing trained: {run_folder.describe_changes(self._changes)}")
            self._close()
            metrics = nan_for_null(read_metadata(self.out / "model").get("metrics") or {})  # NaN was written as null
            return {
                "step": self.step,
                "metrics": metrics,
                "model": str(self.out / "model.safetensors"),
                "finished": True,
            }
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            run_folder.claim(self.out)
            run_folder.write_config(self.out, to_dict(config), self.step, self._changes)
        accumulate = config.optim.accumulate
        unlabeled_steps = config.data.unlabeled_steps(self.step)
        labelled = train_data.BatchStream(self.loader, self.sampler, self._end_epoch)
        labelled.seek((self.step - unlabeled_steps) * accumulate)
        if self.unlabeled is not None:
            self.unlabeled.seek(unlabeled_steps * accumulate)
        self.train_mode()
        nonfinite = 0
        started = time.perf_counter()
        start_step = self.step
        while self.step < total_steps:
            if stop_at is not None and self.step >= stop_at:
                self.save_checkpoint()
                self._close()
                return {"step": self.step, "stopped": True}
            stage = self.stage_at(self.step)
            epoch = self.epoch_at(self.step)
            base_lr = stage.lr if stage.lr is not None else config.optim.lr
            set_lr(self.optimizer, base_lr * lr_factor(config.optim, self.step, total_steps, epoch))
            self.optimizer.zero_grad(set_to_none=True)
            parts: dict[str, float] = {}
            raw_parts: dict[str, float] = {}
            finite, what = True, "loss"
            from_unlabeled = self.unlabeled is not None and config.data.is_unlabeled_step(self.step)
            stream = self.unlabeled if from_unlabeled else labelled
            for k in range(accumulate):
                batch = stream.next()
                sync = (
                    self.wrapped.no_sync() if self.dist.world > 1 and k < accumulate - 1 else contextlib.nullcontext()
                )
                with sync:
                    total, losses, factors, raw = self.compute_losses(
                        batch, stage, self.step, epoch, labelled=not from_unlabeled
                    )
                    if not self._all_finite(total):  # every process skips: one alone in backward would wait for
                        finite = False  # the others in DDP's gradient reduction
                        break
                    self.scaler.scale(total / accumulate).backward()
                for name, value in losses.items():
                    parts[name] = parts.get(name, 0.0) + float(value.detach()) / accumulate
                parts["total"] = parts.get("total", 0.0) + float(total.detach()) / accumulate
                for name, value in raw.items():
                    raw_parts[name] = raw_parts.get(name, 0.0) + float(value.detach()) / accumulate
            if not finite:
                for _ in range(accumulate - 1 - k):  # the step still takes all its micro-batches: a resumed run
                    stream.next()  # positions the data by steps × accumulate
            elif not self._clip_gradient():
                finite, what = False, "gradient"
            if not finite:
                nonfinite += 1
                self.optimizer.zero_grad(set_to_none=True)
                self.logger.note(f"step {self.step}: non-finite {what}, step skipped ({nonfinite} in a row)")
                if nonfinite >= config.max_nonfinite:
                    raise TrainingError(
                        f"the loss or its gradient was non-finite for {nonfinite} steps in a row (at step "
                        f"{self.step}); lower the learning rate, enable grad_clip, or check the data with "
                        "`stereodistill data check`"
                    )
                self.step += 1
                self._periodic(total_steps)  # a skipped step still gets its validation and checkpoint
                continue
            nonfinite = 0
            if self.dist.world > 1:  # the global batch's losses, as one process logs and DWA weighs them
                parts, raw_parts = self._mean_over_processes(parts, raw_parts)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.start_weights:
                pull = self.optimizer.param_groups[0]["lr"] * config.optim.anchor
                pull_toward(list(self.student.parameters()), self.start_weights, pull)
            self.step += 1
            rate = (self.step - start_step) / max(time.perf_counter() - started, 1e-9)
            self.logger.scalars(
                self.step,
                {
                    "epoch": epoch,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    **parts,
                    **{f"factor/{k}": v for k, v in factors.items()},
                },
                rate=rate,
                stage=stage.name,
                every=config.log_every,
            )
            self._epoch_means_add(raw_parts)
            self._periodic(total_steps)
        if nonfinite and nonfinite == self.step - start_step:  # every step of this run skipped
            self._close()
            raise TrainingError(
                f"no step updated the weights: the loss or its gradient was non-finite at all {nonfinite} steps run "
                f"(fewer than max_nonfinite, {config.max_nonfinite}, so the run was not stopped sooner); "
                "no model was written. Lower the learning rate, or check the data with `stereodistill data check`"
            )
        self.save_checkpoint()  # first: a validation that fails (a broken image) does not cost the training
        if self.recalibrate_batchnorm():
            self.save_checkpoint()  # with the recomputed statistics, which a resumed run keeps
        metrics = {}
        if self.val_set is not None:
            best = self.best_epe
            metrics = self.validate()
            if self.best_epe != best:  # the checkpoint holds the best so far, as a longer run resumed reads it
                self.save_checkpoint()
        if self.dist.main:
            save_model(self.out / "model", self.unit.student, step=self.step, metrics=metrics, run=config.name)
        self._close()
        if self.dist.world > 1:
            dist.barrier()
        return {
            "step": self.step,
            "metrics": metrics,
            "model": str(self.out / "model.safetensors"),
            "seconds": time.perf_counter() - started,
            "trained_steps": self.step - start_step,  # this call's: a resumed run began at its checkpoint
        }

    def _close(self) -> None:
        """The run's log closed and its folder let go (a caller that goes on writing there claims it again)."""
        self.logger.close()
        if self.dist.main:
            run_folder.release(self.out)

    def _clip_gradient(self) -> bool:
        """Unscale and clip the step's gradient (with ``grad_clip``); whether it is finite (the same on
        every process: DDP has reduced it).

        A non-finite gradient under a finite loss is not caught by the loss check: with ``grad_clip`` it
        would scale every gradient to zero (a step that silently moves nothing), without it Adam would
        write NaN into the weights. With fp16's loss scaling on, the scaler already skips such a step
        and lowers its scale: it is left to do so."""
        parameters = [p for p in self.unit.parameters() if p.grad is not None]
        if self.config.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)  # the clip reads the true gradient
            norm = torch.nn.utils.clip_grad_norm_(parameters, self.config.optim.grad_clip)
        elif self.scaler.is_enabled() or not parameters:
            return True
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
        return self.scaler.is_enabled() or bool(torch.isfinite(norm))

    def _all_finite(self, total: torch.Tensor) -> bool:
        """Whether the loss is finite on every process (on this one, without DDP)."""
        finite = bool(torch.isfinite(total))
        if self.dist.world == 1:
            return finite
        flag = torch.tensor([0.0 if finite else 1.0], device=self.device)
        dist.all_reduce(flag)
        return bool(flag.item() == 0)

    def _mean_over_processes(self, *tables: dict[str, float]) -> list[dict[str, float]]:
        """Each table's values averaged over the processes (each holds its share of the global batch),
        all in one reduction."""
        keys = [(index, name) for index, table in enumerate(tables) for name in sorted(table)]
        values = [tables[index][name] for index, name in keys]
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        means: list[dict[str, float]] = [{} for _ in tables]
        for (index, name), mean in zip(keys, (tensor / self.dist.world).tolist(), strict=True):
            means[index][name] = mean
        return means

    # -- epochs, validation, checkpoints -------------------------------------------------------------
    def _epoch_means_add(self, parts: dict[str, float]) -> None:
        """Sum each term's raw loss and count the steps it was active (a stage may leave it out: its
        mean is over those steps, not the epoch's)."""
        for name, value in parts.items():
            self._epoch_sums[name] = self._epoch_sums.get(name, 0.0) + value
            self._epoch_sums[f"_n.{name}"] = self._epoch_sums.get(f"_n.{name}", 0.0) + 1

    def _end_epoch(self) -> None:
        counts = {key[3:]: value for key, value in self._epoch_sums.items() if key.startswith("_n.")}
        sums = {key: value for key, value in self._epoch_sums.items() if not key.startswith("_n.")}
        means = {name: total / counts[name] for name, total in sums.items() if counts.get(name)}
        if means:
            self.unit.weighting.end_epoch(means)
        self._epoch_sums = {}

    def recalibrate_batchnorm(self) -> bool:
        """``precise_bn``: BatchNorm's running statistics recomputed over whole training pairs (every
        process reads the same ones, so they agree without a reduction). Whether anything changed."""
        batches = self.config.precise_bn
        if not batches:
            return False
        model = self.unit.student
        started = time.perf_counter()
        per_process = max(1, self.config.data.batch_size // self.dist.world)  # as a training step's share
        pairs = precise_bn.recompute_batchnorm(
            model,
            self.train_set,
            batches=batches,
            batch_size=per_process,
            seed=self.config.seed,
            device=self.device,
            transform=train_data.train_transform(
                self.config.data, symmetric=self.config.photometric.enabled, crop=False
            ),
        )
        if not pairs:  # no BatchNorm layer keeps running statistics
            self.logger.note(f"precise_bn: {model.arch} has no BatchNorm running statistics; nothing to recompute")
            return False
        self.logger.note(
            f"precise_bn: BatchNorm statistics recomputed over {batches} batches of {per_process} uncropped training "
            f"pairs ({pairs} reads, {time.perf_counter() - started:.0f} s)"
        )
        self.train_mode()
        return True

    def train_mode(self) -> None:
        """The student and its extras in training mode; with ``freeze_bn`` the BatchNorm layers stay in
        eval mode, normalising with the running statistics of the data the network was trained on
        (fine-tuned on a few pairs, it would replace them with those of a handful of crops: on
        Motorcycle that alone took a student from 1.397 to 1.527 px, docs/results.md)."""
        self.unit.train()
        if self.config.freeze_bn:
            for module in self.unit.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if self.val_set is None or not self.dist.main:
            return {}
        model = self.unit.student
        was_training = model.training
        model.eval()

        def predict(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            return model(left.to(self.device), right.to(self.device)).disparity

        limit = self.config.val_samples
        count = len(self.val_set) if limit is None else min(limit, len(self.val_set))
        self.logger.note(f"step {self.step}: validating on {count} pairs")
        accumulator = evaluate_dataset(predict, self.val_set, limit=self.config.val_samples)
        if len(self.val_set):
            sample = self.val_set[0]
            self.logger.image(
                self.step, "val/disparity", predict(sample["left"][None], sample["right"][None])[0], model.max_disp
            )
            self.logger.image(self.step, "val/ground_truth", sample["disp"], model.max_disp)
        if was_training:
            self.train_mode()
        metrics = accumulator.pooled()
        self.logger.scalars(self.step, {f"val/{k}": v for k, v in metrics.items()}, every=1, force=True)
        if metrics["epe"] < self.best_epe:
            self.best_epe = metrics["epe"]
            save_model(self.out / "best", model, step=self.step, metrics=metrics, run=self.config.name)
        return metrics

    def _periodic(self, total_steps: int) -> None:
        """Validation and a checkpoint every ``val_every`` and ``checkpoint_every`` steps (the last
        step has its own, after the loop)."""
        config = self.config
        if config.val_every and self.step % config.val_every == 0 and self.step < total_steps:
            self.validate()
        if config.checkpoint_every and self.step % config.checkpoint_every == 0 and self.step < total_steps:
            self.save_checkpoint()

    def save_checkpoint(self) -> None:
        if not self.dist.main:
            return
        ckpt.save_training_state(
            self.ckpt_dir,
            self.step,
            self.unit.student,
            self.unit.extras(),
            self.optimizer,
            self.scaler,
            {"run": self.config.name, "best_epe": self.best_epe, "epoch_sums": self._epoch_sums},
        )
        ckpt.prune(self.ckpt_dir, self.config.keep_last)
