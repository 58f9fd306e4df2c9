"""SimKD's prediction head: projector + the reused teacher classifier on the student's last feature map.

Chen et al., "Knowledge Distillation with the Reused Teacher Classifier", CVPR 2022 (spec 2.9). The same module
trains inside the ``simkd`` method and predicts in the exported student, which then needs no teacher at all (the
teacher's map size is stored at build time; spec 8.1). This file is shipped as remote code next to exported
models, so it imports only torch and sibling files.
"""

from __future__ import annotations

import torch
from torch import nn

from .spatial import align_spatial


class SimKDHead(nn.Module):
    """``classifier(global_avg_pool(transfer(align(student_map))))``.

    ``transfer`` is the reference bottleneck projector (keys ``transfer.{0,1,3,4,6,7}.*``): 1x1 conv C_s -> C_t//f,
    BN, ReLU, 3x3 conv C_t//f -> C_t//f, BN, ReLU, 1x1 conv C_t//f -> C_t, BN, ReLU; no conv has a bias and the init
    is PyTorch's default. ``classifier`` holds the teacher's Linear (frozen while training). ``target_size`` is the
    teacher's last map size: a larger student map is average-pooled to it (spec 1.2).
    """

    head_type = "simkd"

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        factor: int = 2,
        target_size: tuple[int, int] | list[int] = (1, 1),
    ) -> None:
        super().__init__()
        mid = teacher_channels // factor
        if mid < 1:
            raise ValueError(f"SimKD factor {factor} leaves no channels of the teacher's {teacher_channels}")
        self.student_channels = int(student_channels)
        self.teacher_channels = int(teacher_channels)
        self.num_classes = int(num_classes)
        self.factor = int(factor)
        self.target_size = (int(target_size[0]), int(target_size[1]))
        self.transfer = nn.Sequential(
            nn.Conv2d(student_channels, mid, kernel_size=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, teacher_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(teacher_channels),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(teacher_channels, num_classes)

    def align(self, student_map: torch.Tensor) -> torch.Tensor:
        """The student map average-pooled to the stored teacher size when it is larger (spec 1.2, no teacher run)."""
        # align_spatial reads only the teacher's spatial size from this 1-channel stand-in; its pooled stand-in
        # (when the student is the smaller map) is discarded
        stand_in = student_map.new_empty((1, 1, *self.target_size))
        return align_spatial(student_map, stand_in)[0]

    def project(self, source: torch.Tensor) -> torch.Tensor:
        """``transfer(source)``: the projected map, trained to match the (aligned) teacher map."""
        return self.transfer(source)

    def pool(self, projected: torch.Tensor) -> torch.Tensor:
        """Global average pool to ``[B, C_t]``, the vector the teacher's classifier consumes."""
        return projected.mean(dim=(2, 3))

    def forward_pooled(self, student_map: torch.Tensor) -> torch.Tensor:
        """The pooled projected feature ``[B, C_t]`` that ``classifier`` maps to the logits."""
        return self.pool(self.project(self.align(student_map)))

    def forward(self, student_map: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` from the student's last feature map ``[B, C_s, H, W]``."""
        return self.classifier(self.forward_pooled(student_map))

    def head_config(self) -> dict:
        """The constructor arguments plus ``type``, stored in ``HfkdConfig.prediction_head`` of the export."""
        return {
            "type": self.head_type,
            "student_channels": self.student_channels,
            "teacher_channels": self.teacher_channels,
            "num_classes": self.num_classes,
            "factor": self.factor,
            "target_size": list(self.target_size),
        }
