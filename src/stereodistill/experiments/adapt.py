"""Adapting a student to a user's own unlabeled stereo pairs with a teacher's filtered pseudo-labels.

The teacher predicts each pair once (its disparity cached on disk under a key of the teacher's
weights, the student's when the gate compares with it, the pair's files and its size, so neither a
step nor a rerun pays for it again), and only the pixels that pass the filters become labels:

* **photometric gate** (on by default): a teacher pixel stands only where the teacher's disparity
  reconstructs the pair (the right view warped to the left, SSIM + L1 over ``gate`` × ``gate``
  pixels) better than the student's own; every other pixel takes the student's own disparity as its
  label. A teacher worse than its student overall is still better in places, and only there does it
  teach: on Motorcycle this turned adaptation from a quickstart teacher from harmful into helpful;
* **left-right consistency** (off by default): the teacher also predicts the mirrored, swapped pair,
  which gives the right view's disparity; a left pixel is kept when the right view, read where the
  pixel lands (x − d), agrees within ``lr_threshold`` px (occlusions and mismatches fail it);
* **confidence** (off by default): the teacher's distribution peaks at ≥ ``confidence`` probability.

With the gate, these two did worse than none on the measured pair (docs/results.md).

The teacher may also be a classical matcher of the zoo (``sgbm``), as in Tonioni et al.'s
unsupervised adaptation of deep stereo (ICCV 2017): it has no distribution, so its own unmatched
pixels (no disparity: 0) take the place of the confidence filter, and the left-right check applies
as to any teacher. A label of 0 px or less is never kept, whatever the teacher.

The labels and masks are written as PFM + PNG beside a ``pairs`` CSV, and the student then trains on
them through the ordinary supervised trainer (its crops and augmentations), starting from its own
weights. A truncated loss is available (``clamp``: where the student ends further than that from a
label, the pixel is left out, so residue the filters let through pulls no gradient); it is off by
default because it did worse on the measured pair: the pixels a weak student gets most wrong are
also those it has most to learn from. BatchNorm keeps the student's running statistics
(``freeze_bn``): re-estimated from a few crops of a few pairs they cost more than the labels gain.
A photometric loss (``photometric``, :mod:`~stereodistill.distill.photometric`) may join or replace
the labels. The run folder is the output folder itself; the labels live in it (``pseudo/``), so a
``--resume`` reuses them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from stereodistill.distill.masks import left_right_consistent, right_view_disparity
from stereodistill.distill.photometric import inside_right_view, local_reconstruction_error
from stereodistill.errors import ConfigError, DataError
from stereodistill.evaluate.coverage import coverage_line, left_out_warning
from stereodistill.fileio import file_stamp, read_record, write_json
from stereodistill.train.state import complete_checkpoints

if TYPE_CHECKING:
    from stereodistill.train.config import RunConfig


@dataclass
class AdaptConfig:
    """What ``adapt --config FILE`` sets (a flag given on the command line wins over the file)."""

    steps: int = 300  # training steps
    lr: float = 1e-3  # peak learning rate (AdamW, cosine)
    crop: tuple[int, int] = (192, 320)  # training crop H, W
    batch_size: int = 2  # pairs per step (at most the number of pairs)
    lr_threshold: float = math.inf  # px: left-right disagreement above this drops the pixel (.inf: off)
    confidence: float = 0.0  # the teacher's peak probability below this drops the pixel (0: off)
    gate: int = 5  # px window: the student's own disparity is the label where it reconstructs better (0: off)
    clamp: float | None = None  # px: a truncated loss (null: off, the measured best)
    labels: float = 1.0  # weight of the pseudo-label loss (0: the photometric loss alone)
    photometric: float = 0.0  # weight of the photometric loss (0: off), which needs no teacher
    run: dict[str, Any] = field(default_factory=dict)  # merged into the student's run config, e.g. {amp: bf16}


def load_adapt_config(path: str | Path) -> AdaptConfig:
    """An ``adapt`` config file, checked like every config (unknown keys and wrong types name the file)."""
    from stereodistill.config import from_dict, load_yaml

    data = load_yaml(path)
    try:
        return from_dict(AdaptConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class PseudoLabelSettings:
    lr_threshold: float = math.inf  # px: left-right disagreement above this drops the pixel (inf: off)
    confidence: float = 0.0  # the teacher's peak probability below this drops the pixel (0: off)
    gate: int = 5  # px window: the student's own disparity is the label where it reconstructs better (0: off)

    def __post_init__(self) -> None:
        if self.gate < 0:
            raise ConfigError(f"gate is a window in px (0: off), got {self.gate}")
        if not self.lr_threshold > 0:  # also refuses NaN
            raise ConfigError(f"lr_threshold is a distance in px above 0 (inf: off), got {self.lr_threshold}")
        if not 0 <= self.confidence <= 1:
            raise ConfigError(f"confidence is a probability in [0, 1] (0: off), got {self.confidence}")


def network_key(network: torch.nn.Module, files: list[Path]) -> str:
    """What a cached label depends on in a network: its files (weights and metadata), or for a
    classical matcher, which has none, its settings."""
    stamps = "|".join(file_stamp(p) for p in files if p.is_file())
    return hashlib.sha256(f"{network.arch}|{network.config}|{stamps}".encode()).hexdigest()[:16]


@torch.no_grad()
def pseudo_label(
    teacher: torch.nn.Module,
    left: torch.Tensor,
    right: torch.Tensor,
    settings: PseudoLabelSettings,
    student: torch.nn.Module | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The label of the left view (H×W), the mask of its kept pixels, and the mask of the pixels the
    teacher labels, for 1×3×H×W images in [0, 1]. The teacher's pixels must pass the filters that are
    on; with a ``student`` and ``settings.gate``, also the photometric gate: a teacher pixel stands
    only where its disparity reconstructs the pair (over gate × gate pixels) better than the
    student's own, and every other pixel takes the student's own disparity as its label (it keeps
    what it has)."""
    has_prob = "prob" in teacher.offered_taps()
    out = teacher(left, right, taps=["prob"] if has_prob else [])
    disparity = out.disparity
    if math.isinf(settings.lr_threshold):  # no check: the right view's pass is not needed
        keep = inside_right_view(disparity) & (disparity > 0)
    else:
        right_disparity = right_view_disparity(teacher, left, right)
        keep = left_right_consistent(disparity, right_disparity, settings.lr_threshold) & (disparity > 0)
    if has_prob and settings.confidence > 0:
        keep &= out.taps["prob"].amax(dim=1) >= settings.confidence
    if student is not None and settings.gate:
        own = student(left, right).disparity
        window = settings.gate | 1  # odd, so centred on the pixel (an even gate grows by one)
        keep &= local_reconstruction_error(left, right, disparity, window) < local_reconstruction_error(
            left, right, own, window
        )
        disparity = torch.where(keep, disparity, own)
        taught, keep = keep, keep | (own > 0)
    else:
        taught = keep
    return disparity[0].float().cpu().numpy(), keep[0].cpu().numpy(), taught[0].cpu().numpy()


