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

#: Bytes of rendered pairs a :class:`SyntheticStereo` keeps (1 GiB: some 1,750 pairs at 96×192, 250 at
#: 256×512); beyond it a pair is rendered again at each read, which costs milliseconds. Keeping every
#: pair held 608 KB per pair at 96×192 without bound: 4.9 GB for an 8,000-pair training set, 35 GB for
#: as many at 256×512 (docs/benchmarks.md, "Synthetic pairs in memory").
CACHE_BYTES = 1 << 30


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


def pair_bytes(pair: SyntheticPair) -> int:
    """The memory a rendered pair's arrays hold."""
    return sum(array.nbytes for array in vars(pair).values())


class SyntheticStereo(torch.utils.data.Dataset):
    """In-memory dataset: sample i is ``generate_pair(config, (seed, i))`` as a sample dict.

    Pairs are rendered on first access and kept, up to ``cache_bytes`` of them (``cache=False`` keeps
    none); the rest are rendered again at each read. Each index has its own seed, so a sample does not
    depend on the order of access nor on whether it was kept.
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
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        if n_pairs < 0:
            raise ConfigError(f"n_pairs must be >= 0, got {n_pairs}")
        self.n_pairs = n_pairs
        self.config = config
        self.seed = seed
        self.max_disp = max_disp
        self.cache_bytes = cache_bytes if cache else 0  # cache=False: a budget that keeps nothing
        self._pairs: dict[int, SyntheticPair] = {}
        self._kept_bytes = 0

    def __len__(self) -> int:
        return self.n_pairs

    @property
    def kept_pairs(self) -> int:
        """How many rendered pairs are kept in memory."""
        return len(self._pairs)

    def pair(self, i: int) -> SyntheticPair:
        """The raw rendered pair of index ``i`` (negative indices count from the end)."""
        if not -self.n_pairs <= i < self.n_pairs:
            raise IndexError(f"index {i} out of range for {self.n_pairs} synthetic pairs")
        i %= self.n_pairs
        found = self._pairs.get(i)
        if found is None:
            found = generate_pair(self.config, (self.seed, i))
            size = pair_bytes(found)
            if self._kept_bytes + size <= self.cache_bytes:
                self._pairs[i] = found
                self._kept_bytes += size
        return found

    def __getitem__(self, i: int) -> dict[str, Any]:
        pair = self.pair(i)
        i %= self.n_pairs
        sample = make_sample(
            pair.left, pair.right, pair.disp, meta={"dataset": "synthetic", "id": f"{i:06d}"}, max_disp=self.max_disp
        )
        sample["occlusion"] = torch.from_numpy(pair.occlusion.copy())
        return sample
