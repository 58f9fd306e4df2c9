"""Variational Information Distillation: Ahn et al., "Variational Information Distillation for Knowledge
Transfer", CVPR 2019 (spec section 2.5)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.outputs import ClassifierOutput
from .base import DistillationMethod, Paper
from .components.stage_map_pairs import aligned_stage_pairs, stage_map_shape_pairs
from .registry import register_method


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)


class VIDLoss(nn.Module):
    """Gaussian negative log-likelihood of a teacher map under a mean regressed from the student map.

    ``mu = regressor(f_s)`` (three bias-free 1x1 convs with ReLUs between, no BN) and a per-channel variance
    ``sigma^2 = softplus(log_scale) + eps``, initialised to ``init_pred_var``. State-dict keys
    ``regressor.{0,2,4}.weight`` and ``log_scale`` as in the reference.
    """

    def __init__(
        self, in_channels: int, mid_channels: int, out_channels: int, init_pred_var: float = 5.0, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.regressor = nn.Sequential(
            _conv1x1(in_channels, mid_channels),
            nn.ReLU(),
            _conv1x1(mid_channels, mid_channels),
            nn.ReLU(),
            _conv1x1(mid_channels, out_channels),
        )
        # inverse softplus of (init_pred_var - eps), so that sigma^2 starts at init_pred_var
        self.log_scale = nn.Parameter(torch.full((out_channels,), math.log(math.exp(init_pred_var - eps) - 1.0)))
        self.eps = eps

    def variance(self) -> torch.Tensor:
        """``softplus(log_scale) + eps`` in fp32, shaped ``[1, C_t, 1, 1]`` to broadcast over a map."""
        return (F.softplus(self.log_scale.float()) + self.eps).view(1, -1, 1, 1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Mean over ``(B, C, H, W)`` of ``0.5 * ((mu - f_t)^2 / sigma^2 + log sigma^2)``; maps already aligned.

        Computed as the mean over channels of ``0.5 * (mean_{B,H,W} (mu - f_t)^2 / sigma_c^2 + log sigma_c^2)``,
        the same value: the variance is per channel, so dividing the per-channel mean saves two full-size
        broadcast ops (and their gradients) over the map.
        """
        mu = self.regressor(student).float()
        squared_error = (mu - teacher.float()).pow(2).mean(dim=(0, 2, 3))
        var = self.variance().flatten()
        return (0.5 * (squared_error / var + var.log())).mean()


@register_method
class VID(DistillationMethod):
    """One ``VIDLoss(C_s, C_t, C_t)`` per zipped stage-map pair (``pairs.<i>``); the loss is their sum."""

    name = "vid"
    paper = Paper(
        "Variational Information Distillation for Knowledge Transfer",
        "Sungsoo Ahn and Shell Xu Hu and Andreas Damianou and Neil D. Lawrence and Zhenwen Dai",
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
        2019,
        "https://arxiv.org/abs/1904.05835",
    )
    default_cls = 1.0
    default_div = 1.0
    default_beta = 1.0
    needs_student_features = True
    needs_teacher_features = True

    def __init__(self, channel_pairs: list[tuple[int, int]]) -> None:
        super().__init__()
        self.pairs = nn.ModuleList(VIDLoss(c_s, c_t, c_t) for c_s, c_t in channel_pairs)

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "VID":
        """Size one regressor per pair from the probed channel counts of the example batch."""
        shapes = stage_map_shape_pairs(student, teacher, example_batch, cls.name)
        return cls([(s[0], t[0]) for s, t in shapes])

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        pairs = aligned_stage_pairs(student_out.feats, teacher_out.feats)
        return {"vid": torch.stack([loss(s, t) for loss, (s, t) in zip(self.pairs, pairs)]).sum()}