def write_pseudo_labels(
    teacher: torch.nn.Module,
    teacher_files: list[Path],
    pairs: Any,
    out: Path,
    settings: PseudoLabelSettings,
    device: torch.device,
    log: Callable[[str], None] = print,
    student: tuple[torch.nn.Module, list[Path]] | None = None,
    skip_bad: bool = False,
) -> tuple[Path, list[dict[str, Any]], list[int]]:
    """Label every pair of ``pairs`` (a ``pairs`` dataset), reusing cached labels; returns the CSV of
    the labelled pairs, per pair the share of its pixels kept, the share the teacher labels and the
    mask of those, and the indices of the pairs left out. ``student`` (the network and its files) is
    what the photometric gate compares the teacher with. An image whose header was fine but whose
    data is not (a truncated file) is found only here: ``skip_bad`` leaves its pair out, otherwise it
    stops the run, whose labels so far stay cached for ``--resume``."""
    from stereodistill.data.formats import image_size, read_mask, write_image, write_pfm
    from stereodistill.fileio import write_text_atomic

    cache = out / "pseudo"
    gate_with = student if settings.gate else None
    key = network_key(teacher, teacher_files) + (f"|{network_key(*gate_with)}" if gate_with else "")
    rows, kept, skipped = [["left", "right", "disp", "mask"]], [], []
    for index, files in enumerate(pairs.files):
        height, width = image_size(files.left, view=True)  # from the header: a cached pair is not decoded
        name = hashlib.sha256(
            f"{key}|{file_stamp(files.left)}|{file_stamp(files.right)}|{height}x{width}|{settings}".encode()
        ).hexdigest()[:20]
        disp_path, mask_path, taught_path = (cache / f"{name}{end}" for end in (".pfm", "_mask.png", "_teacher.png"))
        if not all(path.is_file() for path in (disp_path, mask_path, taught_path)):
            try:
                sample = pairs.load_views(index)  # ground truth, if any, is for scoring only
            except DataError as exc:
                bad = DataError(exc.path.resolve() if exc.path else None, exc.problem)
                if not skip_bad:
                    hint = "; replace it and --resume (the labels made so far are kept), or --skip-bad to leave it out"
                    raise DataError(bad.path, bad.problem + hint) from None
                log(f"  SKIPPED {bad}")
                skipped.append(index)
                continue
            disparity, mask, taught = pseudo_label(
                teacher,
                sample["left"][None].to(device),
                sample["right"][None].to(device),
                settings,
                gate_with[0] if gate_with else None,
            )
            write_image(mask_path, np.repeat(mask[..., None], 3, axis=2).astype(np.float32))
            write_image(taught_path, np.repeat(taught[..., None], 3, axis=2).astype(np.float32))
            write_pfm(disp_path, disparity)  # written last: a label with its disparity is complete
        else:
            mask, taught = read_mask(mask_path), read_mask(taught_path)
        share = float(taught.mean())
        kept.append(
            {
                "pair": files.id,
                "left": str(files.left),
                "kept": float(mask.mean()),
                "teacher": share,
                "teacher_mask": str(taught_path.resolve()),
            }
        )
        log(
            f"  pseudo-label {index + 1}/{len(pairs.files)} {files.id}: {100 * mask.mean():.1f} % of pixels kept"
            + (f", {100 * share:.1f} % from the teacher" if gate_with else "")
        )
        rows.append([str(path.resolve()) for path in (files.left, files.right, disp_path, mask_path)])
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)  # quoted where a path holds a comma
    listing = out / "pseudo.csv"
    write_text_atomic(listing, text.getvalue())
    return listing, kept, skipped


