"""The DSNet paper's teacher: the ACVNet variant of cogsys-tuebingen/Distilling-Stereo-Networks.

It is ACVNet (``models/gwc_acvn`` there, registered as ``acvnet``) with a 16-ch attention branch
whose modules drop ACVNet's trailing underscore (``dres1_att``, ``dres2_att``, ``classif_att``),
and with head 0 reading the output of ``dres0`` alone rather than the ``dres0``+``dres1`` stage
(``volume.agg.0``, which its teaching mode hands out as the first "hg_vol"). Everything else,
windowed attention in every hourglass included, is ACVNet's.

The release also builds ``feature_extraction.lastconv`` (a 320→128→32 head, 372,992 parameters)
that its forward pass never calls; this port does not create it, and :meth:`map_original_state`
drops exactly its tensors from a released checkpoint.
"""

from __future__ import annotations

import torch

from stereodistill.models.acvnet import ACVNet
from stereodistill.models.registry import MODELS

#: The tensors of the release's unused ``feature_extraction.lastconv``, dropped on import.
UNUSED_RELEASE_KEYS = (
    "feature_extraction.lastconv.0.0.weight",
    "feature_extraction.lastconv.0.1.weight",
    "feature_extraction.lastconv.0.1.bias",
    "feature_extraction.lastconv.0.1.running_mean",
    "feature_extraction.lastconv.0.1.running_var",
    "feature_extraction.lastconv.0.1.num_batches_tracked",
    "feature_extraction.lastconv.2.weight",
)


@MODELS.register("dsnet-teacher")
class DSNetTeacher(ACVNet):
    """ACVNet with the DSNet release's 16-ch attention branch and head-0 input."""

    arch = "dsnet-teacher"
    unused_release_keys = UNUSED_RELEASE_KEYS
    release_params = 6_603_936
    #: models/gwc_acvn/loss.py ``model_loss_train`` (attention prediction, heads 0, 1, final head 2).
    loss_weights = (0.7, 0.5, 0.7, 1.0)
    attention_channels = 16
    attention_suffix = ""

    def head_inputs(self, dres0_out: torch.Tensor, stages: list[torch.Tensor]) -> list[torch.Tensor]:
        """Head 0 reads ``dres0``'s output (before the ``dres1`` residual), heads 1 and 2 the hourglasses."""
        return [dres0_out, *stages[1:]]
