"""The contract every network of the zoo follows (docs/design.md, "The model contract").

``forward(left, right, taps=())`` takes B×3×H×W images in [0, 1] of any size: the base class checks
them, normalises (normalisation belongs to the model, so training, ``infer`` and an exported graph
all take plain images), pads to the network's multiple, runs :meth:`StereoModel.predict` and crops
the predictions back exactly, and the taps to the cells that cover the image (so that two networks
padding to different multiples give taps of one shape). Taps are named intermediate tensors shared
across architectures; a network computes one only when it is asked for, and asking for one it does
not offer is an error that lists what it offers.

Any trainable network can end in a full-resolution cost refinement (the ``fine`` option,
:meth:`StereoModel.add_fine_refinement`), applied here after :meth:`~StereoModel.predict`, so that a
port stays the original network and the stage is one more module beside it.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from stereodistill.data.transforms import pad_to_multiple
from stereodistill.errors import ConfigError, InputError
from stereodistill.models.fine_refine import BLOCK_WINDOWS, MAX_RADIUS, FineRefinement
from stereodistill.models.output import StereoOutput, TapRecorder

#: Options every trainable network takes besides its constructor's: ``fine``, ``fine_block``,
#: ``fine_polish`` and ``fine_extremes`` (:meth:`StereoModel.add_fine_refinement`), handled by
#: :func:`~stereodistill.models.zoo.build_model`.
COMMON_OPTIONS = ("fine", "fine_block", "fine_polish", "fine_extremes")
#: Loss weight of a network's own output when a fine refinement follows it (the stage's gets the last).
FINE_INPUT_WEIGHT = 0.7

#: The 2-D feature taps every network of the zoo offers.
FEATURE_TAPS = ("feat.left.s2", "feat.right.s2", "feat.left.s4", "feat.right.s4")


def extract_both_views(
    extractor: nn.Module, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder, s2: str, s4: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Run a feature extractor on both views and record the shared feature taps from its outputs
    ``s2`` and ``s4`` (the names the extractor gives its 1/2 and 1/4 matching features)."""
    features_left, features_right = extractor(left), extractor(right)
    for side, features in (("left", features_left), ("right", features_right)):
        taps.record(f"feat.{side}.s2", features[s2])
        taps.record(f"feat.{side}.s4", features[s4])
    return features_left, features_right


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: Twice the largest disparity of any benchmark at full resolution (Middlebury 2014's ~800 px):
#: a range far beyond it is a typo, and would ask the allocator for terabytes.
MAX_DISP_LIMIT = 2048


class StereoModel(nn.Module):
    """Base class: subclasses implement :meth:`predict` and :meth:`offered_taps`."""

    arch: ClassVar[str] = ""
    pad_multiple: ClassVar[int] = 32
    #: Weights of the supervised loss over ``StereoOutput.predictions`` (aux heads first, final last).
    loss_weights: ClassVar[tuple[float, ...]] = (1.0,)
    #: What ``volume.cost`` holds: ``"correlation"`` (group-wise or plain: adapters may pool its
    #: groups) or ``"concatenation"`` (both views' features stacked); ``None`` where not declared.
    cost_volume_kind: ClassVar[str | None] = None
    #: Parameters as the original release's code counts them (unused layers included); ``None`` for
    #: this project's own networks. ``models`` lists it beside the parameters the forward pass uses.
    release_params: ClassVar[int | None] = None
    #: Tensors of a release's checkpoint that belong to modules its forward pass never calls (exact
    #: keys, and key prefixes): ours does not create them, and importing drops them, by name.
    unused_release_keys: ClassVar[Collection[str]] = ()
    unused_release_prefixes: ClassVar[tuple[str, ...]] = ()
    #: False for a classical method (``sgbm``): evaluated and benchmarked like a network, never trained.
    trainable: ClassVar[bool] = True

    def __init__(self, max_disp: int = 192, **config: Any) -> None:
        super().__init__()
        if max_disp < 4 or max_disp % 4:
            raise ConfigError(f"{self.arch}: max_disp must be a positive multiple of 4, got {max_disp}")
        if max_disp > MAX_DISP_LIMIT:  # found here, not as an allocator's overflow or the OOM killer
            raise ConfigError(
                f"{self.arch}: max_disp must be at most {MAX_DISP_LIMIT} px (its cost volume grows with it), "
                f"got {max_disp}"
            )
        self.max_disp = max_disp
        #: The constructor options; a checkpoint stores them so that the network can be rebuilt.
        self.config: dict[str, Any] = {"max_disp": max_disp, **config}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.fine: FineRefinement | None = None

    # -- what a network provides ---------------------------------------------------------------------
    def predict(self, left: torch.Tensor, right: torch.Tensor, taps: TapRecorder) -> StereoOutput:
        """Normalised, padded B×3×H×W inputs → output at the padded size."""
        raise NotImplementedError

    def offered_taps(self) -> tuple[str, ...]:
        """Names of the taps this network (with its configuration) can return."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Load what :meth:`predict` would import on its first call (a classical method's library), so
        that a benchmark does not count it as the network's memory or time. Networks need nothing."""

    def map_original_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename or drop the keys of an original-repository checkpoint so they match ours.

        Our module names follow the originals', so the default only drops, by name, the tensors
        the class declares unused (``unused_release_keys``, ``unused_release_prefixes``).
        """
        keys, prefixes = self.unused_release_keys, self.unused_release_prefixes
        return {key: value for key, value in state.items() if key not in keys and not key.startswith(prefixes)}

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB → what the original pipeline fed the network (ImageNet statistics by default)."""
        return (image - self.mean) / self.std

    def add_fine_refinement(self, radius: int, block: int = 0, polish: int = 0, extremes: int = 0) -> None:
        """End the network in a full-resolution cost refinement of ``radius`` px
        (:mod:`~stereodistill.models.fine_refine`), which also searches around a full-resolution block
        match of ``block`` × ``block`` px when ``block`` is set, at inference places its output on
        those costs within ± ``polish`` px when ``polish`` is set, and also searches around the largest
        and smallest estimate within ``extremes`` × ``extremes`` px when that is set. Its input, the
        network's own output, is supervised too (weight 0.7), so that the stage refines an estimate; the
        options are recorded in :attr:`config`, so a checkpoint rebuilds the same network."""
        radius = checked_fine_radius(type(self), radius)
        block = checked_fine_window(type(self), "fine_block", block, radius)
        polish = checked_fine_polish(type(self), polish, block)
        extremes = checked_fine_window(type(self), "fine_extremes", extremes, radius)
        if not radius:
            return
        self.fine = FineRefinement(self.max_disp - 1.0, radius, block=block, polish=polish, extremes=extremes)
        self.fine.to(self.mean.device)
        self.config["fine"] = radius
        for key, value in (("fine_block", block), ("fine_polish", polish), ("fine_extremes", extremes)):
            if value:
                self.config[key] = value
        self.loss_weights = (*self.loss_weights[:-1], FINE_INPUT_WEIGHT, self.loss_weights[-1])

    # -- the contract ----------------------------------------------------------------------------------
    def check_taps(self, taps: Iterable[str]) -> frozenset[str]:
        wanted = frozenset(taps)
        offered = self.offered_taps()
        missing = sorted(wanted.difference(offered))
        if missing:
            raise ConfigError(
                f"{self.arch} does not offer tap(s) {', '.join(missing)}; it offers: {', '.join(offered)}"
            )
        return wanted

    def forward(self, left: torch.Tensor, right: torch.Tensor, taps: Iterable[str] = ()) -> StereoOutput:
        if left.shape != right.shape:
            raise InputError(f"left and right images differ in size: {tuple(left.shape)} vs {tuple(right.shape)}")
        if left.dim() != 4 or left.shape[1] != 3:
            raise InputError(f"expected B×3×H×W images, got shape {tuple(left.shape)}")
        recorder = TapRecorder(self.check_taps(taps))
        left, padding = pad_to_multiple(self.normalize(left), self.pad_multiple)
        right, _ = pad_to_multiple(self.normalize(right), self.pad_multiple)
        out = self.predict(left, right, recorder)
        if self.fine is not None:
            if self.training:
                out.aux = [*out.aux, out.disparity]
            out.disparity = self.fine(out.disparity, left, right)
        out.disparity = padding.crop(out.disparity)
        out.aux = [padding.crop(pred) for pred in out.aux]
        padded = (left.shape[-2], left.shape[-1])
        out.taps = {name: padding.crop_scaled(tap, padded) for name, tap in recorder.taps.items()}
        return out

    def tap_shapes(
        self, height: int = 256, width: int = 512, batch: int = 1, training: bool | None = None
    ) -> dict[str, tuple[int, ...]]:
        """Shape of every offered tap for an input of this size, found by a dry run on the meta device
        (in the network's current mode unless ``training`` says otherwise)."""
        ghost = copy.deepcopy(self).to("meta")
        ghost.train(self.training if training is None else training)
        image = torch.empty(batch, 3, height, width, device="meta")
        with torch.no_grad():
            out = ghost(image, image, taps=self.offered_taps())
        return {name: tuple(out.taps[name].shape) for name in self.offered_taps()}

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.config.items())