#: Written into the run folder before training.
INPUTS = ("pseudo", "pseudo.csv", "pairs.csv", "kept.json", "labelling.json")
REPORT_PAIRS = 4  # pairs shown in report.html
CHECKPOINT_EVERY = 100  # steps between the checkpoints an interrupted run resumes from
CHECK_PAIRS = 16  # pairs, evenly spread, on which the labels are checked against the student


def spread(count: int, limit: int) -> list[int]:
    """Up to ``limit`` indices of ``count`` items, evenly spread, first and last included (all of them
    when there are no more than ``limit``)."""
    return sorted({int(i) for i in np.linspace(0, count - 1, min(limit, count)).round()})


@torch.no_grad()
def label_check(
    student: torch.nn.Module, pairs: Any, labels_csv: Path, device: torch.device, limit: int = CHECK_PAIRS
) -> dict[str, float]:
    """The photometric error (:mod:`~stereodistill.distill.photometric`) of the kept labels and of the
    student's own disparity on the same pixels, over up to ``limit`` pairs: with no ground truth,
    whether the labels explain the footage better than the student already does."""
    from stereodistill.data.datasets import build_dataset
    from stereodistill.distill.photometric import photometric_error

    labelled = build_dataset("pairs", str(labels_csv))
    totals = {"labels": 0.0, "student": 0.0}
    pixels = 0
    for index in spread(len(pairs), limit):
        sample, label = pairs.load(index), labelled.load(index)
        left, right = sample["left"][None].to(device), sample["right"][None].to(device)
        label_error, label_inside = photometric_error(left, right, label["disp"][None].to(device))
        own_error, own_inside = photometric_error(left, right, student(left, right).disparity)
        keep = label["valid"][None].to(device) & label_inside & own_inside
        totals["labels"] += float(label_error[keep].sum())
        totals["student"] += float(own_error[keep].sum())
        pixels += int(keep.sum())
    # No pixel to compare (the student's disparity leaves the right view everywhere): no verdict.
    return {**{name: total / pixels if pixels else math.nan for name, total in totals.items()}, "pixels": pixels}


