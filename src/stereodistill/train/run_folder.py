"""One run per folder: a new run never mixes with an old one, and a resume never silently changes
what is being trained.

- A new run into a folder that already holds files is refused; ``force`` clears it first (the old
  folder is renamed aside in one step, then deleted, so a crash never leaves half of it).
- A resume compares the run's saved ``config.yaml`` with the config given now: a difference that
  changes what the checkpoint holds (the network, the distillation terms' adapters and taps, the
  loss weighting) is an error; any other difference is listed and needs ``allow_changes``. The
  accepted changes are recorded at the top of ``config.yaml``, which thereby keeps the history.
- ``scalars.csv`` is cut back to the checkpoint's step, so a resumed run does not repeat rows.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from stereodistill.errors import ConfigError, DataError
from stereodistill.fileio import read_record, write_text_atomic

#: Dotted keys (and key prefixes) whose change alters the parameters a checkpoint holds.
STRUCTURAL = ("model.", "distill.weighting.type")
#: Keys of a distillation term that decide its adapter's shapes.
STRUCTURAL_TERM_KEYS = ("student", "teacher", "adapter")
HISTORY_MARK = "# history: "


try:
    import fcntl
except ImportError:  # Windows: no advisory lock, the folder checks alone
    fcntl = None  # type: ignore[assignment]

#: The run folders this process holds (real path → the open folder whose lock it holds).
_CLAIMED: dict[str, int] = {}


def claim(out: Path) -> None:
    """Hold ``out`` for this process as long as it lives (an advisory lock on the folder), so that a
    second process on it (the run resumed twice, ``--force`` while it trains) is refused instead of
    mixing its files with this one's. A folder not made yet is claimed once it is; again is a no-op."""
    if fcntl is None or not out.is_dir():
        return
    key = os.path.realpath(out)
    if key in _CLAIMED:
        return
    try:
        handle = os.open(key, os.O_RDONLY)
    except OSError:  # a folder this process cannot open: the checks that read it say what is wrong
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        raise ConfigError(
            f"{out} is in use by another stereodistill process that is still running there: wait for it to "
            "end (or stop it), or give another output folder"
        ) from None
    _CLAIMED[key] = handle


def claimed(out: Path) -> bool:
    """Whether this process holds ``out`` (a run that has ended has let go of it)."""
    return os.path.realpath(out) in _CLAIMED


def release(folder: Path) -> None:
    """Let go of a folder this process claimed (its run has ended)."""
    handle = _CLAIMED.pop(os.path.realpath(folder), None)
    if handle is not None:
        os.close(handle)


def prepare_new_run(
    out: Path,
    *,
    force: bool,
    hint: str = "--resume to continue it, or --force to start over",
    inputs: Collection[str] = (),
    reads: Iterable[str | Path] = (),
    clear: bool = True,
) -> bool:
    """Refuse a folder that holds files, unless ``force`` and it is a run's folder (:func:`holds_a_run`):
    then clear it; a user's own folder, or the one the user works in, is never cleared. ``inputs``: names the
    caller has put there for this very run (``adapt``'s pseudo-labels), which do not make it used.
    ``reads``: the files the run reads (checkpoints, images, lists); ``force`` never deletes them.
    With ``clear`` False nothing is deleted yet: the result says whether the caller must clear the
    folder (:func:`clear_folder`) once everything else is checked, so a bad setting never costs the
    old run."""
    claim(out)  # a run still going there is never cleared or joined
    if not out.exists() or (out.is_dir() and all(entry.name in inputs for entry in out.iterdir())):
        return False
    if not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    names = sorted(entry.name for entry in out.iterdir() if entry.name not in inputs)
    shown = ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
    foreign = ConfigError(
        f"{out} holds files that are not a stereodistill run's ({shown}): --force clears only a run's folder; "
        "give a new or empty output folder"
    )
    is_run = holds_a_run(out)
    if not force:
        raise ConfigError(f"{out} holds a run already: {hint}") if is_run else foreign
    if out.is_symlink():  # clearing would replace the link, and leave the run it points to as it was
        raise ConfigError(f"{out} is a link to {os.path.realpath(out)}: give that folder itself with --force")
    folder = out.resolve()
    for path in reads:
        resolved = Path(path).resolve()
        if resolved == folder or folder in resolved.parents:
            raise ConfigError(f"{out}: --force would delete {path}, which this run reads; give another output folder")
    if not is_run:  # a user's own folder: --force must not empty it
        raise foreign
    if folder == Path.cwd().resolve() or folder in Path.cwd().resolve().parents:
        raise ConfigError(f"{out}: --force would delete the folder you are working in; give another output folder")
    if clear:
        clear_folder(out)
    return not clear


