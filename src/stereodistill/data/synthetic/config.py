"""What a synthetic scene may hold (:class:`SynthConfig`), what a rendered pair is, and the
constants of the on-disk layout."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from stereodistill.errors import ConfigError

FRAMES_PER_SCENE = 10
SPLIT_DIRS = {"train": "TRAIN", "test": "TEST"}
SPLIT_SEEDS = {"train": 0, "test": 1}
OCCLUSION_EPS = 0.01  # px: a layer occludes only when clearly closer (float32 rounding is ~1e-4 px)
BANK_PAD = 48  # px of extra noise canvas, so that layers read the shared noise at different offsets
TEXTURE_KINDS = ("noise", "stripes", "checkers", "gradient", "flat", "photo")


@dataclass
class SyntheticPair:
    """One rendered pair; ``disp[y, x]`` matches the right pixel ``x − disp[y, x]``."""

    left: np.ndarray  # H×W×3 float32 in [0, 1]
    right: np.ndarray  # H×W×3 float32 in [0, 1]
    disp: np.ndarray  # H×W float32, left-view disparity (positive)
    disp_right: np.ndarray  # H×W float32, right-view disparity: right x matches left x + disp_right
    occlusion: np.ndarray  # H×W bool, True where a left pixel is not visible in the right view


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator; every ground-truth disparity lies in ``[min_disp, max_disp)``."""

    height: int = 256
    width: int = 512
    max_disp: int = 64
    n_objects: int = 6
    photometric: bool = True
    min_disp: float = 1.0  # smallest disparity of the background (px)
    background_max_frac: float = 0.35  # background disparities stay below this share of max_disp
    max_slope: float = 0.25  # bound on |∂D/∂x| and |∂D/∂y| of every plane (must be < 1)
    low_texture_prob: float = 0.12  # chance that a layer is nearly uniform
    noise_std: float = 0.01  # largest per-view sensor noise (photometric only)
    photo_prob: float = 0.0  # chance that a textured layer wears a real photograph (scikit-image's images)
    thin_objects: int = 0  # extra thin bars (1.5–6 px wide) per scene: poles, rails, spokes
    camera_effects: bool = False  # per-view vignetting, defocus blur and JPEG (photometric only)
    ground_prob: float = 0.0  # chance of a ground plane: from a horizon down, nearer (up to max disparity) below
    curved_prob: float = 0.0  # chance that an object is a curved patch (dome, bowl or cylinder), not a plane

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ConfigError(f"synthetic size must be at least 8x8 (HxW), got {self.height}x{self.width}")
        if self.n_objects < 0:
            raise ConfigError(f"n_objects must be >= 0, got {self.n_objects}")
        if not 0 <= self.max_slope < 0.5:
            raise ConfigError(f"max_slope must be in [0, 0.5), got {self.max_slope}")
        if not 0 < self.background_max_frac < 1:
            raise ConfigError(f"background_max_frac must be in (0, 1), got {self.background_max_frac}")
        if self.min_disp <= 0 or self.background_max_frac * self.max_disp <= self.min_disp:
            raise ConfigError(
                f"max_disp {self.max_disp} is too small: the background needs disparities from "
                f"min_disp {self.min_disp} up to background_max_frac × max_disp "
                f"({self.background_max_frac} × {self.max_disp})"
            )
        if not 0 <= self.low_texture_prob <= 1:
            raise ConfigError(f"low_texture_prob must be in [0, 1], got {self.low_texture_prob}")
        if not 0 <= self.photo_prob <= 1:
            raise ConfigError(f"photo_prob must be in [0, 1], got {self.photo_prob}")
        if not 0 <= self.ground_prob <= 1:
            raise ConfigError(f"ground_prob must be in [0, 1], got {self.ground_prob}")
        if not 0 <= self.curved_prob <= 1:
            raise ConfigError(f"curved_prob must be in [0, 1], got {self.curved_prob}")
        if self.thin_objects < 0:
            raise ConfigError(f"thin_objects must be >= 0, got {self.thin_objects}")
        if self.noise_std < 0:
            raise ConfigError(f"noise_std must be >= 0, got {self.noise_std}")

    @property
    def canvas_width(self) -> int:
        """Width of the left-coordinate canvas the right view can see (``x = xr + d < W + max_disp``)."""
        return self.width + math.ceil(self.max_disp) + 2

    @property
    def disp_high(self) -> float:
        """Upper bound of generated disparities, strictly below ``max_disp``."""
        return self.max_disp - max(0.25, 0.02 * self.max_disp)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthConfig:
        """Rebuild a config from ``asdict`` output (as stored in ``synth.json``); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown SynthConfig fields: {', '.join(unknown)}")
        return cls(**data)


#: The default scene settings (frozen, so one shared instance is safe as a default argument).
DEFAULT_CONFIG = SynthConfig()
