"""Writing pairs in the SceneFlow (FlyingThings3D) layout, with a manifest, resumably."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stereodistill.data.formats import write_image, write_pfm
from stereodistill.data.synthetic.config import FRAMES_PER_SCENE, SPLIT_DIRS, SPLIT_SEEDS, SynthConfig
from stereodistill.data.synthetic.generate import generate_pair
from stereodistill.errors import ConfigError, DataError
from stereodistill.fileio import atomic_path, write_text_atomic


def _write_mask(path: Path, mask: np.ndarray) -> None:
    """8-bit single-channel PNG, 255 where ``mask`` is True; atomic."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(tmp, format="PNG")


def _pair_files(out: Path, split: str, i: int) -> dict[str, Path]:
    """Paths of pair ``i`` of a split: scene ``i // 10``, frame ``i % 10``."""
    scene = Path(SPLIT_DIRS[split]) / "A" / f"{i // FRAMES_PER_SCENE:04d}"
    frame = f"{i % FRAMES_PER_SCENE:04d}"
    return {
        "left": out / "frames_finalpass" / scene / "left" / f"{frame}.png",
        "right": out / "frames_finalpass" / scene / "right" / f"{frame}.png",
        "disp_left": out / "disparity" / scene / "left" / f"{frame}.pfm",
        "disp_right": out / "disparity" / scene / "right" / f"{frame}.pfm",
        "occlusion": out / "occlusion" / scene / "left" / f"{frame}.png",
    }


def _remove_stale(out: Path, split: str, n_pairs: int, previous: Any) -> None:
    """Delete the pairs an earlier, larger run of this split wrote, so the reader sees ``n_pairs``.

    Only the exact files that ``synth.json`` says were written are removed, then any folder left empty.
    """
    old = previous.get("n_pairs") if isinstance(previous, dict) else None
    if not isinstance(old, int) or old <= n_pairs:
        return
    folders: set[Path] = set()
    for i in range(n_pairs, old):
        for path in _pair_files(out, split, i).values():
            path.unlink(missing_ok=True)
            folders.update((path.parent, path.parent.parent))
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: other frames are still there
            folder.rmdir()


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            path, f"existing synth.json is not readable JSON ({exc}); remove it or pick another folder"
        ) from None
    if not isinstance(data, dict):
        raise DataError(path, "existing synth.json does not hold a JSON object; remove it or pick another folder")
    return data


def pair_seed(seed: int, split: str, index: int) -> tuple[int, ...]:
    """``(seed, split code, index)``, with a 1 appended when it would end in 0: NumPy's seeding drops
    trailing zeros, so ``(0, 1, 0)`` would draw what ``(0, 1)`` draws, which is the in-memory
    training pair 1 of ``SyntheticStereo(seed=0)``: the quickstart's first test pair was also one it
    trained on."""
    key = (seed, SPLIT_SEEDS[split], index)
    return (*key, 1) if index == 0 else key


def write_synthetic(
    out: str | Path,
    n_pairs: int,
    config: SynthConfig,
    seed: int = 0,
    split: str = "train",
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write ``n_pairs`` pairs in the FlyingThings3D layout so that the SceneFlow reader reads them.

    ``out/frames_finalpass/{TRAIN|TEST}/A/{scene:04d}/{left,right}/{frame:04d}.png`` (8-bit),
    ``out/disparity/.../{left,right}/{frame:04d}.pfm`` and ``out/occlusion/.../left/{frame:04d}.png``
    (255 = occluded), 10 frames per scene. Pair i uses seed ``(seed, 0, i)`` for train and
    ``(seed, 1, i)`` for test (see :func:`pair_seed`), so splits never share a pair, nor with the
    pairs training draws in memory. ``out/synth.json`` records each split's
    size, seed and config (merged with what is there). Every file is written atomically. Returns the
    left image paths.
    """
    if split not in SPLIT_DIRS:
        raise ConfigError(f"synthetic split must be one of {', '.join(SPLIT_DIRS)}, got {split!r}")
    if n_pairs < 0:
        raise ConfigError(f"n_pairs must be >= 0, got {n_pairs}")
    out = Path(out)
    manifest_path = out / "synth.json"
    manifest = _read_manifest(manifest_path)  # fail before writing anything if it is broken
    lefts: list[Path] = []
    for i in range(n_pairs):
        pair = generate_pair(config, pair_seed(seed, split, i))
        files = _pair_files(out, split, i)
        write_image(files["left"], pair.left, compress_level=1)
        write_image(files["right"], pair.right, compress_level=1)
        write_pfm(files["disp_left"], pair.disp)
        write_pfm(files["disp_right"], pair.disp_right)
        _write_mask(files["occlusion"], pair.occlusion)
        lefts.append(files["left"])
        if progress is not None:
            progress(i + 1, n_pairs)
    _remove_stale(out, split, n_pairs, manifest.get(split))
    manifest[split] = {"n_pairs": n_pairs, "seed": seed, "config": asdict(config)}
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return lefts
