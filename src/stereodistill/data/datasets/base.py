"""What every dataset reader shares: file discovery → list of :class:`SampleFiles` → sample dicts.

A reader only says where a layout keeps its files (:meth:`StereoDataset.discover`) and, where the
dataset has its own conventions, how to decode ground truth and masks. Loading, size checks, the
validity rule, list-file filtering and the empty-dataset error live here, once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from stereodistill.data.formats import read_disparity, read_image, read_mask
from stereodistill.data.sample import make_sample
from stereodistill.errors import DataError
from stereodistill.registry import Registry

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]

DATASETS: Registry[type[StereoDataset]] = Registry("dataset")


@dataclass(frozen=True)
class SampleFiles:
    """The files of one stereo pair; ``disp``/``mask`` are None when the dataset ships none."""

    id: str
    left: Path
    right: Path
    disp: Path | None = None
    mask: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Other ids and left images of this very pair (a scene unpacked into two folders, listed once),
    #: by which a list file may name it too.
    aliases: tuple[tuple[str, Path], ...] = ()


def list_dir(directory: Path) -> list[os.DirEntry[str]]:
    """The entries of a directory (one listing, no per-file stat); unreadable → DataError naming it."""
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError as exc:
        raise DataError(directory, f"cannot list directory ({exc.strerror or exc})") from None


def read_list_file(path: str | Path) -> list[str]:
    """Entries of a list file: one per line, first whitespace-separated token; ``#`` starts a comment."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "list file does not exist")
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            entries.append(line.split()[0].replace("\\", "/"))
    return entries


def _trailing_parts(path: Path, root: Path) -> list[str]:
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.as_posix()
    parts = rel.split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def path_matches(path: Path, root: Path, entries: set[str]) -> bool:
    """True when any trailing part of ``path`` (taken relative to ``root`` when inside it) is an entry.

    List files written for one machine (``TRAIN/A/0001/left/0006.png``) then match wherever the
    dataset sits on another.
    """
    return any(part in entries for part in _trailing_parts(path, root))


def listed_entries(files: SampleFiles, root: Path, entries: set[str], named: dict[Path, list[str]]) -> list[str]:
    """The entries that name a sample: its id, any trailing part of its left image path, or (``named``:
    the entries that are files as given, absolute or from the working folder, by real path) that file."""
    found = []
    for sample_id, left in ((files.id, files.left), *files.aliases):
        found += [entry for entry in (sample_id, *_trailing_parts(left, root)) if entry in entries]
        if named:
            found += named.get(left.resolve(), [])
    return found


