"""Readers and writers for the file formats stereo datasets ship.

Every reader returns NumPy arrays in one convention (images H×W×3 float32 in [0, 1], disparity H×W
float32 in pixels, unknown = non-finite or 0) and turns any malformed file into a
:class:`~stereodistill.errors.DataError` that names the file and the problem.
"""

from __future__ import annotations

import contextlib
import os
import re
import tokenize
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stereodistill.errors import DataError
from stereodistill.fileio import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
DISPARITY_SUFFIXES = (".pfm", ".npy", ".png")
KITTI_SCALE = 256.0

_PFM_MAGIC = {b"PF": 3, b"Pf": 1}


def broken_link(path: Path) -> str | None:
    """What is wrong with ``path`` when it is a link that reaches no file; else ``None``."""
    if not path.is_symlink() or path.exists():
        return None
    # A relative target counts from the link's real folder (which may itself be reached by a link),
    # and the target's own folders are followed as the system would (``d/../y.png`` through a linked d).
    raw = os.path.join(os.path.realpath(path.parent), os.readlink(path))
    target = Path(os.path.realpath(os.path.dirname(raw))) / os.path.basename(raw)
    if os.path.lexists(target):
        return f"a link that reaches no file (its target {target} is a link in a loop or a broken chain)"
    return f"a broken link (its target {target} does not exist)"


def _require_file(path: Path) -> None:
    if not path.exists():
        raise DataError(path, broken_link(path) or "file does not exist")
    if not path.is_file():
        raise DataError(path, "is not a regular file")


# --------------------------------------------------------------------------------------------- PFM
#: A PFM header: magic, width, height, scale, each followed by whitespace; the pixel data starts after
#: the single whitespace character that ends the scale.
_PFM_HEADER = re.compile(rb"(P[Ff])\s+(\S+)\s+(\S+)\s+(\S+)\s")


def _pfm_layout(path: Path, head: bytes, size: int) -> tuple[int, int, int, float, int]:
    """(height, width, channels, scale, offset of the pixel data) of a PFM whose first bytes are
    ``head`` and whose length is ``size``: its header checked, and its length against it (a file cut
    short is named from its header and size alone, nothing decoded)."""
    match = _PFM_HEADER.match(head[:256])
    if match is None:
        raise DataError(path, "not a PFM file (expected a 'PF' or 'Pf' header with width, height and scale)")
    magic, w_txt, h_txt, scale_txt = match.groups()
    channels = _PFM_MAGIC[magic]
    try:
        width, height, scale = int(w_txt), int(h_txt), float(scale_txt)
    except ValueError:
        raise DataError(path, f"malformed PFM header: size {w_txt!r}x{h_txt!r}, scale {scale_txt!r}") from None
    if width <= 0 or height <= 0:
        raise DataError(path, f"malformed PFM header: size {height}x{width} (HxW)")
    if scale == 0 or not np.isfinite(scale):
        raise DataError(path, f"malformed PFM header: scale {scale_txt.decode(errors='replace')} (must be non-zero)")
    start, expected = match.end(), width * height * channels * 4
    extra = size - start - expected
    if 0 < extra <= 8 and not head[start : start + extra].strip():  # a header line ended by "\r\n" or spaces
        start += extra
    if size - start != expected:
        raise DataError(
            path,
            f"PFM data has {size - start} bytes, expected {expected} for {height}x{width}x{channels} (HxWxC) float32"
            + (" (file truncated)" if size - start < expected else ""),
        )
    return height, width, channels, scale, start


def read_pfm(path: str | Path) -> np.ndarray:
    """Read a PFM file: ``Pf`` gives H×W, ``PF`` gives H×W×3; rows are stored bottom-up.

    The sign of the scale gives the byte order (negative = little-endian); its magnitude is ignored,
    as every stereo dataset writes 1.0. Header lines ended by "\r\n" or with trailing spaces are read as
    line-based readers read them, when the data's length leaves no doubt.
    """
    path = Path(path)
    _require_file(path)
    data = path.read_bytes()
    height, width, channels, scale, start = _pfm_layout(path, data[:272], len(data))
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    array = np.frombuffer(data[start:], dtype=dtype).reshape(height, width, channels)
    array = np.flipud(array).astype(np.float32)
    return array[..., 0].copy() if channels == 1 else array.copy()


