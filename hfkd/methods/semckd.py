"""SemCKD: Chen et al., "Cross-Layer Distillation with Semantic Calibration", AAAI 2021 (spec 2.7, 8.11).

Every student stage map ``i`` is regressed onto every teacher stage map ``j`` (``Proj`` regressors), and each
sample weighs the (i, j) feature losses with an attention ``alpha[b, i, :] = softmax_j <q_i[b], k_j[b]> / soft``
whose queries and keys embed the rows of the per-layer B x B sample-similarity matrices. The attention is not
detached, so the loss also trains the query/key MLPs (as in the reference).

Differences from the reference, on purpose:
- Partial batches train instead of being dropped. The MLP input size is the configured per-device batch size B
  (``per_device_train_batch_size``); for a batch of B' < B samples each row of the B' x B' similarity matrix is
  zero-padded to B (an absent sample has similarity 0) and the loss is averaged over the B' real samples
  (``/ (B' * s_len)``). A batch larger than B is an error.
- ``MLPEmbed`` does not create the reference's unused ``regressor`` Linears (never used, never trained).
- Module names are ``query.{i}``, ``key.{j}`` and ``regressor.{i}.{j}``, unambiguous for any number of layers
  (the reference's ``'regressor' + str(i) + str(j)`` is not from 10 layers on).
- The L2 normalisation of the embeddings uses ``F.normalize`` (norm clamped at 1e-12 instead of a division by 0).
- Similarity matrices, embeddings and attention are computed in fp32 with autocast off (Gram matrices of large
  maps overflow fp16); the regressors run under autocast and their errors are taken in fp32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import IncompatibleSetupError
from ..models.outputs import ClassifierOutput
from ..models.spatial import align_spatial
from .base import DistillationMethod, Paper
from .components.feature_lists import require_maps, stage_maps
from .components.full_precision import full_precision
from .components.probing import example_pixels, probe_features
from .components.sample_similarity import sample_similarity
from .registry import register_method


class MLPEmbed(nn.Module):
    """``Linear(B, 2*(B//4))`` -> ReLU -> ``Linear(2*(B//4), B//4)`` -> L2 normalise: one query/key embedding.

    The hidden width ``2 * (B//4)`` is the reference's (it is the spec's B/2 whenever 4 divides B).
    """

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim_in, 2 * dim_out)
        self.linear2 = nn.Linear(2 * dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear2(F.relu(self.linear1(x))), p=2.0, dim=1)


class Proj(nn.Module):
    """1x1 conv C_s -> 2C_t, BN, ReLU, 3x3 conv 2C_t -> 2C_t, BN, ReLU, 1x1 conv 2C_t -> C_t; no bias, no final BN."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = 2 * out_channels
        self.regressor = nn.Sequential(
            nn.Conv2d(in_channels, mid, kernel_size=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.regressor(x)


@register_method
class SemCKD(DistillationMethod):
    """Cross-layer feature regression weighted per sample by a query/key attention over teacher layers."""

    name = "semckd"
    paper = Paper(
        "Cross-Layer Distillation with Semantic Calibration",
        "Defang Chen and Jian-Ping Mei and Yuan Zhang and Can Wang and Zhe Wang and Yan Feng and Chun Chen",
        "AAAI Conference on Artificial Intelligence",
        2021,
        "https://arxiv.org/abs/2012.03236",
    )
    default_cls = 1.0
    default_div = 1.0
    default_beta = 400.0
    needs_student_features = True
    needs_teacher_features = True

    def __init__(
        self,
        batch_size: int,
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        soft: float = 1.0,
        factor: int = 4,
    ) -> None:
        super().__init__()
        self.batch_size = int(batch_size)
        self.soft = float(soft)
        embed_dim = self.batch_size // factor
        self.query = nn.ModuleList(MLPEmbed(self.batch_size, embed_dim) for _ in student_channels)
        self.key = nn.ModuleList(MLPEmbed(self.batch_size, embed_dim) for _ in teacher_channels)
        self.regressor = nn.ModuleList(
            nn.ModuleList(Proj(c_s, c_t) for c_t in teacher_channels) for c_s in student_channels
        )

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "SemCKD":
        """One query per student stage map, one key per teacher stage map, one regressor per (i, j) pair."""
        pixels = example_pixels(student, example_batch, cls.name)
        student_maps = stage_maps(probe_features(student, pixels))
        teacher_maps = stage_maps(probe_features(teacher, pixels))
        require_maps(student_maps, "student", cls.name, "the stage outputs feats[1:-1]")
        require_maps(teacher_maps, "teacher", cls.name, "the stage outputs feats[1:-1]")
        if not student_maps or not teacher_maps:
            raise IncompatibleSetupError(
                "semckd needs at least one stage map feats[1:-1] from both the student and the teacher, but one of "
                "them has none; use models with stage outputs (every CIFAR zoo model) or a logit-based method (kd)"
            )
        batch_size = int(config.per_device_train_batch_size)
        if batch_size < 4:
            raise IncompatibleSetupError(
                f"semckd embeds rows of the B x B sample-similarity matrix into B//4 dimensions, so "
                f"per_device_train_batch_size must be at least 4, not {batch_size}"
            )
        return cls(batch_size, [s[0] for s in student_maps], [s[0] for s in teacher_maps])

    def _embed(self, embeds: nn.ModuleList, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[B', len(maps), B//4]``: each map's B' x B' similarity rows, zero-padded to B, embedded; fp32."""
        pad = self.batch_size - maps[0].shape[0]
        with full_precision(maps[0]):
            rows = []
            for embed, feature in zip(embeds, maps):
                rows.append(embed(F.pad(sample_similarity(feature), (0, pad))))
            return torch.stack(rows, dim=1)

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """``sum_{b,i,j} alpha[b,i,j] * mean_{C,H,W}(value - target)^2 / (B' * s_len)`` (spec 2.7)."""
        student_maps, teacher_maps = stage_maps(student_out.feats), stage_maps(teacher_out.feats)
        size = student_maps[0].shape[0]
        if size > self.batch_size:
            raise IncompatibleSetupError(
                f"semckd was built for batches of at most per_device_train_batch_size={self.batch_size} samples but "
                f"got a batch of {size}; set per_device_train_batch_size to the largest per-device batch it will see"
            )
        queries = self._embed(self.query, student_maps)  # [B', s_len, d]
        keys = self._embed(self.key, teacher_maps)  # [B', t_len, d]
        with full_precision(queries):
            attention = torch.softmax(queries @ keys.transpose(1, 2) / self.soft, dim=-1)  # [B', s_len, t_len]
        losses = []
        for regressors, student_map in zip(self.regressor, student_maps):
            row = []
            for regressor, teacher_map in zip(regressors, teacher_maps):
                source, target = align_spatial(student_map, teacher_map)
                value = regressor(source)
                row.append((value.float() - target.float()).pow(2).flatten(1).mean(dim=1))
            losses.append(torch.stack(row, dim=1))
        per_pair = torch.stack(losses, dim=1)  # [B', s_len, t_len]
        return {"semckd": (attention * per_pair).sum() / (size * len(student_maps))}
