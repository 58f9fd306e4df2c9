"""The interface every distillation method implements (DESIGN.md, "Methods"), and the paper it cites."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..models.outputs import ClassifierOutput


@dataclass(frozen=True)
class Paper:
    """The paper behind a method, for model cards: title, authors (``"First Last and First Last"``), venue, year and
    a link."""

    title: str
    authors: str
    venue: str
    year: int
    url: str

    def bibtex(self) -> str:
        """A BibTeX entry; arXiv-only papers are ``@article`` with the arXiv number as journal."""
        surname = self.authors.split(" and ")[0].split()[-1].lower()
        word = re.sub(r"[^a-z]", "", self.title.split()[0].lower())
        key = f"{surname}{self.year}{word}"
        kind, where = ("article", "journal") if self.venue.startswith("arXiv") else ("inproceedings", "booktitle")
        return (
            f"@{kind}{{{key},\n  title = {{{self.title}}},\n  author = {{{self.authors}}},\n"
            f"  {where} = {{{self.venue}}},\n  year = {{{self.year}}},\n  url = {{{self.url}}}\n}}"
        )


class DistillationMethod(nn.Module):
    """A method's own, unweighted loss terms computed from student and teacher outputs.

    The trainer adds ``cls * CE + div * KD_T`` itself; a method returns only what it adds on top (weighted by
    ``beta``). Trainable parts (projectors, embeddings) and state (memory banks) are submodules / buffers, so they
    are optimised and checkpointed with the student; the teacher is never a submodule (a method that reuses the
    teacher's classifier keeps a frozen copy).

    ``batch`` holds ``pixel_values``, ``labels``, ``epoch`` (the current 1-based epoch, an int) and whatever the
    method's ``prepare_train_dataset`` added (CRD: ``index``, ``contrast_index``); with Mixup / CutMix ``labels`` are
    the mixed targets ``[B, C]`` (see ``needs_hard_labels``).
    """

    name: ClassVar[str] = ""
    # the paper the method comes from (model cards link and cite it)
    paper: ClassVar[Paper | None] = None
    # loss weights when the recipe leaves cls / div / beta unset (SimKD's run_distill.sh, spec section 2)
    default_cls: ClassVar[float] = 1.0
    default_div: ClassVar[float] = 1.0
    default_beta: ClassVar[float] = 0.0
    # the student head (a key of ``student_out.head_logits``) that the ``cls`` cross-entropy / the ``div`` KD term
    # read; None: the student's logits. Building the method for a student without that head is refused.
    ce_head: ClassVar[str | None] = None
    kd_head: ClassVar[str | None] = None
    # which feature lists the method reads; the trainer only collects features when asked to
    needs_student_features: ClassVar[bool] = False
    needs_teacher_features: ClassVar[bool] = False
    # whether ``predict`` reads the student's features (evaluation then collects them; the teacher never runs)
    predict_needs_features: ClassVar[bool] = False
    # whether ``forward`` reads ``batch["labels"]`` as class indices (DKD's target mask): such a method cannot train on
    # Mixup / CutMix batches, whose labels are mixed targets ``[B, C]``
    needs_hard_labels: ClassVar[bool] = False
    # whether the method needs dataset indices and the training-set size (CRD's memory bank): not on streamed data
    needs_dataset_indices: ClassVar[bool] = False

    @classmethod
    def default_weights(cls, config: Any) -> tuple[float, float, float]:
        """(cls, div, beta) for the weights the recipe leaves unset: the class's ``default_cls`` / ``default_div`` /
        ``default_beta``; a method whose paper's weights depend on one of its settings (DeiT: hard or soft) reads
        ``config`` (a ``DistillationConfig``)."""
        return cls.default_cls, cls.default_div, cls.default_beta

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "DistillationMethod":
        """Create the method for this student/teacher pair; methods that size modules override this.

        ``example_batch`` is a small collated training batch (None for an evaluation-only trainer) whose
        ``pixel_values`` the methods probe the models with. ``train_dataset`` is the training set as the trainer
        iterates it, already passed through ``prepare_train_dataset`` (None when there is none); only a method that
        needs the training set itself reads it (CRD sizes its memory bank by it), the others ignore it.

        Raise ``hfkd.errors.IncompatibleSetupError`` (one sentence: why, and what would work) for a pair the
        method cannot handle, so the run stops before training.
        """
        return cls()

    @classmethod
    def prepare_train_dataset(cls, dataset: Any, config: Any) -> Any:
        """Return the training set this method needs (CRD adds dataset indices and contrastive negatives)."""
        return dataset

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        return {}

    def predict(self, student_out: ClassifierOutput) -> torch.Tensor:
        """Logits used for evaluation and export; the student's own unless the method predicts differently."""
        return student_out.logits

    def weights_at(self, epoch: int | None, weights: Any) -> Any:
        """The loss weights (a ``LossWeights``) in the 1-based ``epoch``; a method whose paper changes them during
        training (Spherical KD's alpha schedule) returns a copy with other ``cls`` / ``div``."""
        return weights

    def ce_logits(self, student_logits: torch.Tensor) -> torch.Tensor:
        """The logits the ``cls`` cross-entropy sees (Spherical KD normalises them)."""
        return student_logits

    def kd_logits(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (student, teacher) logits the ``div`` KD term sees (Spherical KD, logit standardisation)."""
        return student_logits, teacher_logits

    def export_head(self) -> tuple[dict, nn.Module] | None:
        """A prediction head the exported model must carry (SimKD), as (config dict, module), or None."""
        return None