def write_pfm(path: str | Path, array: np.ndarray, *, little_endian: bool = True) -> None:
    """Write an H×W (``Pf``) or H×W×3 (``PF``) array as PFM, atomically."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        magic = b"Pf"
    elif array.ndim == 3 and array.shape[2] == 3:
        magic = b"PF"
    else:
        raise ValueError(f"PFM holds H×W or H×W×3 arrays, got shape {array.shape}")
    height, width = array.shape[:2]
    dtype = "<f4" if little_endian else ">f4"
    scale = b"-1.0" if little_endian else b"1.0"
    header = magic + b"\n" + f"{width} {height}".encode() + b"\n" + scale + b"\n"
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + np.flipud(array).astype(dtype).tobytes())


# ---------------------------------------------------------------------------------- KITTI PNG
#: What Pillow raises for a file that is not an image it can read, or whose header is corrupt: a size
#: beyond its decompression-bomb limit is an error it raises itself, not an OSError.
IMAGE_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError)
#: What ``np.load`` raises for a corrupt header: it parses the header's dict with ``ast``/``tokenize``.
NPY_ERRORS = (OSError, EOFError, ValueError, SyntaxError, tokenize.TokenError)


@contextlib.contextmanager
def _pillow_warnings_named(path: Path) -> Iterator[None]:
    """Re-issue Pillow's warning for an image between its two decompression-bomb sizes (about 90 to
    180 Mpx) with the file's name: Pillow's own message says how many pixels, not which file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, Image.DecompressionBombWarning):
            message = f"{path}: a very large image, read anyway (Pillow: {warning.message})"
            warnings.warn(message, Image.DecompressionBombWarning, stacklevel=3)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


FLOAT_VIEW = "floating-point images are not supported as stereo views"
#: The EXIF tag that says how a camera held its sensor, and its values that turn the picture by 90°.
EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)


def _open_image(path: Path) -> Image.Image:
    _require_file(path)
    try:
        with _pillow_warnings_named(path):
            image = Image.open(path)
            image.load()
    except IMAGE_ERRORS as exc:
        raise DataError(path, f"not a readable image ({exc})") from None
    return image


def image_size(path: str | Path, view: bool = False) -> tuple[int, int]:
    """(height, width) of an image from its header, without decoding it (a cheap check of a whole
    folder before any work). ``view``: it is a stereo view, read upright (EXIF orientation) as
    :func:`read_image` reads it, and a kind it refuses is refused now, not when the pair is read."""
    path = Path(path)
    _require_file(path)
    try:
        with _pillow_warnings_named(path), Image.open(path) as image:
            width, height = image.size
            turned = view and _orientation(image) in QUARTER_TURNS
            mode = image.mode
    except IMAGE_ERRORS as exc:
        raise DataError(path, f"not a readable image ({exc})") from None
    if view and mode == "F":
        raise DataError(path, FLOAT_VIEW)
    return (width, height) if turned else (height, width)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1: as stored). A PNG's EXIF is read only where its header already holds
    it: Pillow would decode the whole image to look for a chunk after the pixels."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    return int(image.getexif().get(EXIF_ORIENTATION, 1))


def read_png_disparity(path: str | Path, scale: float = KITTI_SCALE) -> np.ndarray:
    """Read a 16-bit PNG disparity (KITTI: value / 256; 0 = no ground truth, returned as 0)."""
    path = Path(path)
    image = _open_image(path)
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise DataError(path, f"disparity PNG must be 16-bit single-channel, got mode {image.mode}")
    raw = np.asarray(image)
    if raw.ndim != 2:
        raise DataError(path, f"disparity PNG must be single-channel, got shape {raw.shape}")
    return (raw.astype(np.float32) / np.float32(scale)).astype(np.float32)