def checked_fine_radius(cls: type[StereoModel], radius: Any) -> int:
    """The ``fine`` option's radius, checked (a ConfigError naming the network otherwise): an integer
    0–16 (0: no stage), for a trainable network only."""
    if not (isinstance(radius, int) and not isinstance(radius, bool) and 0 <= radius <= MAX_RADIUS):
        raise ConfigError(f"{cls.arch}: option fine must be an integer 0–{MAX_RADIUS} (0: none), got {radius!r}")
    if radius and not cls.trainable:
        raise ConfigError(f"{cls.arch}: option fine needs a trainable network; {cls.arch} is not one")
    return radius


def checked_fine_window(cls: type[StereoModel], option: str, window: Any, radius: int) -> int:
    """The window of ``option`` (``fine_block``, ``fine_extremes``), checked (a ConfigError naming the
    network otherwise): 0, or an odd window of 3–15 px beside a ``fine`` radius."""
    if window == 0 and not isinstance(window, bool):
        return 0
    windows = ", ".join(str(size) for size in BLOCK_WINDOWS)
    if isinstance(window, bool) or not isinstance(window, int) or window not in BLOCK_WINDOWS:
        raise ConfigError(f"{cls.arch}: option {option} must be 0 (none) or one of {windows}, got {window!r}")
    if not radius:
        raise ConfigError(f"{cls.arch}: option {option} needs the fine refinement (set fine: R, R >= 1)")
    return window


def checked_fine_polish(cls: type[StereoModel], polish: Any, block: int) -> int:
    """The ``fine_polish`` option's radius, checked: 0, or 1–16 px beside a ``fine_block`` window (whose
    costs it reads)."""
    if not (isinstance(polish, int) and not isinstance(polish, bool) and 0 <= polish <= MAX_RADIUS):
        raise ConfigError(f"{cls.arch}: option fine_polish must be an integer 0–{MAX_RADIUS} (0: none), got {polish!r}")
    if polish and not block:
        raise ConfigError(f"{cls.arch}: option fine_polish reads the block match's costs (set fine_block too)")
    return polish
