"""The public API: one pair from a config and a seed, and a dataset serving pairs from memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from stereodistill.data.sample import make_sample
from stereodistill.data.synthetic.config import DEFAULT_CONFIG, SynthConfig, SyntheticPair
from stereodistill.data.synthetic.photometry import camera_effects, photometric
from stereodistill.data.synthetic.render import occlusion_mask, place, render_left, render_right
from stereodistill.data.synthetic.scene import sample_scene
from stereodistill.data.synthetic.textures import noise_bank, textures
from stereodistill.errors import ConfigError


def generate_pair(config: SynthConfig, seed: int | Sequence[int]) -> SyntheticPair:
    """Render one stereo pair; the same ``config`` and ``seed`` give bit-identical arrays."""
    rng = np.random.default_rng(seed)
    layers = sample_scene(rng, config)
    placed = place(layers, config)
    bank = noise_bank(rng, config)
    texels = textures(placed, bank)

    disp, tex_index = render_left(placed, config)
    disp_right, rowbase = render_right(placed, config)
    occlusion = occlusion_mask(placed, disp, config)

    left = np.take(texels, tex_index, axis=0)
    x_left = np.arange(config.width, dtype=np.float32)[None, :] + disp_right
    x_floor = np.floor(x_left)
    frac = (x_left - x_floor)[..., None]
    index = rowbase + x_floor.astype(np.int32)
    right = np.take(texels, index, axis=0)
    right += (np.take(texels, index + 1, axis=0) - right) * frac

    np.clip(left, 0.0, 1.0, out=left)
    np.clip(right, 0.0, 1.0, out=right)
    if config.photometric:
        for image in (left, right):
            np.clip(photometric(rng, image, config.noise_std), 0.0, 1.0, out=image)
            if config.camera_effects:
                np.clip(camera_effects(rng, image), 0.0, 1.0, out=image)
    return SyntheticPair(left=left, right=right, disp=disp, disp_right=disp_right, occlusion=occlusion)


class SyntheticStereo(torch.utils.data.Dataset):
    """In-memory dataset: sample i is ``generate_pair(config, (seed, i))`` as a sample dict.

    Pairs are rendered on first access and kept (``cache=False`` renders every time, to bound
    memory); each index has its own seed, so a sample does not depend on the order of access.
    The dict carries an extra ``occlusion`` key (bool H×W, True = not visible in the right view).
    """

    def __init__(
        self,
        n_pairs: int,
        config: SynthConfig = DEFAULT_CONFIG,
        seed: int = 0,
        max_disp: float | None = None,
        *,
        cache: bool = True,
    ) -> None:
        if n_pairs < 0:
            raise ConfigError(f"n_pairs must be >= 0, got {n_pairs}")
        self.n_pairs = n_pairs
        self.config = config
        self.seed = seed
        self.max_disp = max_disp
        self.cache = cache
        self._pairs: dict[int, SyntheticPair] = {}

    def __len__(self) -> int:
        return self.n_pairs

    def pair(self, i: int) -> SyntheticPair:
        """The raw rendered pair of index ``i`` (negative indices count from the end)."""
        if not -self.n_pairs <= i < self.n_pairs:
            raise IndexError(f"index {i} out of range for {self.n_pairs} synthetic pairs")
        i %= self.n_pairs
        found = self._pairs.get(i)
        if found is None:
            found = generate_pair(self.config, (self.seed, i))
            if self.cache:
                self._pairs[i] = found
        return found

    def __getitem__(self, i: int) -> dict[str, Any]:
        pair = self.pair(i)
        i %= self.n_pairs
        sample = make_sample(
            pair.left, pair.right, pair.disp, meta={"dataset": "synthetic", "id": f"{i:06d}"}, max_disp=self.max_disp
        )
        sample["occlusion"] = torch.from_numpy(pair.occlusion.copy())
        return sample
