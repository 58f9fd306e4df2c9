"""DeiT: distillation through a distillation token, the one distillation method transformers itself ships a model for.

Touvron, Cord, Douze, Massa, Sablayrolles and Jégou, "Training data-efficient image transformers & distillation
through attention", ICML 2021 (arXiv:2012.12877). The student is a ViT with two extra tokens, a class token and a
distillation token, each read by its own linear head (transformers' ``DeiTForImageClassificationWithTeacher``: logits
``Z_cls`` and ``Z_dist``, each ``[B, C]``). The class head learns the labels, the distillation head learns the teacher
(any classifier; the paper's best teacher is a convnet, RegNetY-16GF), and the model predicts with the mean of the two.

The paper's objectives (Section 4, with ``psi`` the softmax, ``Z_t`` the teacher's logits ``[B, C]``, ``y`` the labels):

- soft distillation, eq. (2): ``(1 - lambda) CE(psi(Z_s), y) + lambda tau^2 KL(psi(Z_s / tau), psi(Z_t / tau))``;
- hard-label distillation, eq. (3): ``1/2 CE(psi(Z_s), y) + 1/2 CE(psi(Z_s), y_t)`` with ``y_t = argmax_c Z_t(c)``.

With the distillation token ("Distillation token", Section 4) the label term reads the class head and the teacher
term the distillation head; the paper's best result is hard distillation with that token (Table 3). hfkd's terms:

- ``ce`` = ``CE(Z_cls, y)``, weighted by ``cls`` (the method's ``ce_head = "cls"``);
- ``kd`` = ``T^2 * (1/B) sum_b KL(psi(Z_t,b / T) || psi(Z_dist,b / T))`` at ``kd_temperature``, weighted by ``div``
  (``kd_head = "distillation"``; the teacher sees its own logits);
- ``deit`` = ``CE(Z_dist, argmax Z_t)``, the method's own term, weighted by ``beta`` (no label smoothing on the
  teacher's labels, as in the paper).

``deit_distillation`` picks the paper's weights when the recipe leaves them unset: ``hard`` (the default) gives
``cls 0.5, div 0, beta 0.5`` (eq. 3); ``soft`` gives ``cls 0.9, div 0.1, beta 0`` (eq. 2 with the paper's
``lambda = 0.1``). The paper's soft temperature is ``tau = 3``, while hfkd's ``kd_temperature`` defaults to 4 for
every method, so a soft DeiT recipe sets ``kd_temperature: 3``. Weights set in the recipe weigh the same three terms
in either mode (``div`` > 0 in hard mode adds the soft term on the distillation head, for instance).

hfkd's ``kd`` is eq. (2)'s ``tau^2 KL`` exactly: the KL of the teacher's softened distribution from the student's (the
direction the paper describes and its code computes; the argument order in eq. (2) is notation), summed over the
classes and averaged over the batch (the reference form, spec 1.3). The official code instead divides the summed KL by
``B * C`` (PyTorch's legacy element mean), so its KL term is ``1/C`` of this one; to reproduce that code's weighting
rather than the equation, set ``div`` to ``lambda / C``.

Prediction (evaluation and export) is the student's own forward, ``(Z_cls + Z_dist) / 2``: the official code and
transformers average the two heads' logits (the paper's text, "joint classifiers", adds their softmax outputs; the
argmax can differ only when the heads disagree). The export is the transformers model with both heads.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.outputs import ClassifierOutput
from .base import DistillationMethod, Paper
from .registry import register_method

# deit_distillation -> the paper's (cls, div, beta): eq. (3) for hard, eq. (2) with lambda = 0.1 for soft
PAPER_WEIGHTS = {"hard": (0.5, 0.0, 0.5), "soft": (0.9, 0.1, 0.0)}


@register_method
class DeiT(DistillationMethod):
    """``cls * CE(Z_cls, y) + div * KD_T(Z_dist, Z_t) + beta * CE(Z_dist, argmax Z_t)`` on a DeiT-with-teacher student.

    The student must have the two heads (``DeiTFeatureClassifier``: ``head_logits["cls"]`` and
    ``["distillation"]``); any other student is refused when the method is built. The teacher is any model hfkd
    loads; its ``logits`` are the target (a DeiT-with-teacher teacher gives its averaged logits).
    """

    name = "deit"
    paper = Paper(
        "Training data-efficient image transformers & distillation through attention",
        "Hugo Touvron and Matthieu Cord and Matthijs Douze and Francisco Massa and Alexandre Sablayrolles and "
        "Hervé Jégou",
        "International Conference on Machine Learning (ICML)",
        2021,
        "https://arxiv.org/abs/2012.12877",
    )
    # hard distillation (the default mode); soft's weights come from default_weights
    default_cls, default_div, default_beta = PAPER_WEIGHTS["hard"]
    ce_head = "cls"
    kd_head = "distillation"

    def __init__(self, mode: str = "hard") -> None:
        super().__init__()
        self.mode = mode

    @classmethod
    def default_weights(cls, config: Any) -> tuple[float, float, float]:
        """The paper's weights for ``config.deit_distillation``: hard ``(0.5, 0, 0.5)``, soft ``(0.9, 0.1, 0)``."""
        return PAPER_WEIGHTS[config.deit_distillation]

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "DeiT":
        """Reads ``config.deit_distillation`` ('hard' or 'soft', checked with the recipe); no trainable parts."""
        return cls(config.deit_distillation)

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """``deit``: the mean cross-entropy of the distillation head ``[B, C]`` against the teacher's argmax ``[B]``,
        in fp32."""
        teacher_labels = teacher_out.logits.argmax(dim=1)
        return {"deit": F.cross_entropy(student_out.head_logits["distillation"].float(), teacher_labels)}

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
