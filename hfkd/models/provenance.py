"""Where a model came from: one typed record, attached by ``create_model`` and read with :func:`provenance_of`.

The export needs the architecture (to rebuild the student without hfkd's training code), the data pipeline and the
teacher adapter need the input preprocessing a pretrained model declares, and the model card names the source and
the accuracy a reference checkpoint stores. All of it travels in one :class:`ModelProvenance` instead of loose
attributes, so a reader either gets the record or ``None``, never a silently defaulted field.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from .preprocessing import Preprocessing

# the one attribute the record lives in (a plain attribute: it is not a parameter, buffer or submodule)
_ATTRIBUTE = "hfkd_provenance"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a released reference checkpoint stores besides its weights (SimKD / RepDistiller ``.pth``, spec 7).

    ``arch`` is the architecture it was loaded as, ``epoch`` the epoch it was saved at and ``accuracy`` its
    ``best_acc`` / ``accuracy`` entry (top-1 in %); the last two are None when the file does not hold them.
    """

    arch: str
    epoch: float | int | None = None
    accuracy: float | None = None


@dataclass(frozen=True)
class ModelProvenance:
    """How a model was made.

    - ``architecture``: the id the export rebuilds it from (a CIFAR zoo name such as ``resnet8x4``, or
      ``timm:<name>``); None for a transformers model, which is exported as itself.
    - ``architecture_kwargs``: keyword arguments of that constructor (timm ``create_model`` kwargs), or None.
    - ``preprocessing``: the normalisation and input size a pretrained model declares (its image processor or timm
      ``pretrained_cfg``); None when it declares nothing (zoo models, reference checkpoints).
    - ``source``: the name, path or Hub id it was created from.
    - ``checkpoint``: what a reference ``.pth`` stored besides the weights, or None.
    - ``distillation``: the record an hfkd export carries (method, teacher, loss weights, ``results`` with top-1 in %),
      whatever its format (hfkd, transformers or timm), or None for a model hfkd did not train.
    """

    architecture: str | None
    architecture_kwargs: dict[str, Any] | None = None
    preprocessing: Preprocessing | None = None
    source: str | None = None
    checkpoint: CheckpointInfo | None = None
    distillation: dict[str, Any] | None = None

    def replace(self, **changes: Any) -> "ModelProvenance":
        return replace(self, **changes)


def attach_provenance(model: nn.Module, provenance: ModelProvenance) -> nn.Module:
    """Record ``provenance`` on ``model`` (replacing any earlier record) and return the model."""
    object.__setattr__(model, _ATTRIBUTE, provenance)
    return model


def provenance_of(model: nn.Module) -> ModelProvenance | None:
    """The record ``create_model`` attached, or None for a model built some other way."""
    return model.__dict__.get(_ATTRIBUTE)
