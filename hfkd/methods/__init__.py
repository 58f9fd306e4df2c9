"""Distillation methods, one file each, registered by name; the loss pieces they share live in ``components``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# every method module registers its class on import
from . import (  # noqa: F401
    at,
    cc,
    crd,
    dist,
    dkd,
    fitnet,
    kd,
    logit_std,
    nst,
    pkt,
    rkd,
    semckd,
    simkd,
    sp,
    spherical,
    srrl,
    vid,
)
from .base import DistillationMethod
from .components.kl_divergence import kd_divergence
from .registry import METHODS, NO_DISTILLATION, known_method_names, register_method


def build_method(
    name: str,
    student: nn.Module,
    teacher: nn.Module | None,
    config: Any,
    example_batch: dict[str, torch.Tensor] | None,
    train_dataset: Any = None,
) -> DistillationMethod | None:
    """The method module for this pair, or None for 'none' (the model trains alone).

    ``train_dataset`` is the training set after the method's ``prepare_train_dataset`` (CRD sizes its memory bank
    by it); see ``DistillationMethod.build``. Raises ``RecipeError`` for an unknown name.
    """
    if name == NO_DISTILLATION:
        return None
    if name not in METHODS:
        from ..errors import RecipeError

        raise RecipeError(f"method {name!r} is unknown; choose one of {', '.join(known_method_names())}")
    return METHODS[name].build(student, teacher, config, example_batch, train_dataset=train_dataset)


__all__ = [
    "METHODS",
    "NO_DISTILLATION",
    "DistillationMethod",
    "build_method",
    "kd_divergence",
    "known_method_names",
    "register_method",
]