def load_teacher(
    path: str, arch: str | None, options: dict[str, Any], device: torch.device, max_disp: int = 192
) -> tuple[torch.nn.Module, list[Path]]:
    """Our checkpoint, an original release's (``arch`` given: imported with ``torch.load(weights_only=True)``),
    or a classical matcher at ``max_disp`` with its unmatched pixels left empty; in eval mode, with
    the files a cached label depends on."""
    from stereodistill.checkpoint import checkpoint_paths, classical_network, load_model
    from stereodistill.models.import_original import import_checkpoint
    from stereodistill.models.zoo import model_class

    if classical_network(path):
        if arch is not None or options:
            raise ConfigError(f"{path} is a classical matcher: --teacher-arch and --teacher-option do not apply")
        return model_class(path)(max_disp=max_disp, fill_holes=False).to(device).eval(), []
    if arch is None:
        if options:
            raise ConfigError("--teacher-option needs --teacher-arch (the options of an original release)")
        return load_model(path, map_location=device).eval(), list(checkpoint_paths(path))
    try:
        teacher = import_checkpoint(path, arch=arch, **options)
    except TypeError as exc:
        raise ConfigError(f"bad --teacher-option for {arch}: {exc}") from None
    return teacher.to(device).eval(), [Path(path)]


#: Keys of the student's run config that adapt sets from its own settings: ``run`` may not set them.
OWNED_KEYS = {
    "name": "",
    "output": "--out",
    "steps": "--steps",
    "model": "STUDENT",
    "data.train": "--unlabeled",
    "data.crop": "--crop",
    "data.batch_size": "batch_size",
    "optim.lr": "--lr",
    "supervised.clamp": "--clamp",
    "supervised.weight": "--labels",
    "photometric.weight": "--photometric",
}


def refuse_owned_keys(run: dict[str, Any]) -> None:
    """An error for a key of ``run`` that adapt sets itself: merged last, it would silently beat the
    flag (``run: {steps: …}`` against ``--steps``) or break the run (``output``)."""
    from stereodistill.train.run_folder import flatten

    for key in flatten(run):
        owned = next((k for k in OWNED_KEYS if key == k or key.startswith(f"{k}.")), None)
        if owned is not None:
            instead = f"; set it with {OWNED_KEYS[owned]}" if OWNED_KEYS[owned] else ""
            raise ConfigError(f"run.{key}: adapt sets {owned} itself{instead}")


@dataclass(frozen=True)
class Footage:
    """The user's pairs, checked: ``csv`` when the given list is used as it is, else ``pairs`` to be
    written into the run folder (a folder's pairs, or a list's with the bad ones left out)."""

    csv: Path | None
    pairs: Any  # data.pairing.FolderPairs | None
    count: int
    skipped: tuple[str, ...] = ()
    listed: tuple[tuple[Path, Path, Path | None], ...] = ()  # every pair's files, as found
    masks: tuple[Path | None, ...] = ()  # a list's masks, row by row

    def files(self) -> list[Path]:
        """The image, ground-truth and mask files of every pair."""
        rows = self.pairs.rows if self.pairs is not None else self.listed
        masks = self.pairs.masks if self.pairs is not None else self.masks
        return [path for row in (*rows, masks) for path in row if path is not None]


def list_footage(unlabeled: Path, skip_bad: bool) -> Footage:
    """Find and check every pair of ``unlabeled`` (a pairs CSV, or a folder holding left/ and right/)
    from the image headers, writing nothing: unreadable images and pairs whose views differ in size
    are an error listing them, or with ``skip_bad`` are left out."""
    from stereodistill.data.datasets import build_dataset
    from stereodistill.data.formats import IMAGE_SUFFIXES
    from stereodistill.data.pairing import FolderPairs, check_rows, folder_pairs, refuse_unusable, views_of

    if not unlabeled.exists():
        raise ConfigError(f"--unlabeled {unlabeled}: no such file or folder")
    if unlabeled.is_dir():
        found = folder_pairs(*views_of(unlabeled), skip_bad=skip_bad)
        return Footage(None, found, len(found.rows), found.skipped)
    if unlabeled.suffix.lower() in IMAGE_SUFFIXES:  # read as a list, it would be "not UTF-8 text"
        raise ConfigError(
            f"--unlabeled {unlabeled}: is an image; give the folder holding left/ and right/, or a list of pairs "
            "(stereodistill data pairs LEFT_DIR RIGHT_DIR --out pairs.csv)"
        )
    listed = build_dataset("pairs", str(unlabeled)).files
    masks = {(files.left, files.right): files.mask for files in listed}  # kept with their rows
    good, problems = check_rows([(files.left, files.right, files.disp) for files in listed], masks)
    refuse_unusable(unlabeled, good, problems, skip_bad)
    kept_masks = tuple(masks[row[:2]] for row in good)
    if not problems:
        return Footage(unlabeled, None, len(good), listed=tuple(good), masks=kept_masks)
    with_truth = sum(truth is not None for *_, truth in good)
    kept = FolderPairs(unlabeled, tuple(good), tuple(problems), with_truth, kept_masks)
    return Footage(None, kept, len(good), tuple(problems))