def beyond_png_range(disp: np.ndarray, scale: float = KITTI_SCALE) -> np.ndarray:
    """Where a 16-bit PNG at ``scale`` cannot hold ``disp`` (at KITTI's ×256: 256 px and more)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.isfinite(disp) & (np.round(np.asarray(disp, dtype=np.float64) * scale) > 65535)


def write_png_disparity(path: str | Path, disp: np.ndarray, scale: float = KITTI_SCALE) -> None:
    """Write disparity as 16-bit PNG (value × scale, rounded); unknown or ≤ 0 becomes 0."""
    disp = np.asarray(disp, dtype=np.float64)
    good = np.isfinite(disp) & (disp > 0)
    scaled = np.where(good, np.round(np.where(good, disp, 0) * scale), 0)
    if good.any() and scaled[good].max() > 65535:
        raise ValueError(f"disparity {disp[good].max():.1f} does not fit a 16-bit PNG at scale {scale}")
    # Tiny positive values must not round to 0 and turn into "no ground truth".
    values = np.where(good, np.clip(scaled, 1, 65535), 0).astype(np.uint16)
    with atomic_path(path) as tmp:
        Image.fromarray(values).save(tmp, format="PNG")


# ------------------------------------------------------------------------------------- images
def read_image(path: str | Path) -> np.ndarray:
    """Read an image as H×W×3 float32 in [0, 1].

    8- and 16-bit PNG, JPEG and the other formats Pillow reads; grayscale is repeated to 3 channels,
    alpha is dropped, palettes are expanded. Pillow reads 16-bit *colour* PNGs at 8-bit precision.
    """
    path = Path(path)
    image = _open_image(path)
    # As a viewer shows it: a camera held on its side stores its pixels turned and says so in EXIF;
    # matched as stored, the epipolar lines would run down the columns.
    if _orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(image).astype(np.float32)
        if mode == "I" and gray.max(initial=0) > 65535:
            raise DataError(path, "32-bit integer images are not supported")
        gray /= 65535.0
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        raise DataError(path, FLOAT_VIEW)
    if mode in ("1", "L", "LA"):
        gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        return np.repeat(gray[..., None], 3, axis=2)
    if mode not in ("RGB",):
        image = image.convert("RGB")  # RGBA, P, CMYK, YCbCr, ...: alpha dropped, palette expanded
    return np.asarray(image, dtype=np.float32) / 255.0


def write_image(path: str | Path, image: np.ndarray, *, compress_level: int = 6) -> None:
    """Write an H×W×3 float image in [0, 1] as 8-bit (PNG/JPEG by suffix), atomically.

    ``compress_level`` (PNG only, 0–9): 1 writes about 4× faster than the default 6 for ~20 % more bytes.
    """
    array = np.clip(np.asarray(image, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        options = {"compress_level": compress_level} if Path(path).suffix.lower() == ".png" else {}
        Image.fromarray(array).save(tmp, **options)


def read_mask(path: str | Path) -> np.ndarray:
    """Read an evaluation mask: True where the pixel is evaluated.

    Middlebury/ETH3D convention: 255 = evaluated (non-occluded), 128 = occluded, 0 = unknown (in a
    16-bit PNG, the same values × 257 or × 256, or as they are). A mask whose values are only 0 and 1 (a
    binary PNG or a bool ``.npy``) marks evaluated pixels with 1.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        array = _load_npy(path)
        if array.ndim != 2:
            raise DataError(path, f"mask must be 2-D, got shape {array.shape}")
        return array.astype(bool) if array.max(initial=0) <= 1 else array >= 255
    image = _open_image(path)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # convert("L") would saturate 128 × 257 to 255
        array = np.asarray(image)
        if array.max(initial=0) > 255:  # the 8-bit values scaled to 16 bits (× 257 or × 256): the high byte
            return (array.astype(np.int64) >> 8) == 255
    else:
        array = np.asarray(image.convert("L") if image.mode not in ("1", "L") else image)
    if array.dtype == bool or array.max(initial=0) <= 1:
        return array.astype(bool)
    return array == 255


# ---------------------------------------------------------------------------------- npy & dispatch
def _load_npy(path: Path) -> np.ndarray:
    _require_file(path)
    try:
        # Mapped first, so that a header claiming more data than the file holds is an error, not an
        # attempt to allocate it; then copied into memory.
        return np.array(np.load(path, mmap_mode="r", allow_pickle=False))
    except ValueError as exc:  # pickled object arrays are refused, never executed
        raise DataError(path, f"not a plain .npy array ({exc})") from None
    except NPY_ERRORS as exc:
        raise DataError(path, f"not a readable .npy file ({exc})") from None


def _plane_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An array shape with the single-plane axis of 1×H×W or H×W×1 dropped: H×W (else unchanged)."""
    if len(shape) == 3 and shape[0] == 1:
        return shape[1:]
    if len(shape) == 3 and shape[2] == 1:
        return shape[:2]
    return shape


def read_npy_disparity(path: str | Path) -> np.ndarray:
    """Read an H×W (or 1×H×W / H×W×1) numeric ``.npy`` disparity as float32."""
    path = Path(path)
    array = _load_npy(path)
    array = array.reshape(_plane_shape(array.shape))
    if array.ndim != 2:
        raise DataError(path, f"disparity must be 2-D (H×W), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise DataError(path, f"disparity must be numeric, got dtype {array.dtype}")
    return array.astype(np.float32)


def disparity_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of a disparity map from its header (PFM, PNG) or its array header (NPY)."""
    path = Path(path)
    _require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        return image_size(path)
    if suffix == ".pfm":  # its header, and its length against it: a file cut short is named here
        with path.open("rb") as file:
            head = file.read(272)
        return _pfm_layout(path, head, path.stat().st_size)[:2]
    try:
        if suffix == ".npy":
            shape = _plane_shape(np.load(path, mmap_mode="r", allow_pickle=False).shape)
            if len(shape) != 2:
                raise ValueError(f"disparity must be 2-D (H×W), got shape {shape}")
            return int(shape[0]), int(shape[1])
    except (*NPY_ERRORS, IndexError) as exc:
        raise DataError(path, f"not a readable disparity map ({exc})") from None
    raise DataError(path, f"unknown disparity format {suffix!r} (expected one of {', '.join(DISPARITY_SUFFIXES)})")


def read_disparity(path: str | Path, png_scale: float = KITTI_SCALE) -> np.ndarray:
    """Read a disparity map by suffix: ``.pfm``, ``.npy`` or 16-bit ``.png`` (value / ``png_scale``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pfm":
        disp = read_pfm(path)
        return disp[..., 0].copy() if disp.ndim == 3 else disp
    if suffix == ".npy":
        return read_npy_disparity(path)
    if suffix == ".png":
        return read_png_disparity(path, png_scale)
    raise DataError(path, f"unknown disparity format {suffix!r} (expected one of {', '.join(DISPARITY_SUFFIXES)})")