#: The first line of a run's ``scalars.csv`` (train, distill, adapt), which ``RunLogger`` writes as
#: the run starts: the signature by which ``--force`` knows a run's folder from a user's own.
SCALARS_HEADER = "step,stage,name,value"
#: The first line of the recipe the quickstart copies into its folder.
RECIPE_MARK = "# the recipe of this stereodistill quickstart run (--recipe FILE reruns it)"
#: Everything the quickstart writes in its folder: a marked recipe beside anything else is a copy.
QUICKSTART_NAMES = ("recipe.yaml", "data", "runs", "images", "report.json", "report.md", "report.html")


def holds_a_run(folder: Path) -> bool:
    """Whether ``folder`` is a run's, which ``--force`` may clear, rather than a user's own folder:
    it holds a run's log (train, distill, adapt), adapt's record of its labels, or the quickstart's
    recipe, each as this tool writes it. Names a user may also give their own files (``config.yaml``,
    ``model.safetensors``, ``checkpoints``) do not count."""
    if _first_line(folder / "scalars.csv") == SCALARS_HEADER or _record_has(
        folder / "labelling.json", {"teacher_key", "unlabeled"}
    ):
        return True
    recipe = folder / "recipe.yaml"  # a user's own copy of a recipe has the same name and keys, not the mark
    if _first_line(recipe) == RECIPE_MARK:  # and a copy of a run's own recipe beside other files is not a run
        return all(entry.name in QUICKSTART_NAMES for entry in folder.iterdir())
    # A quickstart written before the mark: its recipe beside the teacher's run.
    return _record_has(recipe, {"common", "teacher", "student"}) and holds_a_run(folder / "runs" / "teacher")


def _first_line(path: Path) -> str | None:
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return None


def _record_has(path: Path, keys: set[str]) -> bool:
    """Whether ``path`` is a record this tool wrote that holds ``keys``."""
    if not path.is_file():
        return False
    try:
        return keys <= read_record(path, "").keys()
    except DataError:
        return False


def clear_folder(folder: Path) -> None:
    """Delete ``folder``: renamed aside first (atomic), so no one ever sees it half deleted."""
    aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
    release(folder)  # the folder made in its place is claimed anew
    os.replace(folder, aside / folder.name)
    shutil.rmtree(aside)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys → leaf values; distillation terms are keyed by name, not position."""
    if isinstance(data, Mapping):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    if prefix == "distill.terms." and isinstance(data, list):
        return flatten({term.get("name", str(i)): term for i, term in enumerate(data)}, prefix)
    return {prefix[:-1]: data}


def config_changes(saved: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key → (saved value, given value) for every difference (None: absent); a weighting is
    compared as it runs (``{type: fixed}`` is no weighting, a default written out is the default)."""
    old, new = flatten(_as_run(saved)), flatten(_as_run(given))
    keys = sorted(old.keys() | new.keys())
    return {
        key: (old.get(key), new.get(key))
        for key in keys
        if old.get(key) != new.get(key) and not _same_file(key, old.get(key), new.get(key))
    }


#: Keys that name a file or folder: the same one spelled otherwise (relative, absolute, with a suffix) is no change.
PATH_KEYS = ("output", "model.init", "teacher.checkpoint", "teacher.original")
CHECKPOINT_KEYS = ("model.init", "teacher.checkpoint")


def _same_file(key: str, saved: Any, given: Any) -> bool:
    from stereodistill.checkpoint import checkpoint_paths

    if not (isinstance(saved, str) and isinstance(given, str)):
        return False
    if not (key in PATH_KEYS or (key.startswith("data.") and key.endswith((".root", ".list_file")))):
        return False
    if key in CHECKPOINT_KEYS:  # NAME, NAME.safetensors and NAME.json are one checkpoint
        saved, given = str(checkpoint_paths(saved)[0]), str(checkpoint_paths(given)[0])
    return Path(saved).resolve() == Path(given).resolve()


