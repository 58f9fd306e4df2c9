"""Feeding a teacher the inputs it was trained on when the student's data are normalised (or sized) otherwise."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .input_size import required_input_size
from .preprocessing import Preprocessing
from .provenance import attach_provenance, provenance_of


class TeacherInputAdapter(nn.Module):
    """Re-normalises (and, when the teacher declares another input size, bilinearly resizes) the student's batch.

    ``target`` is the preprocessing the teacher is fed (its declared statistics and size).

    ``x_teacher = ((x * std_s + mean_s) - mean_t) / std_t``: the student-normalised pixels are mapped back to
    [0, 1] and normalised with the teacher's statistics (timm's distillation task does the same). Everything else
    (``classifier``, ``num_classes``, features) is the wrapped teacher's.
    """

    def __init__(self, teacher: nn.Module, student: Preprocessing, target: Preprocessing) -> None:
        super().__init__()
        self.teacher = teacher
        s_mean, s_std = torch.tensor(student.mean), torch.tensor(student.std)
        t_mean, t_std = torch.tensor(target.mean), torch.tensor(target.std)
        # x_t = x * scale + shift, per channel
        self.register_buffer("scale", (s_std / t_std).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", ((s_mean - t_mean) / t_std).view(1, -1, 1, 1), persistent=False)
        self.size = target.size if target.size is not None and target.size != student.size else None
        self.target = target

    @property
    def classifier(self) -> nn.Module:
        return self.teacher.classifier

    @property
    def num_classes(self) -> int:
        return self.teacher.num_classes

    def forward(self, pixel_values: torch.Tensor, return_features: bool = False):
        x = pixel_values * self.scale.to(pixel_values.dtype) + self.shift.to(pixel_values.dtype)
        if self.size is not None:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self.teacher(x, return_features=return_features)


def adapt_teacher_inputs(teacher: nn.Module, student: Preprocessing) -> nn.Module:
    """Wrap ``teacher`` in a TeacherInputAdapter when the preprocessing it declares differs from the student's.

    A teacher that declares nothing (a zoo model, a reference .pth) is assumed to share the student's inputs, but
    for the input size its patch embedding requires (a ViT built from a config alone), which it is resized to. The
    adapter carries the teacher's provenance record.
    """
    provenance = provenance_of(teacher)
    declared = provenance.preprocessing if provenance is not None else None
    required = required_input_size(teacher)
    if required is not None and (declared is None or declared.size != required):
        declared = Preprocessing(*(declared.mean, declared.std) if declared else (student.mean, student.std), required)
    if declared is None or not declared.differs_from(student.mean, student.std, student.size):
        return teacher
    adapter = TeacherInputAdapter(teacher, student, declared)
    return attach_provenance(adapter, provenance) if provenance is not None else adapter
