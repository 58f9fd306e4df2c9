"""Writing a trained student as a clean ``from_pretrained``-loadable model directory (DESIGN.md, "Export").

The directory holds only what inference needs: ``config.json``, ``model.safetensors`` and, when known, the
evaluation preprocessing (``preprocessor_config.json``, or inside a timm checkpoint's ``config.json``). Method state
(CRD memory, projectors used only in training) and optimizer state stay in the checkpoints.

Three formats (:func:`export_format`): a transformers or a timm student whose method adds no prediction head is saved
as its library's own checkpoint, which loads without hfkd; anything else (zoo students, SimKD's head) as
``HfkdForImageClassification`` with its model code.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .distillation_model import DistillationModel
from .models import (
    HfkdConfig,
    HfkdForImageClassification,
    TimmFeatureClassifier,
    TransformersFeatureClassifier,
    provenance_of,
)
from .models.modeling_hfkd import TRANSFORMERS_ARCHITECTURE
from .models.preprocessing import timm_data_config

# the values of export_format: saved as a transformers model, as a timm checkpoint, or as HfkdForImageClassification
NATIVE_TRANSFORMERS, NATIVE_TIMM, HFKD_FORMAT = "transformers", "timm", "hfkd"


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


def _timm_model_of(student: nn.Module) -> TimmFeatureClassifier | None:
    """The timm model a student predicts with alone: a timm student, or an hfkd export of one without a head."""
    if isinstance(student, TimmFeatureClassifier):
        return student
    if isinstance(student, HfkdForImageClassification) and student.head is None:
        return student.model if isinstance(student.model, TimmFeatureClassifier) else None
    return None


def export_format(model: DistillationModel) -> str:
    """How :func:`export_student` saves ``model``'s student: ``NATIVE_TRANSFORMERS`` / ``NATIVE_TIMM`` (the
    library's own checkpoint) for a transformers / timm student whose method adds no prediction head (a DeiT with a
    distillation token included: its own model keeps both heads and averages them), else ``HFKD_FORMAT`` (a zoo
    student, SimKD's projector + teacher head, a student loaded from such an export)."""
    if model.method is not None and model.method.export_head() is not None:
        return HFKD_FORMAT
    if isinstance(model.student, TransformersFeatureClassifier):
        return NATIVE_TRANSFORMERS
    return NATIVE_TIMM if _timm_model_of(model.student) is not None else HFKD_FORMAT


def export_native_timm(
    student: TimmFeatureClassifier,
    output_dir: Path,
    class_names: list[str] | None,
    distillation: dict | None,
    data_config: dict | None,
) -> None:
    """A timm student without a method head is saved as a timm checkpoint, by timm's own ``save_for_hf``.

    ``config.json`` holds ``architecture``, ``num_classes``, ``num_features``, ``label_names`` (the class names),
    ``pretrained_cfg`` with the evaluation preprocessing ``data_config`` (``input_size``, ``mean``, ``std``,
    ``interpolation``, ``crop_pct``, ``crop_mode``) and the distillation record as ``hfkd_distillation``;
    ``model.safetensors`` holds timm's own state-dict keys. It loads without hfkd, with
    ``timm.create_model("local-dir:<dir>")`` / ``("hf-hub:<repo>", pretrained=True)``, and in transformers as
    ``TimmWrapperForImageClassification`` (``AutoModelForImageClassification``, ``pipeline``), whose image
    processor reads ``pretrained_cfg``. Raises ``ValueError`` when ``class_names`` do not match the class count.
    """
    from timm.models import save_for_hf

    names = _class_names(class_names, student.num_classes)
    model = student.model
    if any(not tensor.is_contiguous() for tensor in model.state_dict().values()):
        # a channels_last student (speed_settings): safetensors stores contiguous tensors only; save a copy
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    save_for_hf(model, str(output_dir), model_config={"label_names": names, "hfkd_distillation": distillation},
                safe_serialization=True, data_config=data_config)
    _without_num_classes_in_model_args(output_dir / "config.json")


def _without_num_classes_in_model_args(config_path: Path) -> None:
    """Drop ``num_classes`` from ``model_args`` in a timm ``config.json``, so that transformers can load it.

    timm 1.0.31 records it there as well as at the root; transformers 5's ``TimmWrapperForImageClassification``
    passes ``num_classes=config.num_labels`` and ``**model_args`` to ``timm.create_model`` and fails ("got multiple
    values for keyword argument 'num_classes'"). timm reads the root ``num_classes`` when ``model_args`` lacks it.
    """
    config = json.loads(config_path.read_text())
    model_args = config.get("model_args") or {}
    if "num_classes" not in model_args:
        return
    del model_args["num_classes"]
    if not model_args:
        del config["model_args"]
    config_path.write_text(json.dumps(config, indent=2))


def export_student(
    model: DistillationModel,
    output_dir: str | Path,
    class_names: list[str] | None = None,
    image_processor=None,
    distillation: dict[str, Any] | None = None,
) -> Path:
    """Save the student (``config.json`` + ``model.safetensors``) and its evaluation preprocessing to ``output_dir``.

    ``image_processor`` (the transformers processor of hfkd's evaluation) is saved beside a transformers or hfkd
    export; a timm checkpoint carries it in its ``pretrained_cfg`` instead (a ``preprocessor_config.json`` beside it
    would win over that in transformers' Hub loading but not in its local loading or in timm). Without a processor a
    timm checkpoint declares the trained input size and its architecture's own mean / std.
    """
    output_dir = Path(output_dir)
    chosen = export_format(model)
    if chosen == NATIVE_TIMM:
        data_config = timm_data_config(image_processor) if image_processor is not None else None
        side = model.image_size
        data_config = data_config or {"input_size": (3, side, side), "crop_pct": 1.0, "crop_mode": "squash"}
        export_native_timm(_timm_model_of(model.student), output_dir, class_names, distillation, data_config)
        return output_dir
    if chosen == NATIVE_TRANSFORMERS:
        export_native_transformers(model.student, output_dir, class_names, distillation)
    else:
        build_export_model(model, class_names, distillation).save_pretrained(output_dir)
    if image_processor is not None:
        image_processor.save_pretrained(output_dir)
    return output_dir


def distillation_record(model: DistillationModel, method: str, teacher_source: str | None, log_history: list) -> dict:
    """How the student was made and how well it does: stored in the export's config.json, as ``distillation`` in an
    hfkd export and as ``hfkd_distillation`` in a native transformers or timm one."""
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
