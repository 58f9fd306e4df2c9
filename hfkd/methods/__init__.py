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
    deit,
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
from ..errors import IncompatibleSetupError
from ..models.provenance import provenance_of
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
    by it); see ``DistillationMethod.build``. Raises ``RecipeError`` for an unknown name and
    ``IncompatibleSetupError`` for a student without the heads the method trains.
    """
    if name == NO_DISTILLATION:
        return None
    if name not in METHODS:
        from ..errors import RecipeError

        raise RecipeError(f"method {name!r} is unknown; choose one of {', '.join(known_method_names())}")
    method = METHODS[name]
    require_student_heads(method, student)
    return method.build(student, teacher, config, example_batch, train_dataset=train_dataset)


def require_student_heads(method: type[DistillationMethod], student: nn.Module) -> None:
    """A method whose ``cls`` or ``div`` term reads a named student head (``ce_head`` / ``kd_head``) needs a student
    that has it (its ``head_names``); raises ``IncompatibleSetupError`` otherwise."""
    wanted = [head for head in dict.fromkeys((method.ce_head, method.kd_head)) if head is not None]
    have = tuple(getattr(student, "head_names", ()))
    if all(head in have for head in wanted):
        return
    provenance = provenance_of(student)
    named = f"{provenance.source!r}" if provenance is not None and provenance.source else type(student).__name__
    heads = f"only the heads {', '.join(map(repr, have))}" if have else "a single head"
    raise IncompatibleSetupError(
        f"method {method.name!r} trains the student's {' and '.join(map(repr, wanted))} heads, but the student "
        f"{named} has {heads}; use a DeiT with a distillation token as the student (transformers' "
        f"DeiTForImageClassificationWithTeacher), e.g. facebook/deit-tiny-distilled-patch16-224 or a folder whose "
        f'config.json is a DeiTConfig with architectures ["DeiTForImageClassificationWithTeacher"]'
    )


__all__ = [
    "METHODS",
    "NO_DISTILLATION",
    "DistillationMethod",
    "build_method",
    "kd_divergence",
    "known_method_names",
    "register_method",
    "require_student_heads",
]