class StereoDataset(torch.utils.data.Dataset):
    """Base reader. Subclasses set ``name`` and implement :meth:`discover`."""

    name: ClassVar[str] = ""
    layout: ClassVar[str] = ""  # one line describing the expected directory layout, for errors
    #: The split ``eval`` reads by default: the one whose pairs have ground truth.
    evaluation_split: ClassVar[str] = "train"

    @classmethod
    def scoring_split(cls, list_file: str | Path | None = None, options: Mapping[str, Any] | None = None) -> str:
        """The split a set to score (``eval``, a run's ``data.val``, an ablation's sets) reads when none
        is given, for these reader options and list."""
        return cls.evaluation_split

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        list_file: str | Path | None = None,
        max_disp: float | None = None,
        transform: Transform | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.max_disp = max_disp
        self.transform = transform
        if not self.root.exists():
            raise DataError(self.root, f"{self.name} root does not exist")
        files = sorted(self.discover(), key=lambda f: f.id)
        #: Entries of ``list_file`` that name no sample of this split (a typo, or another split's).
        self.unlisted: list[str] = []
        if list_file is not None:
            wanted = read_list_file(list_file)
            entries = set(wanted)
            named: dict[Path, list[str]] = {}
            for entry in entries:  # one file may be spelled several ways (./a.png, its absolute path)
                if Path(entry).is_file():
                    named.setdefault(Path(entry).resolve(), []).append(entry)
            used, kept = set(), []
            for sample in files:
                found = listed_entries(sample, self.root, entries, named)
                used.update(found)
                kept += [sample] if found else []
            files = kept
            self.unlisted = [entry for entry in dict.fromkeys(wanted) if entry not in used]
        if not files:
            where = f" listed in {list_file}" if list_file is not None else ""
            raise DataError(
                self.root, f"no {self.name} samples{where} found for split {split!r}; expected {self.layout}"
            )
        self.files: list[SampleFiles] = files

    def unlisted_warning(self, list_file: str | Path) -> str | None:
        """A line naming the entries of ``list_file`` that matched no sample, or None when all did."""
        if not self.unlisted:
            return None
        count = len(self.unlisted)
        shown = ", ".join(self.unlisted[:3]) + (f" (and {count - 3} more)" if count > 3 else "")
        entries = "1 entry names" if count == 1 else f"{count} entries name"
        return (
            f"warning: {list_file}: {entries} no {self.name} sample of split {self.split!r} under {self.root}, "
            f"and {'is' if count == 1 else 'are'} left out: {shown}"
        )

    def warn_unlisted(self, list_file: str | Path | None) -> None:
        """Print :meth:`unlisted_warning` to stderr when a list was given and some entry matched nothing."""
        warning = self.unlisted_warning(list_file) if list_file is not None else None
        if warning is not None:
            print(warning, file=sys.stderr)

    # -- what a reader provides ------------------------------------------------------------------
    def discover(self) -> list[SampleFiles]:
        raise NotImplementedError

    def read_disp(self, files: SampleFiles) -> np.ndarray | None:
        return None if files.disp is None else read_disparity(files.disp)

    def read_nonoccluded(self, files: SampleFiles) -> np.ndarray | None:
        return None if files.mask is None else read_mask(files.mask)

    # -- shared ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> Sample:
        """The raw sample (no transform)."""
        files = self.files[index]
        left = read_image(files.left)
        right = read_image(files.right)
        disp = self.read_disp(files)
        nonocc = self.read_nonoccluded(files) if disp is not None else None
        meta = {"dataset": self.name, "id": files.id, "left_path": str(files.left), **files.extra}
        paths = {"left": files.left, "right": files.right, "disp": files.disp, "mask": files.mask}
        return make_sample(left, right, disp, meta=meta, nonoccluded=nonocc, max_disp=self.max_disp, paths=paths)

    def load_views(self, index: int) -> Sample:
        """The two views only, as a sample without ground truth: for work that never uses it
        (``adapt``'s labels), so a broken ground-truth file does not stop that work."""
        files = self.files[index]
        meta = {"dataset": self.name, "id": files.id, "left_path": str(files.left), **files.extra}
        paths = {"left": files.left, "right": files.right}
        return make_sample(read_image(files.left), read_image(files.right), None, meta=meta, paths=paths)

    def __getitem__(self, index: int) -> Sample:
        sample = self.load(index)
        return self.transform(sample) if self.transform is not None else sample


#: What every reader takes; the rest of a build's keywords are the reader's own options.
COMMON_ARGUMENTS = ("split", "list_file", "max_disp", "transform")


def build_dataset(name: str, root: str | Path, **kwargs: Any) -> StereoDataset:
    """Instantiate a registered reader by name (``sceneflow``, ``kitti2015``, ``pairs``, ...). Its own
    options (``--option``, a config's ``options``) are checked first: an unknown one is an error
    naming the nearest and the valid ones, a value of the wrong type names the option."""
    from stereodistill.config import keyword_options

    reader = DATASETS.get(name)
    common = {key: value for key, value in kwargs.items() if key in COMMON_ARGUMENTS}
    options = {key: value for key, value in kwargs.items() if key not in COMMON_ARGUMENTS}
    checked = keyword_options(reader, options, f"{name}.options", skip=("root", *COMMON_ARGUMENTS))
    return reader(root, **common, **checked)
