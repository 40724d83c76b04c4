"""Training data: datasets from config, augmentation, and a sampler whose order is a pure function of
(seed, epoch), so that a resumed run sees exactly the batches the interrupted one would have seen,
and a distributed run splits each global batch across processes.

The sampler yields ``epoch · N + i`` for sample i, and :class:`SeededAugment` draws each sample's
random crop and jitter from a generator seeded by that key: augmentation depends neither on the
number of loader workers nor on where a run was resumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from stereodistill.data.datasets import build_dataset
from stereodistill.data.motorcycle import NAME as MOTORCYCLE
from stereodistill.data.motorcycle import MotorcycleStereo
from stereodistill.data.sample import valid_mask
from stereodistill.data.synthetic import SynthConfig, SyntheticStereo
from stereodistill.data.transforms import ColorJitter, Compose, RandomCrop, VerticalFlip
from stereodistill.errors import ConfigError, DataError
from stereodistill.train.config import IN_MEMORY, DataConfig, DatasetConfig


def build(config: DatasetConfig, transform: Any = None, max_disp: float | None = None) -> Dataset:
    """The dataset a config names; ``synthetic`` is generated in memory, and ``middlebury-motorcycle``
    is read from scikit-image's wheel. ``max_disp``: a run's model's range, where ground truth stops
    being valid when the config gives no ``max_disp`` (so nothing the network cannot predict is
    trained on or scored); synthetic scenes are still drawn up to their own default range."""
    if config.dataset != "synthetic" and config.max_disp is None and max_disp is not None:
        config = dataclasses.replace(config, max_disp=max_disp)
    if config.split is None:  # a set to score (a run's sets have theirs from DataConfig)
        config = dataclasses.replace(config, split=config.evaluation_split)
    if config.dataset not in IN_MEMORY:
        dataset = build_dataset(
            config.dataset,
            config.root,
            split=config.split,
            list_file=config.list_file,
            max_disp=config.max_disp,
            transform=transform,
            **config.options,
        )
        dataset.warn_unlisted(config.list_file)
        return dataset
    dataset = _in_memory(config, max_disp)
    return _Transformed(dataset, transform) if transform is not None else dataset


def same_pairs(a: DatasetConfig, b: DatasetConfig) -> bool:
    """Whether two dataset configs read the same pairs (a ground-truth range aside): the same files,
    or synthetic pairs drawn from the same seed and split, which share their first pairs."""
    if a.dataset != b.dataset or a.options != b.options:
        return False
    if a.dataset == "synthetic":
        return (a.split, a.seed) == (b.split, b.seed)
    return (a.root, a.split, a.list_file) == (b.root, b.split, b.list_file)


def check_before_training(dataset: Dataset, what: str, *, truth: bool, headers: bool, limit: int | None = None) -> None:
    """Refuse, before any step, a set of pairs the run cannot use: none with ground truth where the run
    reads it (``truth``), and with ``headers`` views, ground truth or masks of different sizes (from
    the image headers, nothing decoded). A validation set is read only after the training it follows:
    a bad one found then would cost the whole run. Pairs generated in memory are always fit."""
    files = getattr(dataset, "files", None)
    if files is None:
        return
    files = files[:limit]
    root = getattr(dataset, "root", None)
    if truth and not any(f.disp is not None for f in files):
        if what == "data.val":
            use = "validation scores against it: give pairs with ground truth, or data.val: null"
        elif what.startswith("eval."):
            use = f"every cell is scored against it: give pairs with ground truth, or leave {what} out"
        else:
            use = (
                "the supervised loss reads it: add a disp column (`stereodistill data pairs ... --disp DIR`), "
                "or give the pairs as data.unlabeled to learn from a teacher alone"
            )
        count = f"{len(files)} pair{'s' * (len(files) != 1)}"
        raise DataError(root, f"none of the {count} of {what} has ground truth; {use}")
    if headers:
        from stereodistill.data.pairing import check_rows

        rows = [(f.left, f.right, f.disp) for f in files]
        _, problems = check_rows(rows, {(f.left, f.right): f.mask for f in files})
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            found = "; ".join(problems[:3])
            raise DataError(
                root,
                f"{what}: {len(problems)} bad pair(s), found before training: {found}{more}; mend or unlist them "
                "(`stereodistill data check` lists them all)",
            )


def check_scorable(dataset: Dataset, what: str, limit: int | None = None) -> None:
    """Refuse, before any step, a validation set with no ground-truth pixel below its range (all of
    it beyond, occluded, or unknown): it would score nothing, and say so only after the training.
    Ground truth alone is read, until the first pair with a pixel to score (at once, in a sound set)."""
    files, read_disp = getattr(dataset, "files", None), getattr(dataset, "read_disp", None)
    if files is None or read_disp is None:  # pairs made in memory: always scorable
        return
    max_disp = getattr(dataset, "max_disp", None)
    for pair in files[:limit]:
        disp = read_disp(pair)
        if disp is not None and valid_mask(disp, max_disp, dataset.read_nonoccluded(pair)).any():
            return
    below = f" below {max_disp:g} px" if max_disp is not None else ""
    raise DataError(
        getattr(dataset, "root", None),
        f"{what}: no pair has a valid ground-truth pixel{below}, so validation would score nothing; "
        "check its max_disp, its split and its occlusion masks",
    )


def _in_memory(config: DatasetConfig, valid_below: float | None = None) -> Dataset:
    if config.dataset == MOTORCYCLE:
        try:
            return MotorcycleStereo(config.max_disp, **config.options)
        except TypeError as exc:
            raise ConfigError(f"dataset {MOTORCYCLE}: its only option is 'reduce' ({exc})") from None
    height, width = config.size
    max_disp = int(config.max_disp) if config.max_disp is not None else 48
    synth = SynthConfig(height=height, width=width, max_disp=max_disp, **config.options)
    offset = 0 if config.split == "train" else 1_000_003  # test pairs never repeat train pairs
    valid = max_disp if config.max_disp is not None or valid_below is None else min(max_disp, valid_below)
    return SyntheticStereo(config.pairs, synth, seed=config.seed + offset, max_disp=valid)


class _Transformed(Dataset):
    def __init__(self, dataset: Dataset, transform: Any) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.transform(self.dataset[index])


class ViewsOnly(Dataset):
    """A reader's pairs without their ground truth, which ``data.unlabeled`` ignores: none of it is
    read, so a broken or missing disparity file does not stop the run (pairs made in memory come
    whole; their ground truth goes unused)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.root = getattr(dataset, "root", None)
        files = getattr(dataset, "files", None)
        if files is not None:  # what check_before_training reads: the views alone
            self.files = [dataclasses.replace(f, disp=None, mask=None) for f in files]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        load_views = getattr(self.dataset, "load_views", None)
        return load_views(index) if load_views is not None else self.dataset[index]


