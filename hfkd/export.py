"""Writing a trained student as a clean ``from_pretrained``-loadable model directory (DESIGN.md, "Export").

The directory holds only what inference needs: ``config.json``, ``model.safetensors`` and, when known,
``preprocessor_config.json``. Method state (CRD memory, projectors used only in training) and optimizer state
stay in the checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .distillation_model import DistillationModel
from .models import HfkdConfig, HfkdForImageClassification


def _architecture_of(student: nn.Module) -> tuple[str, dict | None, nn.Module]:
    """(architecture id, constructor kwargs, the architecture module) of a student however it was created."""
    if isinstance(student, HfkdForImageClassification):
        return student.config.architecture, student.config.architecture_kwargs, student.model
    architecture = getattr(student, "hfkd_architecture", None)
    if architecture is None:
        raise ValueError(
            f"cannot export a {type(student).__name__}: build students with hfkd.models.create_model so that their "
            f"architecture is recorded"
        )
    return architecture, getattr(student, "hfkd_architecture_kwargs", None), student


def build_export_model(
    model: DistillationModel, class_names: list[str] | None = None, distillation: dict[str, Any] | None = None
) -> HfkdForImageClassification:
    """The student wrapped as ``HfkdForImageClassification`` (sharing its weights, nothing copied)."""
    architecture, kwargs, module = _architecture_of(model.student)
    num_classes = module.num_classes
    names = class_names if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a model with {num_classes} classes")
    config = HfkdConfig(
        architecture=architecture,
        architecture_kwargs=kwargs,
        image_size=getattr(model, "image_size", 32),
        id2label={i: name for i, name in enumerate(names)},
        label2id={name: i for i, name in enumerate(names)},
        distillation=distillation,
    )
    return HfkdForImageClassification(config, model=module)


def export_student(
    model: DistillationModel,
    output_dir: str | Path,
    class_names: list[str] | None = None,
    image_processor=None,
    distillation: dict[str, Any] | None = None,
) -> Path:
    """Save the student (``config.json`` + ``model.safetensors``) and its image processor to ``output_dir``."""
    output_dir = Path(output_dir)
    export = build_export_model(model, class_names, distillation)
    export.save_pretrained(output_dir)
    if image_processor is not None:
        image_processor.save_pretrained(output_dir)
    return output_dir
