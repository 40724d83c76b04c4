"""Adapting a student to a user's own unlabeled stereo pairs with a teacher's filtered pseudo-labels.

The teacher predicts each pair once (its disparity cached on disk under a key of the teacher's
weights, the pair's files and its size, so neither a step nor a rerun pays for it again), and only
the pixels that pass two filters become labels:

* **left-right consistency**: the teacher also predicts the mirrored, swapped pair, which gives the
  right view's disparity; a left pixel is kept when the right view, read where the pixel lands
  (x − d), agrees within ``lr_threshold`` px (occlusions and mismatches fail it);
* **confidence**: the teacher's distribution peaks at ≥ ``confidence`` probability.

The labels and masks are written as PFM + PNG beside a ``pairs`` CSV, and the student then trains on
them through the ordinary supervised trainer (its crops and augmentations, smooth-L1, which is
robust to the residue the filters let through), starting from its own weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stereodistill.errors import ConfigError
from stereodistill.fileio import write_json


@dataclass(frozen=True)
class PseudoLabelSettings:
    lr_threshold: float = 1.0  # px: left-right disagreement above this drops the pixel
    confidence: float = 0.3  # the teacher's peak probability below this drops the pixel


def _file_key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def teacher_key(teacher_files: list[Path]) -> str:
    """What a cached label depends on in the teacher: its files (weights and metadata)."""
    return hashlib.sha256("|".join(_file_key(p) for p in teacher_files if p.is_file()).encode()).hexdigest()[:16]


@torch.no_grad()
def pseudo_label(
    teacher: torch.nn.Module, left: torch.Tensor, right: torch.Tensor, settings: PseudoLabelSettings
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's disparity of the left view (H×W) and the mask of the pixels that pass both
    filters, for 1×3×H×W images in [0, 1]."""
    out = teacher(left, right, taps=["prob"])
    disparity = out.disparity[0]
    peak = out.taps["prob"][0].amax(dim=0)
    # The right view's disparity: the same network on the mirrored pair with the views swapped.
    mirrored = teacher(right.flip(-1), left.flip(-1)).disparity[0].flip(-1)
    width = disparity.shape[-1]
    columns = torch.arange(width, device=disparity.device).expand_as(disparity)
    landing = (columns - disparity).round().long()
    inside = (landing >= 0) & (landing < width)
    seen = torch.gather(mirrored, 1, landing.clamp(0, width - 1))
    consistent = inside & ((seen - disparity).abs() <= settings.lr_threshold)
    confident = peak >= settings.confidence
    return disparity.float().cpu().numpy(), (consistent & confident).cpu().numpy()


def write_pseudo_labels(
    teacher: torch.nn.Module,
    teacher_files: list[Path],
    pairs: Any,
    out: Path,
    settings: PseudoLabelSettings,
    device: torch.device,
    log: Callable[[str], None] = print,
) -> tuple[Path, list[dict[str, Any]]]:
    """Label every pair of ``pairs`` (a ``pairs`` dataset), reusing cached labels; returns the CSV of
    the labelled pairs and, per pair, the fraction of its pixels kept."""
    from stereodistill.data.formats import image_size, read_mask, write_image, write_pfm
    from stereodistill.fileio import write_text_atomic

    cache = out / "pseudo"
    key = teacher_key(teacher_files)
    rows, kept = ["left,right,disp,mask"], []
    for index, files in enumerate(pairs.files):
        height, width = image_size(files.left)  # from the header: a cached pair is not decoded
        name = hashlib.sha256(
            f"{key}|{_file_key(files.left)}|{_file_key(files.right)}|{height}x{width}|{settings}".encode()
        ).hexdigest()[:20]
        disp_path, mask_path = cache / f"{name}.pfm", cache / f"{name}_mask.png"
        if not (disp_path.is_file() and mask_path.is_file()):
            sample = pairs.load(index)
            disparity, mask = pseudo_label(
                teacher, sample["left"][None].to(device), sample["right"][None].to(device), settings
            )
            write_image(mask_path, np.repeat(mask[..., None], 3, axis=2).astype(np.float32))
            write_pfm(disp_path, disparity)  # written last: a label with its disparity is complete
        else:
            mask = read_mask(mask_path)
        kept.append({"pair": files.id, "left": str(files.left), "kept": float(mask.mean())})
        log(f"  pseudo-label {index + 1}/{len(pairs.files)} {files.id}: {100 * mask.mean():.1f} % of pixels kept")
        rows.append(f"{files.left.resolve()},{files.right.resolve()},{disp_path.resolve()},{mask_path.resolve()}")
    csv = out / "pseudo.csv"
    write_text_atomic(csv, "\n".join(rows) + "\n")
    write_json(out / "kept.json", kept)
    return csv, kept