class SeededAugment(Dataset):
    """Key ``epoch · N + i`` → sample i, augmented with randomness seeded by (seed, key)."""

    def __init__(self, dataset: Dataset, transform: Any, seed: int) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> dict[str, Any]:
        sample = self.dataset[key % len(self.dataset)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + key)
            return self.transform(sample)


def train_transform(config: DataConfig, symmetric: bool = False, crop: bool = True) -> Compose:
    """Crop, colour jitter and flips as the config says; ``symmetric``: both views always get the same
    colour jitter (a photometric loss compares them); ``crop=False``: the whole pairs."""
    steps: list[Any] = [RandomCrop(*config.crop)] if crop else []
    if config.color_jitter:
        steps.append(ColorJitter(asymmetric_p=0.0) if symmetric else ColorJitter())
    if config.vertical_flip > 0:
        steps.append(VerticalFlip(config.vertical_flip))
    return Compose(steps)


class EpochSampler(Sampler[int]):
    """Indices of epoch e: a permutation seeded by (seed, e); this rank takes its share of each
    global batch. ``start`` skips the first batches of the epoch (resume mid-epoch)."""

    def __init__(
        self, size: int, global_batch: int, seed: int, rank: int = 0, world: int = 1, what: str = "the training set"
    ) -> None:
        """``what``: the data, as an error about its size names it (``data.train``, ``data.unlabeled (FILE)``)."""
        if global_batch % world:
            raise ConfigError(f"batch_size {global_batch} does not split across {world} processes")
        if size < global_batch:
            raise ConfigError(f"{what} has {size} samples, fewer than one batch of {global_batch} (data.batch_size)")
        self.size = size
        self.global_batch = global_batch
        self.seed = seed
        self.rank = rank
        self.world = world
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.global_batch  # drop the last, partial batch

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        per_rank = self.global_batch // self.world
        offset = self.epoch * self.size
        for b in range(self.start_batch, self.batches_per_epoch):
            batch = order[b * self.global_batch : (b + 1) * self.global_batch]
            yield from (offset + i for i in batch[self.rank * per_rank : (self.rank + 1) * per_rank])

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * (self.global_batch // self.world)


class BatchStream:
    """Endless batches of a loader over an :class:`EpochSampler`, positioned by how many were drawn:
    a resumed run continues each stream exactly where it stopped. ``on_epoch_end`` runs when an
    epoch is used up."""

    def __init__(self, loader: DataLoader, sampler: EpochSampler, on_epoch_end: Any = None) -> None:
        self.loader = loader
        self.sampler = sampler
        self.on_epoch_end = on_epoch_end
        self.epoch = 0
        self._batches: Iterator[dict[str, Any]] | None = None
        self._epoch_ended = False  # an epoch used up whose end is still to be run

    def seek(self, drawn: int) -> None:
        """Continue after the first ``drawn`` batches. At an epoch's last batch, its end is still to
        run, before the next batch is drawn, as it runs in a run that was never stopped (DWA's
        weights are updated there)."""
        self.epoch, start = divmod(drawn, self.sampler.batches_per_epoch)
        self.sampler.set_position(self.epoch, start)
        self._batches = None
        self._epoch_ended = drawn > 0 and start == 0

    def next(self) -> dict[str, Any]:
        if self._epoch_ended:
            self._epoch_ended = False
            if self.on_epoch_end is not None:
                self.on_epoch_end()
        if self._batches is None:
            self._batches = iter(self.loader)
        try:
            return next(self._batches)
        except StopIteration:
            self.epoch += 1
            self.sampler.set_position(self.epoch, 0)
            if self.on_epoch_end is not None:
                self.on_epoch_end()
            self._batches = iter(self.loader)
            return next(self._batches)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep ``meta`` as a list of dicts (readers' meta keys may differ)."""
    batch: dict[str, Any] = {"meta": [s.get("meta", {}) for s in samples]}
    for key in ("left", "right", "disp", "valid"):
        batch[key] = torch.stack([s[key] for s in samples])
    return batch


def _seed_worker(worker_id: int) -> None:
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def train_loader(dataset: Dataset, sampler: EpochSampler, workers: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=sampler.global_batch // sampler.world,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=_seed_worker,
        generator=generator,
        persistent_workers=False,
        drop_last=True,
    )
