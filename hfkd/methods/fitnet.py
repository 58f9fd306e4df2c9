"""FitNet hints: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015, single-stage as in SimKD's
``hint`` (spec section 2.2)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import IncompatibleSetupError
from ..models.outputs import ClassifierOutput
from ..models.spatial import align_spatial
from .base import DistillationMethod, Paper
from .components.feature_lists import require_maps
from .components.probing import probe_pair
from .registry import register_method


class ConvReg(nn.Module):
    """SimKD's convolutional regressor: conv (chosen by the two heights) -> BN(C_t) -> ReLU.

    With student map ``(C_s, H_s, W_s)`` and teacher map ``(C_t, H_t, W_t)``:
    ``H_s == 2 H_t``: 3x3 conv, stride 2, pad 1; ``2 H_s == H_t``: 4x4 transposed conv, stride 2, pad 1;
    otherwise ``H_s >= H_t``: valid conv of kernel ``(1 + H_s - H_t, 1 + W_s - W_t)`` (1x1 at equal sizes);
    otherwise (``H_s < H_t``, not exactly half): 3x3 conv, stride 1, pad 1, and the TEACHER map is pooled to the
    student's size (SimKD only). Convs have bias and PyTorch's default init. Keys ``conv.*``, ``bn.*``.
    """

    def __init__(self, student_shape: tuple[int, int, int], teacher_shape: tuple[int, int, int]) -> None:
        super().__init__()
        s_c, s_h, s_w = student_shape
        t_c, t_h, t_w = teacher_shape
        self.pools_teacher = False
        if s_h == 2 * t_h:
            self.conv: nn.Module = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif 2 * s_h == t_h:
            self.conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        elif s_h >= t_h:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        else:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=1, padding=1)
            self.pools_teacher = True
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(relu(bn(conv(f_s))), target)``; the target is the teacher map, pooled only in the last case."""
        regressed = self.relu(self.bn(self.conv(student)))
        if self.pools_teacher:
            regressed, teacher = align_spatial(regressed, teacher)
        return regressed, teacher


@register_method
class FitNet(DistillationMethod):
    """MSE between the regressed student hint ``feats_s[k]`` and the teacher hint ``feats_t[k]``, ``k = hint_layer``."""

    name = "fitnet"
    paper = Paper(
        "FitNets: Hints for Thin Deep Nets",
        "Adriana Romero and Nicolas Ballas and Samira Ebrahimi Kahou and Antoine Chassang and Carlo Gatta and Yoshua Bengio",
        "International Conference on Learning Representations (ICLR)",
        2015,
        "https://arxiv.org/abs/1412.6550",
    )
    default_cls = 1.0
    default_div = 1.0
    default_beta = 100.0
    needs_student_features = True
    needs_teacher_features = True

    def __init__(
        self, hint_layer: int, student_shape: tuple[int, int, int], teacher_shape: tuple[int, int, int]
    ) -> None:
        super().__init__()
        self.hint_layer = hint_layer
        self.regressor = ConvReg(student_shape, teacher_shape)

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "FitNet":
        """Check ``hint_layer`` indexes a map of both models and size the regressor from the probed shapes."""
        k = int(config.hint_layer)
        s_shapes, t_shapes = probe_pair(student, teacher, example_batch, cls.name)
        last = min(len(s_shapes), len(t_shapes)) - 2
        if not 0 <= k <= last:
            raise IncompatibleSetupError(
                f"fitnet's hint_layer {k} does not index a feature map of both models (the student has maps "
                f"0..{len(s_shapes) - 2}, the teacher 0..{len(t_shapes) - 2}); set hint_layer to one of 0..{last}"
            )
        require_maps([s_shapes[k]], "student", cls.name, f"the hint feats[{k}]")
        require_maps([t_shapes[k]], "teacher", cls.name, f"the hint feats[{k}]")
        s_shape, t_shape = tuple(s_shapes[k]), tuple(t_shapes[k])
        try:
            method = cls(k, s_shape, t_shape)
            regressed, target = method._dry_run(s_shape, t_shape)
        except (RuntimeError, ValueError):
            regressed, target = None, t_shape
        if regressed != target:
            raise IncompatibleSetupError(
                f"fitnet cannot regress the student hint feats[{k}] of shape {s_shape} onto the teacher's {t_shape} "
                f"(the two maps need the same aspect ratio); choose a hint_layer where they do"
            )
        return method

    @torch.no_grad()
    def _dry_run(
        self, s_shape: tuple[int, int, int], t_shape: tuple[int, int, int]
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Per-sample shapes of the regressed student map and of its target, from zero maps (BN is skipped)."""
        conv = self.regressor.conv
        regressed = conv(torch.zeros(1, *s_shape, dtype=conv.weight.dtype))
        target = torch.zeros(1, *t_shape)
        if self.regressor.pools_teacher:
            regressed, target = align_spatial(regressed, target)
        return tuple(regressed.shape[1:]), tuple(target.shape[1:])

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        k = self.hint_layer
        regressed, target = self.regressor(student_out.feats[k], teacher_out.feats[k])
        return {"fitnet": F.mse_loss(regressed.float(), target.float())}
