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
from .models import HfkdConfig, HfkdForImageClassification, TransformersFeatureClassifier, provenance_of
from .models.modeling_hfkd import TRANSFORMERS_ARCHITECTURE


def _architecture_of(student: nn.Module) -> tuple[str, dict | None, nn.Module]:
    """(architecture id, constructor kwargs, the architecture module) of a student however it was created."""
    if isinstance(student, HfkdForImageClassification):
        return student.config.architecture, student.config.architecture_kwargs, student.model
    if isinstance(student, TransformersFeatureClassifier):
        return TRANSFORMERS_ARCHITECTURE, {"config": student.model.config.to_dict()}, student
    provenance = provenance_of(student)
    if provenance is None or provenance.architecture is None:
        raise ValueError(
            f"cannot export a {type(student).__name__}: build students with hfkd.models.create_model so that their "
            f"architecture is recorded"
        )
    return provenance.architecture, provenance.architecture_kwargs, student


def build_export_model(
    model: DistillationModel, class_names: list[str] | None = None, distillation: dict[str, Any] | None = None
) -> HfkdForImageClassification:
    """The student wrapped as ``HfkdForImageClassification`` (sharing its weights, nothing copied).

    A method that predicts with its own head (SimKD) hands it over through ``export_head()``: its config goes into
    ``HfkdConfig.prediction_head`` and the module (shared, not copied) into the export model. No other method module
    is exported. A student that was itself loaded from an export with a head keeps that head.
    """
    architecture, kwargs, module = _architecture_of(model.student)
    exported_head = model.method.export_head() if model.method is not None else None
    student = model.student
    if exported_head is None and isinstance(student, HfkdForImageClassification) and student.head is not None:
        # a student loaded from a SimKD export keeps predicting with its head
        exported_head = (student.config.prediction_head, student.head)
    head_config, head = exported_head if exported_head is not None else (None, None)
    names = _class_names(class_names, module.num_classes)
    config = HfkdConfig(
        architecture=architecture,
        architecture_kwargs=kwargs,
        image_size=model.image_size,
        id2label={i: name for i, name in enumerate(names)},
        label2id={name: i for i, name in enumerate(names)},
        prediction_head=head_config,
        distillation=distillation,
    )
    return HfkdForImageClassification(config, model=module, head=head)


def _class_names(names: list[str] | None, num_classes: int) -> list[str]:
    names = names if names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a model with {num_classes} classes")
    return names


def export_native_transformers(
    student: TransformersFeatureClassifier, output_dir: Path, class_names: list[str] | None, distillation: dict | None
) -> None:
    """A transformers student without a method head is saved as itself: it loads without hfkd or remote code."""
    model = student.model
    names = _class_names(class_names, student.num_classes)
    model.config.id2label = {i: name for i, name in enumerate(names)}
    model.config.label2id = {name: i for i, name in enumerate(names)}
    model.config.hfkd_distillation = distillation
    model.save_pretrained(output_dir)


def export_student(
    model: DistillationModel,
    output_dir: str | Path,
    class_names: list[str] | None = None,
    image_processor=None,
    distillation: dict[str, Any] | None = None,
) -> Path:
    """Save the student (``config.json`` + ``model.safetensors``) and its image processor to ``output_dir``."""
    output_dir = Path(output_dir)
    has_head = model.method is not None and model.method.export_head() is not None
    if isinstance(model.student, TransformersFeatureClassifier) and not has_head:
        export_native_transformers(model.student, output_dir, class_names, distillation)
    else:
        build_export_model(model, class_names, distillation).save_pretrained(output_dir)
    if image_processor is not None:
        image_processor.save_pretrained(output_dir)
    return output_dir


def distillation_record(model: DistillationModel, method: str, teacher_source: str | None, log_history: list) -> dict:
    """How the student was made and how well it does: stored as ``distillation`` in the export's config.json."""
    from .results import summarize_evaluations

    weights = model.weights
    return {
        "method": method,
        "teacher": teacher_source,
        "cls": weights.cls,
        "div": weights.div,
        "beta": weights.beta,
        "kd_temperature": weights.kd_temperature,
        "results": summarize_evaluations(log_history),
    }
