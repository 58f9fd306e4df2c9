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

from .checkpoints import check_checkpoint_files, is_complete, latest_complete_checkpoint
from .errors import IncompatibleSetupError, RecipeError
from .output_folder import check_output_dir, check_resumed_run
from .methods import NO_DISTILLATION
from .models import provenance_of
from .schedule import milestone_epochs

logger = logging.getLogger(__name__)

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
            raise RecipeError(
                f"resume_from_checkpoint is true but {output_dir!r} holds no complete checkpoint-* folder; to "
                f"train from the start, run without --resume_from_checkpoint and with --overwrite_output_dir true"
            )
        check_checkpoint_files(latest)
        return str(latest)
    if not Path(value).is_dir():
        raise RecipeError(f"resume_from_checkpoint {value!r} is not a checkpoint directory")
    if not is_complete(value):
        raise RecipeError(
            f"checkpoint {value!r} is incomplete (the run was stopped while saving it); resume from an earlier one "
            f"or with --resume_from_checkpoint true"
        )
    check_checkpoint_files(value)
    return str(value)


def check_run_target(model_args, args, resolved: dict | None = None) -> str | None:
    """The checks a recipe run passes before anything is loaded or written; returns the checkpoint to resume from,
    if any. ``resolved`` (the run's resolved recipe) is checked against the recipe of the run it resumes."""
    require_teacher(args.method, model_args.teacher is not None or model_args.teacher_cache is not None)
    resume = resume_target(args.output_dir, args.resume_from_checkpoint)
    check_output_dir(args.output_dir, args.overwrite_output_dir, resuming=resume is not None)
    if resume is not None and resolved is not None:
        check_resumed_run(args.output_dir, resolved)
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


def smallest_training_batch(num_examples: int, batch_size: int, world_size: int = 1, drop_last: bool = False,
                            even_batches: bool = True) -> int:
    """The fewest examples one process receives in a training batch of an epoch of ``num_examples``.

    One process: the last batch holds ``num_examples % batch_size`` (dropped with ``drop_last``). Several: the
    dataset is dealt out in per-process batches (accelerate's ``BatchSamplerShard``), and with ``even_batches`` (the
    default) the last round is completed from the start of the epoch, so each process gets ``batch_size``.
    """
    full, rest = divmod(num_examples, batch_size)
    if rest == 0 or drop_last:
        return batch_size if full else 0
    if world_size == 1:
        return rest
    if even_batches:
        return batch_size
    last_round = num_examples % (batch_size * world_size)  # dealt out batch_size at a time; some processes get less
    sizes = [min(batch_size, last_round - k * batch_size) for k in range(world_size)]
    return min([s for s in sizes if s > 0] or [batch_size])


def check_batch_sizes(args, num_examples: int) -> None:
    """No process trains on a batch of one example: BatchNorm (in most students and in SRRL's connector) cannot
    normalise one value per channel, and the relational losses (RKD, SP, CC, PKT, CRD) compare examples within a
    batch. Applies to every method and student alike, so the rule does not depend on the model; one sentence with
    the fix otherwise."""
    accelerator_config = getattr(args, "accelerator_config", None)
    even = getattr(accelerator_config, "even_batches", True) if accelerator_config is not None else True
    batch = args.per_device_train_batch_size
    smallest = smallest_training_batch(num_examples, batch, args.world_size, args.dataloader_drop_last, even)
    if smallest == 1:
        if batch == 1:
            raise RecipeError(
                "per_device_train_batch_size 1 gives batches of one example, which BatchNorm and the relational "
                "losses cannot train on; use 2 or more"
            )
        raise RecipeError(
            f"the last training batch of each epoch would hold 1 example ({num_examples} examples in batches of "
            f"{batch}), which BatchNorm and the relational losses cannot train on; set dataloader_drop_last: true or "
            f"another per_device_train_batch_size"
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
