"""The checks a run passes before anything trains, each written once.

Recipe runs call :func:`check_run_target` before any data or model is loaded (where the run writes, what it resumes,
whether it names a teacher) and the trainer calls :func:`check_models` once the models exist (teacher present, class
counts of student, teacher and dataset). Each failure is one sentence naming the bad value and what would work.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from torch import nn

from .checkpoints import is_complete, latest_complete_checkpoint
from .errors import IncompatibleSetupError, RecipeError
from .methods import NO_DISTILLATION
from .models import provenance_of
from .schedule import milestone_epochs

logger = logging.getLogger(__name__)

# files whose presence means output_dir already holds a run (an export or a checkpoint)
RUN_MARKERS = ("model.safetensors", "config.json")


def require_teacher(method: str, has_teacher: bool) -> None:
    """Every method but ``none`` distils from a teacher."""
    if method != NO_DISTILLATION and not has_teacher:
        raise RecipeError(f"method {method!r} needs a teacher; set 'teacher' in the recipe")


def resume_target(output_dir: str, value: str | bool | None) -> str | None:
    """The checkpoint folder ``resume_from_checkpoint`` names: None, a path, or true for the newest *complete*
    checkpoint in ``output_dir`` (transformers would take the newest folder even when a kill interrupted its save)."""
    if value is None or value is False or str(value).lower() in ("false", "none", ""):
        return None
    if value is True or str(value).lower() == "true":
        latest = latest_complete_checkpoint(output_dir)
        if latest is None:
            raise RecipeError(f"resume_from_checkpoint is true but {output_dir!r} holds no complete checkpoint-* folder")
        return str(latest)
    if not Path(value).is_dir():
        raise RecipeError(f"resume_from_checkpoint {value!r} is not a checkpoint directory")
    if not is_complete(value):
        raise RecipeError(
            f"checkpoint {value!r} is incomplete (the run was stopped while saving it); resume from an earlier one "
            f"or with --resume_from_checkpoint true"
        )
    return str(value)


def check_output_dir(output_dir: str, overwrite: bool, resuming: bool) -> None:
    """Never train over a finished or interrupted run unless asked to resume it or to overwrite it."""
    folder = Path(output_dir)
    if resuming or overwrite or not folder.is_dir():
        return
    previous = [p.name for p in folder.iterdir() if p.name in RUN_MARKERS] + [p.name for p in folder.glob("checkpoint-*")]
    if previous:
        raise RecipeError(
            f"output_dir {str(folder)!r} already holds a run ({', '.join(sorted(previous)[:3])}); resume it with "
            f"--resume_from_checkpoint true, pick another output_dir, or pass --overwrite_output_dir true"
        )


def check_run_target(model_args, args) -> str | None:
    """The checks a recipe run passes before anything is loaded; returns the checkpoint to resume from, if any."""
    require_teacher(args.method, model_args.teacher is not None)
    resume = resume_target(args.output_dir, args.resume_from_checkpoint)
    check_output_dir(args.output_dir, args.overwrite_output_dir, resuming=resume is not None)
    return resume


def class_count(model: nn.Module) -> int | None:
    count = getattr(model, "num_classes", None)
    return int(count) if count is not None else None


def _named(role: str, model: nn.Module) -> str:
    provenance = provenance_of(model)
    return f"the {role} {provenance.source!r}" if provenance is not None and provenance.source else f"the {role}"


def check_models(
    method: str,
    student: nn.Module,
    teacher: nn.Module | None,
    class_names: list[str] | None = None,
    dataset_name: str | None = None,
) -> None:
    """The teacher a method needs is there, and student, teacher and dataset agree on the class count.

    ``class_names`` (the dataset's labels, when known) make the dataset the reference the models are checked
    against; otherwise the teacher is checked against the student. Raises ``RecipeError`` or
    ``IncompatibleSetupError``.
    """
    require_teacher(method, teacher is not None)
    models = [("student", student)] + ([("teacher", teacher)] if teacher is not None and method != NO_DISTILLATION else [])
    if class_names is not None:
        for role, model in models:
            count = class_count(model)
            if count is not None and count != len(class_names):
                raise IncompatibleSetupError(
                    f"{_named(role, model)} predicts {count} classes but dataset {dataset_name!r} has {len(class_names)}"
                )
        return
    student_classes = class_count(student)
    teacher_classes = class_count(teacher) if len(models) == 2 else None
    if None not in (student_classes, teacher_classes) and student_classes != teacher_classes:
        raise IncompatibleSetupError(
            f"the teacher predicts {teacher_classes} classes but the student {student_classes}; they must agree"
        )


def warn_about_schedule(args) -> None:
    """One warning when epoch milestones lie at or past the run's last epoch, so the learning rate would not decay
    there (a run shortened from the reference's 240 epochs that kept the default [150, 180, 210]); a user may mean
    it, so it is not an error."""
    if not args.lr_decay_epochs or args.max_steps > 0:
        return
    milestones = milestone_epochs(args.lr_decay_epochs, args.num_train_epochs)
    late = [m for m in milestones if m >= args.num_train_epochs]
    if late:
        logger.warning(
            "lr_decay_epochs %s lie at or past the run's last epoch (%g), so the learning rate never decays there; "
            "give them as fractions of the run to keep the reference's shape, e.g. [0.625, 0.75, 0.875]",
            late, args.num_train_epochs,
        )


# report_to value -> (the module transformers needs for it, the hfkd extra that installs it)
REPORT_TO_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "trackio": ("trackio", "trackio"),
}


def check_report_to(report_to: list[str] | str | None) -> None:
    """Every logging integration ``report_to`` names is installed; else one sentence naming the extra to install."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    for name in names:
        module, extra = REPORT_TO_PACKAGES.get(name, (None, None))
        if module is not None and importlib.util.find_spec(module) is None:
            raise RecipeError(
                f"report_to {name} needs the {module} package, which is not installed; pip install 'hfkd[{extra}]' "
                f"(or drop {name} from report_to)"
            )


def check_data_for_method(method: str, streamed: bool, mixed: bool) -> None:
    """A method that needs dataset indices and size (CRD) cannot train on a streamed set, nor one that needs
    class-index labels (DKD) on Mixup / CutMix batches, whose labels are mixed targets."""
    from .methods import METHODS

    kind = METHODS.get(method)
    if kind is None:
        return
    if streamed and kind.needs_dataset_indices:
        raise IncompatibleSetupError(
            f"method {method!r} needs example indices and the training-set size, which a streamed dataset does not "
            f"have; set streaming: false"
        )
    if mixed and kind.needs_hard_labels:
        raise IncompatibleSetupError(
            f"method {method!r} needs class-index labels, but mixup_alpha / cutmix_alpha mix them; set both to 0 or "
            f"choose another method"
        )
