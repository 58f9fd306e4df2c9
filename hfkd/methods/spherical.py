"""Spherical Knowledge Distillation (the published version): KD and CE on layer-normalised logits.

Guo, Chen, Zheng, Chen, Yu and Song, "Reducing the Teacher-Student Gap via Spherical Knowledge Distillation",
arXiv:2010.07485, 2020 (spec 10.1). Student and teacher logits both go through ``LN(z) * m``: layer normalisation over
the class axis (no affine parameters, eps 1e-7, biased variance) times a multiplier ``m``, so the student matches
the teacher's logit *direction* and the confidence gap between a large teacher and a small student disappears.
This is the original December 2020 method, not the later variant that rescales student logits by sigma_t/sigma_s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RecipeError
from .base import DistillationMethod, Paper
from .registry import register_method

# inside the square root, with the biased (1/C) variance, as torch's LayerNorm does
SPHERICAL_LN_EPS = 1e-7


def spherical_logits(logits: torch.Tensor, multiplier: float) -> torch.Tensor:
    """``LN(z) * m`` in fp32: ``(z - mean) / sqrt(var_biased + 1e-7) * m`` over the class axis."""
    z = logits.float()
    return F.layer_norm(z, z.shape[-1:], eps=SPHERICAL_LN_EPS) * multiplier


@register_method
class SphericalKD(DistillationMethod):
    """Spherical KD: the ``cls`` CE and the ``div`` KD term both see ``LN(z) * spherical_multiplier``; no own loss.

    Defaults are the SimKD-style ``cls 1, div 1`` of the other baselines. The paper writes the loss as
    ``(1 - alpha) * CE + alpha * KD`` with alpha 0.9, i.e. ``cls 0.1, div 0.9``; its ImageNet run lowers alpha to 0.5
    after epoch 60 and to 0.1 after epoch 80: ``spherical_alphas: [0.9, 0.5, 0.1]`` with ``spherical_alpha_epochs:
    [60, 80]`` (in 1-based epoch e, alpha is ``alphas[#{m : e > m}]``, the lr milestones' rule). ``kd_temperature`` is
    the T of the KD term (4 in the paper). Prediction is the student's own logits: LN keeps the argmax.
    """

    name = "spherical"
    paper = Paper(
        "Reducing the Teacher-Student Gap via Spherical Knowledge Disitllation",
        "Jia Guo and Minghao Chen and Yao Hu and Chen Zhu and Xiaofei He and Deng Cai",
        "arXiv:2010.07485",
        2020,
        "https://arxiv.org/abs/2010.07485",
    )
    default_cls = 1.0
    default_div = 1.0
    default_beta = 0.0

    def __init__(
        self, multiplier: float = 2.0, alphas: list[float] | None = None, alpha_epochs: list[int] | None = None
    ) -> None:
        super().__init__()
        self.multiplier = float(multiplier)
        self.alphas = [float(a) for a in alphas] if alphas else None
        self.alpha_epochs = [int(e) for e in alpha_epochs or []]

    @classmethod
    def check_alpha_schedule(cls, config: Any) -> None:
        alphas = getattr(config, "spherical_alphas", None)
        epochs = getattr(config, "spherical_alpha_epochs", None) or []
        if not alphas:
            if epochs:
                raise RecipeError("spherical_alpha_epochs needs spherical_alphas (one alpha more than epochs)")
            return
        if len(alphas) != len(epochs) + 1:
            raise RecipeError(f"spherical_alphas needs one value more than spherical_alpha_epochs, got {list(alphas)} "
                              f"and {list(epochs)}")
        if not all(0 <= a <= 1 for a in alphas) or list(epochs) != sorted(epochs):
            raise RecipeError(f"spherical_alphas must lie in [0, 1] and spherical_alpha_epochs increase, got "
                              f"{list(alphas)} and {list(epochs)}")
        if getattr(config, "cls", None) is not None or getattr(config, "div", None) is not None:
            raise RecipeError("spherical_alphas sets cls = 1 - alpha and div = alpha each epoch; leave cls and div unset")

    @classmethod
    def default_weights(cls, config: Any) -> tuple[float, float, float]:
        """(1 - alpha, alpha, 0) for the first alpha of ``spherical_alphas``, else the class defaults."""
        cls.check_alpha_schedule(config)
        if getattr(config, "spherical_alphas", None):
            alpha = float(config.spherical_alphas[0])
            return 1.0 - alpha, alpha, 0.0
        return super().default_weights(config)

    def alpha_at(self, epoch: int) -> float:
        """alpha in the 1-based ``epoch``: ``alphas[#{m : epoch > m}]``."""
        return self.alphas[sum(epoch > m for m in self.alpha_epochs)]

    def weights_at(self, epoch: int | None, weights: Any) -> Any:
        if self.alphas is None or epoch is None:
            return weights
        alpha = self.alpha_at(epoch)
        return replace(weights, cls=1.0 - alpha, div=alpha)

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> SphericalKD:
        """Reads ``config.spherical_multiplier`` and the alpha schedule; no trainable parts."""
        cls.check_alpha_schedule(config)
        return cls(float(config.spherical_multiplier),  # > 0, checked with the recipe (DistillationConfig)
                   getattr(config, "spherical_alphas", None), getattr(config, "spherical_alpha_epochs", None))

    def ce_logits(self, student_logits: torch.Tensor) -> torch.Tensor:
        """The cross-entropy is on the normalised student logits (spec 10.1)."""
        return spherical_logits(student_logits, self.multiplier)

    def kd_logits(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both logit sets normalised and scaled before the trainer's tempered KL."""
        return spherical_logits(student_logits, self.multiplier), spherical_logits(teacher_logits, self.multiplier)

    def extra_repr(self) -> str:
        return f"multiplier={self.multiplier}"