def without(source: Path, files: list[Any], left_out: list[int]) -> Any:
    """A ``pairs`` dataset's files less those at ``left_out``, masks kept: a list to write."""
    from stereodistill.data.pairing import FolderPairs

    drop = set(left_out)
    kept = [pair for index, pair in enumerate(files) if index not in drop]
    rows = tuple((pair.left, pair.right, pair.disp) for pair in kept)
    return FolderPairs(source, rows, (), sum(pair.disp is not None for pair in kept), tuple(p.mask for p in kept))


def labelled_pairs(kept: Path) -> dict[str, str] | None:
    """The pairs an earlier labelling of this run labelled (``kept.json``), which its training saw, by
    left image (an id changes when a pair before it is left out), with their ids; None when it kept no
    record (stopped before labelling ended)."""
    if not kept.is_file():
        return None
    entries = read_record(kept, "--force to start the run over, or give another --out", holds=list)
    try:
        return {str(entry["left"]): str(entry["pair"]) for entry in entries}
    except (TypeError, KeyError) as exc:
        raise DataError(kept, f"is damaged ({exc!r} in an entry); --force to start the run over") from None


def check_labelling(path: Path, now: dict[str, Any], allow_changes: bool, log: Callable[[str], None]) -> list[str]:
    """A resume labels and trains on what the run began with: another teacher (or changed weights),
    other footage or other filters are refused, or with ``allow_changes`` listed (and returned)."""
    if not path.is_file():  # a run from before this record: nothing to compare with
        return []
    before = read_record(path, "--force to start the run over, or give another --out")
    added = {"teacher_network", "student"}  # recorded since 2026-12-07: a record without them is not a change
    changed = [
        f"{key}: {before.get(key)!r} -> {value!r}"
        for key, value in now.items()
        if before.get(key) != value and (key in before or key not in added)
    ]
    if changed and not allow_changes:
        raise ConfigError(
            f"--resume {path.parent}: the labels would come from other inputs ({'; '.join(changed)}); "
            "--allow-changes to accept, or give another --out"
        )
    for change in changed:
        log(f"  changed since the run began: {change}")
    return changed


def clear_training(out: Path) -> None:
    """Remove what a training stopped before its first checkpoint left in the run folder (its config,
    scalars, a partial checkpoint); the labels (``INPUTS``) stay."""
    import shutil

    for path in out.iterdir():
        if path.name in INPUTS:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def student_start(student: str, teacher_disp: int) -> tuple[dict[str, Any], str | None]:
    """The student's ``model`` section and the checkpoint it starts from: a stereodistill checkpoint,
    or an architecture name (from scratch, at the teacher's max disparity)."""
    from stereodistill.checkpoint import checkpoint_paths, read_metadata
    from stereodistill.models import list_models

    if student in list_models() and not checkpoint_paths(student)[0].exists():
        return {"arch": student, "max_disp": teacher_disp}, None
    meta = read_metadata(student)
    config = dict(meta.get("config", {}))
    max_disp = int(config.pop("max_disp", 192))
    return {"arch": meta["arch"], "max_disp": max_disp, "options": config, "init": str(student)}, student


