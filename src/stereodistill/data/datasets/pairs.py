"""A user's own stereo pairs listed in a CSV file: ``left,right[,disp[,mask]]``.

Paths are relative to the CSV's folder (absolute paths are allowed), so a folder of pairs plus its
CSV can be moved as one. Ground truth may be PFM, ``.npy`` or 16-bit PNG (value / ``png_scale``);
an empty ``disp``/``mask`` cell means the pair has none.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from stereodistill.data.datasets.base import DATASETS, SampleFiles, StereoDataset
from stereodistill.data.formats import KITTI_SCALE, read_disparity
from stereodistill.errors import ConfigError, DataError

COLUMNS: tuple[str, ...] = ("left", "right", "disp", "mask")
REQUIRED: tuple[str, ...] = ("left", "right")


@DATASETS.register("pairs")
class Pairs(StereoDataset):
    """Pairs from a CSV file (``root``); ``split`` is ignored.

    Option ``png_scale`` (default 256, KITTI's) divides 16-bit PNG disparities. Ids are the data row's
    index (from 0, zero-padded) and the left image's stem, e.g. ``0003-im0``. A malformed CSV (bad
    header, wrong number of cells, empty left/right cell) is a DataError naming the file and line.
    """

    name = "pairs"
    layout = "a CSV file with header left,right[,disp[,mask]] and one pair per line, paths relative to the CSV"

    def __init__(self, root: str | Path, *, png_scale: float = KITTI_SCALE, **kwargs: Any) -> None:
        if not np.isfinite(png_scale) or png_scale <= 0:
            raise ConfigError(f"pairs png_scale must be a positive number, got {png_scale!r}")
        self.png_scale = float(png_scale)
        super().__init__(root, **kwargs)

    def read_disp(self, files: SampleFiles) -> np.ndarray | None:
        return None if files.disp is None else read_disparity(files.disp, self.png_scale)

    def discover(self) -> list[SampleFiles]:
        path = self.root
        if not path.is_file():
            raise DataError(path, "pairs root must be a CSV file with header left,right[,disp[,mask]]")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(path, f"not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise DataError(path, f"cannot read ({exc.strerror or exc})") from None
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header: list[str] | None = None
        rows: list[tuple[int, dict[str, str]]] = []
        try:
            for cells in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in cells):
                    continue  # blank line
                cells = [cell.strip() for cell in cells]
                if header is None:
                    header = self._check_header(cells, line)
                    continue
                if len(cells) != len(header):
                    raise DataError(
                        path,
                        f"line {line}: {len(cells)} cell{'s' * (len(cells) != 1)} but the header has "
                        f"{len(header)} ({','.join(header)})",
                    )
                rows.append((line, dict(zip(header, cells, strict=True))))
        except csv.Error as exc:
            raise DataError(path, f"line {reader.line_num}: malformed CSV ({exc})") from None
        if header is None:
            raise DataError(path, "empty CSV: expected a header line left,right[,disp[,mask]]")
        width = max(4, len(str(len(rows) - 1)))
        files = []
        for index, (line, row) in enumerate(rows):
            for column in REQUIRED:
                if not row[column]:
                    raise DataError(path, f"line {line}: empty {column!r} cell")
            left = self._resolve(row["left"])
            files.append(
                SampleFiles(
                    id=f"{index:0{width}d}-{left.stem}",
                    left=left,
                    right=self._resolve(row["right"]),
                    disp=self._resolve(row["disp"]) if row.get("disp") else None,
                    mask=self._resolve(row["mask"]) if row.get("mask") else None,
                    extra={"line": line},
                )
            )
        return files

    def _check_header(self, cells: list[str], line: int) -> list[str]:
        names = [cell.lower() for cell in cells]
        for name in names:
            if name not in COLUMNS:
                raise DataError(
                    self.root, f"line {line}: unknown column {name!r} in the header (allowed: {', '.join(COLUMNS)})"
                )
        duplicates = sorted({n for n in names if names.count(n) > 1})
        missing = [n for n in REQUIRED if n not in names]
        if duplicates or missing:
            problem = f"repeated column(s) {', '.join(duplicates)}" if duplicates else f"no {' or '.join(missing)}"
            raise DataError(self.root, f"line {line}: header has {problem}; expected left,right[,disp[,mask]]")
        return names

    def _resolve(self, cell: str) -> Path:
        path = Path(cell)
        # Relative to the CSV's real folder: a link to a list elsewhere reads the files the list names.
        return path if path.is_absolute() else self.root.resolve().parent / path