def _as_run(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """A recorded config as it runs: the weighting in full, and the steps of stages given in absolute
    steps (before 2026-12-07 a run recorded the default 1000 beside them, and trained their sum)."""
    from stereodistill.distill.weights import weighting_in_full
    from stereodistill.train.config import absolute_stages

    config = dict(config)
    stages = absolute_stages(config)
    if stages:
        config["steps"] = sum(stage["steps"] for stage in stages)
    distill = config.get("distill")
    if isinstance(distill, Mapping):
        config["distill"] = {**distill, "weighting": weighting_in_full(distill.get("weighting"))}
    return config


def is_structural(key: str) -> bool:
    if key.startswith(STRUCTURAL):
        return True
    parts = key.split(".")
    if parts[:2] == ["distill", "terms"] and len(parts) >= 4:
        return parts[3] in STRUCTURAL_TERM_KEYS
    return False


def term_names(config: Mapping[str, Any]) -> list[str]:
    """The distillation terms' names, in their order."""
    distill = config.get("distill")
    terms = distill.get("terms") if isinstance(distill, Mapping) else None
    if not isinstance(terms, list):
        return []
    return [str(term.get("name", index)) for index, term in enumerate(terms) if isinstance(term, Mapping)]


def describe_changes(changes: Mapping[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{key}: {old!r} → {new!r}" for key, (old, new) in changes.items())


def keep_recorded_val_split(out: Path, data: Any) -> None:
    """A resumed run validates on the split it recorded when the config leaves ``data.val``'s split to
    the default and names the same set: that default changed (to the evaluation split), and must not
    move a run to other pairs half way. (The other sets' default did not change.)"""
    path = out / "config.yaml"
    if not path.is_file() or not data.val_split_defaulted:
        return
    recorded = read_record(path, "--force to start the run over, or another output").get("data")
    entry = recorded.get("val") if isinstance(recorded, Mapping) else None
    split = entry.get("split") if isinstance(entry, Mapping) else None
    if isinstance(split, str) and (entry.get("dataset"), entry.get("root")) == (data.val.dataset, data.val.root):
        data.val.split = split


def check_resume(out: Path, given: Mapping[str, Any], *, allow_changes: bool) -> dict[str, tuple[Any, Any]]:
    """The accepted changes between the saved config and ``given``; an error for any other."""
    claim(out)
    path = out / "config.yaml"
    if not path.is_file():
        return {}
    saved = read_record(path, "--force to start the run over, or another output")
    changes = config_changes(saved, given)
    structural = {key: change for key, change in changes.items() if is_structural(key)}
    # A term added or removed changes the adapters and the weighting's state; a key set or unset
    # within a term that stays (a weight schedule, a mask) is an ordinary change.
    before, now = term_names(saved), term_names(given)
    whole = {f"distill.terms.{name}": ("a term", None) for name in sorted(set(before) - set(now))}
    whole.update({f"distill.terms.{name}": (None, "a term") for name in sorted(set(now) - set(before))})
    kept_before, kept_now = [n for n in before if n in now], [n for n in now if n in before]
    if kept_before != kept_now:  # the weighting's state (DWA's history, uncertainty's s) is kept in term order
        whole["distill.terms (order)"] = (kept_before, kept_now)
    structural = {k: c for k, c in structural.items() if not any(k.startswith(f"{term}.") for term in whole)}
    structural.update(whole)
    if structural:
        raise ConfigError(
            f"--resume {out}: the config changes what the checkpoint holds ({describe_changes(structural)}); "
            "start a new run (another output, or --force)"
        )
    if changes and not allow_changes:
        differences = describe_changes(changes)
        raise ConfigError(f"--resume {out}: the config differs from the run's ({differences}); add --allow-changes")
    return changes


def write_config(out: Path, config: Mapping[str, Any], step: int, changes: Mapping[str, tuple[Any, Any]]) -> None:
    """``config.yaml``: the config now in force, below the history of changes accepted on resuming."""
    path = out / "config.yaml"
    history = []
    if path.is_file():
        history = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith(HISTORY_MARK)]
    if changes:
        history.append(f"{HISTORY_MARK}resumed at step {step} with {describe_changes(changes)}")
    body = yaml.safe_dump(dict(config), sort_keys=False)
    write_text_atomic(path, "".join(line + "\n" for line in history) + body)


def truncate_scalars(out: Path, step: int, validated: bool = True) -> None:
    """Drop the rows of ``scalars.csv`` logged after ``step`` (by a run killed after its checkpoint),
    and with ``validated`` False its validation rows at ``step`` too (the run validates there again)."""
    path = out / "scalars.csv"
    if not path.is_file():
        return
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"is damaged ({exc}); --force to start the run over, or another output") from None
    kept = rows[:1] + [
        row
        for row in rows[1:]
        if row
        and row[0].isdigit()
        and (
            int(row[0]) < step or (int(row[0]) == step and (validated or len(row) < 3 or not row[2].startswith("val/")))
        )
    ]
    if len(kept) == len(rows):
        return
    text = io.StringIO()
    csv.writer(text).writerows(kept)
    write_text_atomic(path, text.getvalue())