def adapt(
    teacher_path: str,
    student: str,
    unlabeled: str | Path,
    out: Path,
    *,
    steps: int = 300,
    lr: float = 1e-3,
    crop: tuple[int, int] = (192, 320),
    batch_size: int = 2,
    settings: PseudoLabelSettings = PseudoLabelSettings(),
    clamp: float | None = None,
    labels: float = 1.0,
    photometric: float = 0.0,
    teacher_arch: str | None = None,
    teacher_options: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    skip_bad: bool = False,
    force: bool = False,
    resume: bool = False,
    allow_changes: bool = False,
    device: str = "auto",
    config_file: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Pseudo-label ``unlabeled`` (a pairs CSV, or a folder holding left/ and right/) with the teacher,
    then fine-tune the student on the kept pixels; the run folder is ``out``. ``run`` is merged into
    the student's run config (``AdaptConfig.run``); ``config_file``, the file the settings came from,
    is never deleted by ``force``. Everything that can be checked (the settings, the
    networks, every pair's files) is checked before ``out`` is touched: a bad input never costs a
    previous run (``force``) or a labelling pass."""
    from stereodistill.checkpoint import checkpoint_paths, classical_network, read_metadata
    from stereodistill.config import to_dict
    from stereodistill.data.datasets import build_dataset
    from stereodistill.models.zoo import model_class
    from stereodistill.runtime import resolve_device
    from stereodistill.train import run_folder
    from stereodistill.train.trainer import Trainer

    for name, weight in (("labels", labels), ("photometric", photometric)):
        if not 0 <= weight < math.inf:  # also refuses NaN
            raise ConfigError(f"{name} is the weight of a loss: a number >= 0, got {weight}")
    if labels == photometric == 0:
        raise ConfigError("labels and photometric weigh the two losses: one must be above 0")
    refuse_owned_keys(run or {})
    dev = resolve_device(device)
    classical = classical_network(teacher_path)
    # A classical teacher has no range of its own: it takes the student's (192 for a new student).
    span = student_start(student, 192)[0]["max_disp"] if classical else 192
    teacher, teacher_files = load_teacher(teacher_path, teacher_arch, dict(teacher_options or {}), dev, span)
    if settings.confidence > 0 and "prob" not in teacher.offered_taps():
        raise ConfigError(
            f"--confidence {settings.confidence:g}: {teacher_path} ({teacher.arch}) gives no probabilities to "
            "filter by; leave it at 0"
        )
    if classical:
        log(
            f"  {teacher_path} has no probabilities: its unmatched pixels filter its labels"
            + ("" if math.isinf(settings.lr_threshold) else ", and the left-right check")
        )
    model, init = student_start(student, int(teacher.max_disp))
    if not model_class(model["arch"]).trainable:
        raise ConfigError(f"the student {student} is a classical method: it has nothing to train")
    student_disp = model["max_disp"]
    if teacher.max_disp < student_disp:
        raise ConfigError(
            f"the teacher's max disparity ({teacher.max_disp}) is below the student's ({student_disp}): its "
            "labels could not reach the student's range"
        )
    # The run config is built before anything is written (a bad key in ``run`` fails here); it trains
    # on the labels' CSV, which write_pseudo_labels puts at OUT/pseudo.csv.
    run_config = student_run(
        model,
        out,
        out / "pseudo.csv",
        steps=steps,
        lr=lr,
        crop=crop,
        batch_size=batch_size,
        clamp=clamp,
        label_weight=labels,
        photometric=photometric,
        device=device,
        run=run,
    )
    footage = list_footage(Path(unlabeled), skip_bad)
    run_config.data.batch_size = min(run_config.data.batch_size, footage.count)
    labelling = {
        # The teacher by its files, however they are spelled (``t``, ``./t.safetensors``), and their stamps.
        "teacher": [str(path.resolve()) for path in teacher_files] if teacher_files else str(teacher_path),
        "teacher_key": network_key(teacher, teacher_files),
        "teacher_network": f"{teacher.arch}({teacher.extra_repr()})",  # what the key holds, readable
        # The student the run starts from, which the photometric gate compares the labels with and the
        # report scores as "before": its files' stamps (an architecture name: from scratch).
        "student": [file_stamp(path) for path in checkpoint_paths(init)] if init else student,
        "unlabeled": str(Path(unlabeled).resolve()),
        "pairs": footage.count,
        **{f"filter.{k}": v if math.isfinite(v) else None for k, v in asdict(settings).items()},  # as JSON has it
    }
    resume_training, labelled = False, None
    if resume:
        if not (out / "pseudo").is_dir():
            raise ConfigError(f"--resume {out}: no adapt run there to continue (no pseudo/ labels)")
        run_folder.claim(out)  # before anything there is read or written
        relabel = check_labelling(out / "labelling.json", labelling, allow_changes, log)
        finished = read_metadata(out / "model").get("step") if (out / "model.json").is_file() else None
        if relabel and isinstance(finished, int) and finished >= steps:  # nothing would train on the new labels
            raise ConfigError(
                f"--resume {out}: the run is finished (step {finished}): new labels would change its records but "
                "not its model; give more --steps to train on them, or --force to start over"
            )
        labelled = labelled_pairs(out / "kept.json")
        if labelled:  # pairs the first labelling left out (undecodable, --skip-bad) did not count toward a batch
            run_config.data.batch_size = min(run_config.data.batch_size, len(labelled))
        run_folder.check_resume(out, to_dict(run_config), allow_changes=allow_changes)
        resume_training = bool(complete_checkpoints(out / "checkpoints"))
        if not resume_training:  # stopped before its first checkpoint: training starts over on the labels
            log(f"  no checkpoint in {out / 'checkpoints'} yet: training starts over on the cached labels")
            clear_training(out)
    else:
        reads = [*teacher_files, *(checkpoint_paths(init) if init else ()), unlabeled, *footage.files()]
        reads += [config_file] if config_file else []
        run_folder.prepare_new_run(  # labels there are an earlier run's (this one has made none yet)
            out,
            force=force,
            hint="give another --out, --resume to continue, or --force to start over",
            reads=reads,
        )
    for problem in footage.skipped:
        log(f"  SKIPPED {problem}")
    out.mkdir(parents=True, exist_ok=True)
    run_folder.claim(out)
    write_json(out / "labelling.json", labelling)
    unlabeled = footage.csv
    if unlabeled is None:  # a folder, or a list with pairs left out: the pairs to label, in the run folder
        unlabeled = out / "pairs.csv"
        footage.pairs.write(unlabeled, truth_column=footage.pairs.with_truth > 0)
    pairs = build_dataset("pairs", str(unlabeled))
    before = _build_student(model, init, dev)
    log(f"[1/3] pseudo-labels from {teacher.arch} for {len(pairs)} pairs (cached in {out / 'pseudo'})")
    gate_with = None
    if settings.gate and init is None:
        log("  no photometric gate: a student from scratch has no disparity of its own to compare with")
    elif settings.gate:
        gate_with = (before, list(checkpoint_paths(init)))
    labels_csv, kept, undecodable = write_pseudo_labels(
        teacher, teacher_files, pairs, out, settings, dev, log, gate_with, skip_bad
    )
    del teacher
    if undecodable:  # the pairs scored before and after are the pairs labelled
        if len(undecodable) == len(pairs):
            raise DataError(Path(unlabeled), "no readable pairs")
        kept_pairs = without(Path(unlabeled), pairs.files, undecodable)
        unlabeled = out / "pairs.csv"
        kept_pairs.write(unlabeled, truth_column=kept_pairs.with_truth > 0)
        pairs = build_dataset("pairs", str(unlabeled))
        run_config.data.batch_size = min(run_config.data.batch_size, len(pairs))
    now = {entry["left"]: entry["pair"] for entry in kept}
    if resume_training and labelled is not None and now.keys() != labelled.keys():  # one mended, or failing now
        gained, lost = sorted(now.keys() - labelled.keys()), sorted(labelled.keys() - now.keys())
        listed = [f"{now[left]} labelled now" for left in gained[:3]]
        listed += [f"{labelled[left]} no more" for left in lost[:3]]
        change = f"the run trained on other pairs ({', '.join(listed)})"
        if not allow_changes:  # kept.json still holds what it trained on: the next --resume compares again
            raise ConfigError(
                f"--resume {out}: {change}; --allow-changes to go on with them from its checkpoint (only the "
                "steps still to run see them), or --force to start over"
            )
        log(f"  changed since the run began: {change}")
    write_json(out / "kept.json", kept)
    trainer = Trainer(run_config, distill=False, resume=resume_training, allow_changes=allow_changes, inputs=INPUTS)
    check = label_check(before, pairs, labels_csv, dev)
    if not check["pixels"]:
        log("  no kept pixel where the student's own disparity stays inside the right view: nothing to compare")
    else:
        log(
            f"  photometric error on the kept pixels (no ground truth needed): labels {check['labels']:.4f}, "
            f"the student's own disparity {check['student']:.4f}"
        )
    if check["labels"] >= check["student"]:  # False when there was nothing to compare (NaN)
        stronger = "a stronger teacher" + ("" if classical else ", or sgbm,")
        log(
            "  warning: the student's own disparity already explains these pairs better than the teacher's "
            f"labels; adapting toward them will likely make it worse ({stronger} may help)"
        )
    log(f"[2/3] adapting {model['arch']} for {steps} steps on the kept pixels")
    result = trainer.run()
    run_folder.claim(out)  # the trainer let the folder go; the scores and the report are still to be written
    after = _build_student({**model, "init": None}, str(out / "model"), dev)
    report: dict[str, Any] = {
        "kept": kept,
        "photometric_error": check,
        "pseudo_csv": str(labels_csv),
        "model": str(out / "model"),
    }
    if any(files.disp is not None for files in pairs.files):  # scored only, never trained on
        scores = {
            "before": _score(before, unlabeled, student_disp, dev),
            "after": _score(after, unlabeled, student_disp, dev),
        }
        report["ground_truth"] = scores
        log(
            f"  on the list's ground truth (not used for training): EPE {scores['before']['epe']:.3f} -> "
            f"{scores['after']['epe']:.3f} px; {coverage_line(scores['after']['ground_truth'], student_disp)}"
        )
        advice = "to cover them, adapt a student of a larger range, or give the pairs at a smaller size"
        warning = left_out_warning(scores["after"]["ground_truth"], student_disp, advice)  # adapt has no scale
        if warning:
            log(f"  {warning}")
            report["ground_truth_warning"] = warning
    write_json(out / "adapt.json", {**report, "steps": result.get("step")})
    log(f"[3/3] report: {_write_report(out, pairs, labels_csv, before, after, report, student_disp, dev)}")
    return report


def student_run(
    model: dict[str, Any],
    out: Path,
    labels: Path,
    *,
    steps: int,
    lr: float,
    crop: tuple[int, int],
    batch_size: int,
    clamp: float | None,
    device: str,
    run: dict[str, Any] | None,
    label_weight: float = 1.0,
    photometric: float = 0.0,
) -> RunConfig:
    """The student's run config: supervised training on the labelled pairs with weight ``label_weight``, and
    the photometric loss with weight ``photometric`` (AdamW, cosine), with ``run`` merged in."""
    from stereodistill.config import from_dict, merge_mappings
    from stereodistill.train.config import RunConfig

    config = {
        "name": "adapt",
        "output": str(out),
        "device": device,
        "steps": steps,
        "model": model,
        "data": {
            "train": {"dataset": "pairs", "root": str(labels), "max_disp": model["max_disp"]},
            "crop": list(crop),
            "batch_size": batch_size,
        },
        "optim": {"name": "adamw", "lr": lr, "schedule": "cosine", "grad_clip": 10.0},
        "supervised": {"loss": "smooth_l1", "clamp": clamp, "weight": label_weight},
        "photometric": {"weight": photometric},
        "freeze_bn": True,  # a few crops of a few pairs would replace the statistics the student learnt
        "checkpoint_every": CHECKPOINT_EVERY,  # so that an interrupted run can be resumed
    }
    return from_dict(RunConfig, merge_mappings(config, run or {}), where="run")


def _build_student(model: dict[str, Any], checkpoint: str | None, device: torch.device) -> torch.nn.Module:
    """The student before (its checkpoint, or freshly initialised) or after adaptation, in eval mode."""
    from stereodistill.checkpoint import load_model
    from stereodistill.models import build_model

    if checkpoint is not None:
        return load_model(checkpoint, map_location=device).eval()
    net = build_model(model["arch"], max_disp=model["max_disp"], **model.get("options", {}))
    return net.to(device).eval()


def _score(model: torch.nn.Module, listing: str | Path, max_disp: int, device: torch.device) -> dict[str, float]:
    """Pooled metrics of ``model`` on the pairs of ``listing`` that have ground truth."""
    from stereodistill.data.datasets import build_dataset
    from stereodistill.evaluate.evaluator import evaluate_model

    return evaluate_model(model, {"list": build_dataset("pairs", str(listing), max_disp=max_disp)}, device)["list"]


@torch.no_grad()
def _write_report(
    out: Path,
    pairs: Any,
    labels_csv: Path,
    before: torch.nn.Module,
    after: torch.nn.Module,
    report: dict[str, Any],
    max_disp: int,
    device: torch.device,
) -> Path:
    """``out/report.html`` for the first few pairs: left image, the teacher's labels (the other pixels
    black), the student before and after."""
    from stereodistill.data.datasets import build_dataset
    from stereodistill.data.formats import read_mask
    from stereodistill.report.adapt_report import AdaptExample, write_adapt_report

    labelled = build_dataset("pairs", str(labels_csv))
    examples = []
    for index in range(min(REPORT_PAIRS, len(pairs))):
        sample, label = pairs.load(index), labelled.load(index)
        left, right = sample["left"][None].to(device), sample["right"][None].to(device)
        examples.append(
            AdaptExample(
                name=pairs.files[index].id,
                left=sample["left"].numpy().transpose(1, 2, 0),
                label=label["disp"].numpy(),
                kept=label["valid"].numpy().astype(bool),
                taught=read_mask(report["kept"][index]["teacher_mask"]),
                before=before(left, right).disparity[0].cpu().numpy(),
                after=after(left, right).disparity[0].cpu().numpy(),
            )
        )
    return write_adapt_report(out, examples, report, max_disp)
