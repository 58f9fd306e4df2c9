"""Correlation Congruence (CC): match the correlation between consecutive examples' embeddings.

Peng, Jin, Liu, Li, Wu, Liu, Zhou and Zhang, "Correlation Congruence for Knowledge Distillation", ICCV 2019, in the
form RepDistiller ships (spec 3, "correlation"): both pooled vectors go through a trainable ``LinearEmbed`` to 128
dimensions, ``delta = |e_s - e_t|``, and ``L = mean over b = 0..B-2 of sum_c delta[b, c] * delta[b+1, c]``.

Difference from the reference: a batch of one example (no consecutive pair) gives 0 instead of the NaN of a mean
over nothing, so a last partial batch of size 1 cannot poison training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models.outputs import ClassifierOutput
from .base import DistillationMethod, Paper
from .components.feature_lists import pooled_fp32
from .components.full_precision import full_precision
from .components.linear_embed import LinearEmbed
from .components.probing import pooled_width
from .registry import register_method

# RepDistiller's --feat_dim default, the embedding size of CC's LinearEmbed
CC_EMBED_DIM = 128


def cc_loss(embed_s: torch.Tensor, embed_t: torch.Tensor) -> torch.Tensor:
    """``mean_{b<B-1} sum_c |e_s - e_t|[b, c] * |e_s - e_t|[b+1, c]`` (0 for a single example)."""
    delta = (embed_s.float() - embed_t.float()).abs()
    if delta.shape[0] < 2:
        return delta.sum() * 0.0
    return (delta[:-1] * delta[1:]).sum(dim=1).mean()


@register_method
class CC(DistillationMethod):
    """Correlation congruence between trainable 128-d embeddings of the pooled vectors (spec 3)."""

    name = "cc"
    paper = Paper(
        "Correlation Congruence for Knowledge Distillation",
        "Baoyun Peng and Xiao Jin and Jiaheng Liu and Dongsheng Li and Yichao Wu and Yu Liu and Shunfeng Zhou and Zhaoning Zhang",
        "IEEE/CVF International Conference on Computer Vision (ICCV)",
        2019,
        "https://arxiv.org/abs/1904.01802",
    )
    default_beta = 0.02
    needs_student_features = True
    needs_teacher_features = True

    def __init__(self, student_dim: int, teacher_dim: int, embed_dim: int = CC_EMBED_DIM) -> None:
        super().__init__()
        self.embed_s = LinearEmbed(student_dim, embed_dim)
        self.embed_t = LinearEmbed(teacher_dim, embed_dim)

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "CC":
        return cls(
            pooled_width(student, example_batch, cls.name), pooled_width(teacher, example_batch, cls.name, "teacher")
        )

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        f_s = pooled_fp32(student_out)
        with full_precision(f_s):
            return {"cc": cc_loss(self.embed_s(f_s), self.embed_t(pooled_fp32(teacher_out)))}
