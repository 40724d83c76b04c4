"""Atomic file writes: a reader never sees a half-written output as if it were complete; and the
records this tool writes beside its outputs, read back with one clear error when one is damaged."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: What a write that names no file can only mean about the file being written (a read of an input
#: inside the block can fail with EACCES too, and is left as it is; EIO, either's, is named neutrally).
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    if path.is_dir():  # refused before the work, and named: the rename would fail naming the temp file
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file to write", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as exc:  # named by the file asked for, not by the hidden temporary one
        raise _unwritable(exc, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        # mkstemp makes 0600, and writers that recreate the file (safetensors) keep that: the output gets
        # the usual permissions once written.
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except OSError as exc:  # a full disk, a quota, a folder that refuses the rename: named by the file asked for
        if exc.filename is None and exc.errno == errno.EIO:  # the output's disk, or an input's: named, not blamed
            raise OSError(
                exc.errno, "an input/output error while it was written (its disk's, or an input's)", str(path)
            ) from None
        about_output = exc.filename in (str(tmp_path), tmp) or (exc.filename is None and exc.errno in _WRITE_ERRNOS)
        if exc.errno is None or not about_output:
            raise  # another kind of failure (an encoder's, a library's, an input's), or about another file: as it is
        raise _unwritable(exc, path) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def check_writable(path: str | Path) -> None:
    """Raise the OSError that writing ``path`` would meet (a folder that refuses new files, or a file
    where its folder should be) before the work whose result it is to hold, not after. Nothing is
    left behind: folders that do not exist yet are not created, their nearest existing one is tried."""
    path = Path(path).absolute()
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:  # a dangling link is a file in the way
        folder = folder.parent
    if not folder.is_dir():
        what = "a broken link" if folder.is_symlink() and not folder.exists() else "a file, not a folder"
        raise NotADirectoryError(errno.ENOTDIR, f"cannot be written ({folder} is {what})", str(path))
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise _unwritable(exc, path) from None
    os.close(fd)
    os.unlink(probe)


def _unwritable(exc: OSError, path: Path) -> OSError:
    """``exc`` told of ``path``, the file asked for, not of a temporary or probe file beside it (the
    errno picks the subclass: PermissionError, FileNotFoundError, …)."""
    return OSError(exc.errno, f"cannot be written ({exc.strerror})", str(path))


def file_stamp(path: str | Path) -> str:
    """A file's identity for caches and records: its real path, size and modification time (a file
    rewritten in place gets a new stamp)."""
    path = Path(path)
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def _finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def nan_for_null(value: Any) -> Any:
    """Numbers read back from strict JSON: every ``null`` in ``value`` (a mapping or list of numbers,
    such as a metrics table) becomes NaN again, the non-finite value :func:`write_json` wrote as null."""
    if value is None:
        return math.nan
    if isinstance(value, dict):
        return {key: nan_for_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [nan_for_null(item) for item in value]
    return value


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> None:
    """Write ``data`` as strict JSON (atomically): NaN and infinities, which JSON cannot hold and
    most parsers reject, become ``null``."""
    text = json.dumps(_finite_or_none(data), indent=2, sort_keys=sort_keys, allow_nan=False)
    write_text_atomic(path, text + "\n")


def parse_problem(exc: Exception, *, located: bool) -> str:
    """A parser's error (YAML's, JSON's) on one line: its problem and, in a file (``located``), where
    it lies; not YAML's several lines that quote the text."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is not None and problem:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if located else problem
    return " ".join(str(exc).split())


def read_record(path: str | Path, remedy: str, holds: type = dict) -> Any:
    """A JSON or YAML (``.yaml``) mapping (or what ``holds`` names) that this tool wrote beside an
    output (a run's config, an output folder's record of its inputs), read back. One that was cut
    short, edited or replaced is a DataError naming it and ``remedy`` (what the user can do: delete
    it, ``--force``, …), not a traceback from the parser or from the first key looked up in a list."""
    import yaml

    from stereodistill.errors import DataError

    path = Path(path)
    is_yaml = path.suffix in (".yaml", ".yml")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if is_yaml else json.loads(text)
    except UnicodeDecodeError as exc:
        raise DataError(path, f"is damaged: not UTF-8 text ({exc.reason} at byte {exc.start}); {remedy}") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror or exc}); {remedy}") from None
    except (ValueError, yaml.YAMLError) as exc:
        problem = parse_problem(exc, located=True)
        raise DataError(path, f"is damaged: not valid {'YAML' if is_yaml else 'JSON'} ({problem}); {remedy}") from None
    if not isinstance(data, holds):
        held = "nothing" if data is None else f"a {type(data).__name__}"
        wanted = "a mapping" if holds is dict else f"a {holds.__name__}"
        raise DataError(path, f"is damaged: it holds {held}, not {wanted}; {remedy}")
    return data