def adapt(
    teacher_path: str,
    student_path: str,
    unlabeled: str,
    out: Path,
    *,
    steps: int = 300,
    lr: float = 1e-4,
    crop: tuple[int, int] = (192, 320),
    batch_size: int = 2,
    settings: PseudoLabelSettings = PseudoLabelSettings(),
    force: bool = False,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Pseudo-label ``unlabeled`` (a pairs CSV) with the teacher, then fine-tune the student on them."""
    from stereodistill.checkpoint import checkpoint_paths, load_model, read_metadata
    from stereodistill.config import from_dict
    from stereodistill.data.datasets import build_dataset
    from stereodistill.runtime import resolve_device
    from stereodistill.train.config import RunConfig
    from stereodistill.train.run_folder import prepare_new_run
    from stereodistill.train.trainer import Trainer

    dev = resolve_device(device)
    teacher = load_model(teacher_path, map_location=dev)
    student_meta = read_metadata(student_path)
    student_disp = int(student_meta.get("config", {}).get("max_disp", 192))
    if teacher.max_disp < student_disp:
        raise ConfigError(
            f"the teacher's max disparity ({teacher.max_disp}) is below the student's ({student_disp}): its "
            "labels could not reach the student's range"
        )
    prepare_new_run(out, force=force, hint="give another --out, or --force to start over")
    out.mkdir(parents=True, exist_ok=True)
    pairs = build_dataset("pairs", unlabeled)
    log(f"[1/2] pseudo-labels from {teacher.arch} for {len(pairs)} pairs (cached in {out / 'pseudo'})")
    csv, kept = write_pseudo_labels(teacher, list(checkpoint_paths(teacher_path)), pairs, out, settings, dev, log)
    del teacher
    config = {
        "name": "adapt",
        "output": str(out / "run"),
        "device": device,
        "steps": steps,
        "model": {
            "arch": student_meta["arch"],
            "max_disp": student_disp,
            "options": {k: v for k, v in student_meta.get("config", {}).items() if k != "max_disp"},
            "init": str(student_path),
        },
        "data": {
            "train": {"dataset": "pairs", "root": str(csv), "max_disp": student_disp},
            "crop": list(crop),
            "batch_size": min(batch_size, len(pairs)),
        },
        "optim": {"name": "adamw", "lr": lr, "schedule": "cosine", "grad_clip": 10.0},
        "supervised": {"loss": "smooth_l1"},
    }
    with_truth = any(files.disp is not None for files in pairs.files)
    before = _score(load_model(student_path, map_location=dev), unlabeled, student_disp, dev) if with_truth else None
    log(f"[2/2] adapting {student_meta['arch']} for {steps} steps on the kept pixels")
    result = Trainer(from_dict(RunConfig, config), distill=False).run()
    report: dict[str, Any] = {"kept": kept, "pseudo_csv": str(csv), "model": str(out / "run" / "model")}
    if with_truth:  # scored only, never trained on
        after = _score(load_model(out / "run" / "model", map_location=dev), unlabeled, student_disp, dev)
        report["ground_truth"] = {"before": before, "after": after}
        log(f"  on the list's ground truth (not used for training): EPE {before['epe']:.3f} -> {after['epe']:.3f} px")
    write_json(out / "adapt.json", {**report, "steps": result.get("step")})
    return report


def _score(model: torch.nn.Module, csv: str, max_disp: int, device: torch.device) -> dict[str, float]:
    """Pooled metrics of ``model`` on the pairs of ``csv`` that have ground truth."""
    from stereodistill.data.datasets import build_dataset
    from stereodistill.evaluate.evaluator import evaluate_model

    return evaluate_model(model, {"list": build_dataset("pairs", csv, max_disp=max_disp)}, device)["list"]
