"""Stereo video: frames read one at a time from two files (left, right) or from one side-by-side file,
and a video written frame by frame, through imageio's FFmpeg plugin (the optional ``video`` extra:
``pip install 'stereodistill[video]'``, which brings its own FFmpeg binary)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stereodistill.errors import DataError, InputError
from stereodistill.fileio import atomic_path

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _imageio() -> Any:
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the FFmpeg binary imageio needs)
    except ImportError:
        raise InputError("video needs the optional extra: pip install 'stereodistill[video]'") from None
    return imageio


def _frames(path: Path) -> tuple[Iterator[np.ndarray], float, int | None]:
    """The frames of one file (H×W×3 uint8, lazily), its frame rate, and how many frames its header
    announces (None where it does not say, or says only a duration that a sound track may set)."""
    if not path.is_file():
        raise DataError(path, "video file does not exist")
    try:
        reader = _imageio().get_reader(str(path), format="FFMPEG")
        meta = reader.get_meta_data()
        fps = float(meta.get("fps") or 25.0)
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataError(path, f"not a readable video ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    count, duration = meta.get("nframes"), meta.get("duration")
    if meta.get("audio_codec"):  # the file's duration is its longest track's, perhaps the sound's
        duration = None
    if not (isinstance(count, (int, float)) and math.isfinite(count)):
        count = duration * fps if isinstance(duration, (int, float)) and math.isfinite(duration) else None
    return iter(reader), fps, None if count is None else round(count)


@dataclass
class FrameStream:
    """The (left, right) frames of a stereo video, one pair at a time (``pairs``), its frame rate,
    the frame count each file's header announces (None where it does not say), and, once ``pairs``
    is exhausted, the file whose frames ran out first."""

    pairs: Iterator[tuple[np.ndarray, np.ndarray]]
    fps: float
    announced: dict[Path, int | None]
    ended: Path | None = None

    def warnings(self, made: int) -> list[str]:
        """Warnings for a stream that ended before its headers said it would: two videos of different
        lengths, or the file that ran out cut short (its outputs then hold the frames before the cut).
        A header's count may come from its duration (never in a file with sound: its duration may be
        the sound's), which a variable frame rate stretches: 5 % and one frame of slack keep that quiet."""
        known = {path: count for path, count in self.announced.items() if count is not None}
        if len(known) == 2 and min(known.values()) < 0.95 * max(known.values()) - 1:
            lengths = " and ".join(f"{path}: {count}" for path, count in known.items())
            return [f"warning: the two videos announce different lengths ({lengths} frames); {made} pairs were made"]
        count = known.get(self.ended) if self.ended is not None else None
        if count is not None and made < 0.95 * count - 1:
            return [f"warning: {self.ended}: read {made} of the {count} frames its header announces (cut short?)"]
        return []


def stereo_frames(left: str | Path, right: str | Path | None = None) -> FrameStream:
    """(left, right) frames as H×W×3 float32 in [0, 1]: from two files, or (``right`` None) one
    side-by-side file whose left half is the left view. The two files must have the same size; a
    file that ends first ends the stream."""
    left = Path(left)
    left_frames, fps, announced = _frames(left)
    counts = {left: announced}
    right_frames = None
    if right is not None:
        right = Path(right)
        right_frames, _, counts[right] = _frames(right)

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for index, frame in enumerate(left_frames):
            if right_frames is None:
                if frame.shape[1] % 2:
                    raise DataError(left, f"a side-by-side frame must have an even width, got {frame.shape[1]}")
                half = frame.shape[1] // 2
                views = frame[:, :half], frame[:, half:]
            else:
                other = next(right_frames, None)
                if other is None:
                    stream.ended = right
                    return
                if other.shape != frame.shape:
                    raise DataError(
                        right,
                        f"frame {index} is {other.shape[0]}x{other.shape[1]} but the left video's is "
                        f"{frame.shape[0]}x{frame.shape[1]} (HxW)",
                    )
                views = frame, other
            yield tuple(np.asarray(v, dtype=np.float32)[..., :3] / 255.0 for v in views)
        stream.ended = left

    stream = FrameStream(pairs(), fps, counts)
    return stream


@contextmanager
def video_writer(path: str | Path, fps: float) -> Iterator[Any]:
    """A writer taking H×W×3 float frames in [0, 1]; the file appears only once complete."""
    imageio = _imageio()
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(str(tmp), format="FFMPEG", fps=fps, macro_block_size=2)

        class Frames:
            def append(self, frame: np.ndarray) -> None:
                # H.264 in 4:2:0 needs even sides: an odd one gets a copy of its last row or column here,
                # where the writer would resize the whole frame and warn about it
                height, width = frame.shape[:2]
                frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
                writer.append_data(np.clip(frame * 255.0 + 0.5, 0, 255).astype(np.uint8))

        try:
            yield Frames()
        finally:
            writer.close()
