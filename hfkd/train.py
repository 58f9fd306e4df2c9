"""Train a recipe's stages: ``hfkd train recipe.yaml [--key value ...]`` (``accelerate launch hfkd/run.py`` runs this).

recipe -> data, student, teacher -> DistillationTrainer (method, loss) -> train + evaluate -> export -> results.
"""

from __future__ import annotations

import sys
from pathlib import Path

import json
import logging
import os

import torch

from transformers import set_seed

from hfkd.checkpoints import is_complete, latest_complete_checkpoint
from hfkd.data import load_splits, prepare_datasets
from hfkd.errors import HfkdError, HubError, IncompatibleSetupError, RecipeError
from hfkd.methods import NO_DISTILLATION
from hfkd.models import create_model
from hfkd.models.input_adapter import adapt_teacher_inputs
from hfkd.models.preprocessing import Preprocessing
from hfkd.model_card import ModelCardContext
from hfkd.recipe import RunSpec, load_recipe, resolved_recipe, write_resolved_recipe
from hfkd.results import summarize_evaluations, write_results
from hfkd.trainer import DistillationTrainer

logger = logging.getLogger("hfkd")


def _resume_target(args) -> str | bool | None:
    """``resume_from_checkpoint``: a path, or true for the latest checkpoint in output_dir."""
    value = args.resume_from_checkpoint
    if value is None or str(value).lower() in ("false", "none", ""):
        return None
    if str(value).lower() == "true":
        latest = latest_complete_checkpoint(args.output_dir)
        if latest is None:
            raise RecipeError(
                f"resume_from_checkpoint is true but {args.output_dir!r} holds no complete checkpoint-* folder"
            )
        return str(latest)
    if not Path(value).is_dir():
        raise RecipeError(f"resume_from_checkpoint {value!r} is not a checkpoint directory")
    if not is_complete(value):
        raise RecipeError(
            f"checkpoint {value!r} is incomplete (the run was stopped while saving it); resume from an earlier one "
            f"or with --resume_from_checkpoint true"
        )
    return value


def _check_output_dir(args, resuming: bool) -> None:
    """Never overwrite a finished or interrupted run unless asked to."""
    output_dir = Path(args.output_dir)
    if resuming or args.overwrite_output_dir or not output_dir.is_dir():
        return
    previous = [p.name for p in output_dir.iterdir() if p.name in ("model.safetensors", "config.json")]
    previous += [p.name for p in output_dir.glob("checkpoint-*")]
    if previous:
        raise RecipeError(
            f"output_dir {str(output_dir)!r} already holds a run ({', '.join(sorted(previous)[:3])}); resume it with "
            f"--resume_from_checkpoint true, pick another output_dir, or pass --overwrite_output_dir true"
        )


def _load_teacher(model_args, data):
    """The teacher, checked against the dataset and fed inputs normalised (and sized) the way it expects."""
    num_classes, dataset_name = data.num_classes, data.dataset_name
    teacher = create_model(
        model_args.teacher, arch=model_args.teacher_arch, trust_remote_code=model_args.trust_remote_code
    )
    teacher.hfkd_source = model_args.teacher
    teacher_classes = getattr(teacher, "num_classes", None)
    if teacher_classes is not None and int(teacher_classes) != num_classes:
        raise IncompatibleSetupError(
            f"the teacher {model_args.teacher!r} predicts {teacher_classes} classes but dataset {dataset_name!r} "
            f"has {num_classes}"
        )
    adapted = adapt_teacher_inputs(teacher, Preprocessing(data.mean, data.std, data.image_size))
    if adapted is not teacher:
        target = adapted.teacher.hfkd_preprocessing
        logger.warning(
            "the teacher expects inputs normalised with mean %s, std %s%s; hfkd re-normalises the student's batches "
            "for it", target.mean, target.std, f" at {target.size}x{target.size} pixels" if adapted.size else ""
        )
    return adapted


def _set_cpu_threads(args) -> None:
    """Use this process's share of the CPU cores when training on the CPU (see ``cpu_threads``)."""
    if args.device.type != "cpu":
        return
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    threads = args.cpu_threads or max(1, len(os.sched_getaffinity(0)) // local_processes)
    torch.set_num_threads(threads)


def _teacher_accuracy(teacher) -> tuple[float | None, str | None]:
    """The teacher's own top-1, when its source records one (an hfkd export, a reference checkpoint)."""
    inner = getattr(teacher, "teacher", teacher)  # through a TeacherInputAdapter
    config = getattr(inner, "config", None)
    results = ((getattr(config, "distillation", None) or {}).get("results") or {}) if config is not None else {}
    if results.get("top1_last") is not None:
        return float(results["top1_last"]), "last epoch, from its hfkd export"
    accuracy = (getattr(inner, "checkpoint_info", None) or {}).get("accuracy")
    if accuracy is not None:
        return float(accuracy), "as stored in its reference checkpoint"
    return None, None


def _card_context(run: RunSpec, splits, teacher, earlier: list[dict]) -> ModelCardContext:
    teacher_top1, source = _teacher_accuracy(teacher) if teacher is not None else (None, None)
    teacher_dir = Path(run.model_args.teacher).resolve() if teacher is not None else None
    baselines = []
    for row in earlier:
        if row.get("top1_last") is None:
            continue
        is_teacher = teacher_dir is not None and Path(row["output_dir"]).resolve() == teacher_dir
        if is_teacher:  # the teacher's own stage has its full results: show that row instead of a bare top-1
            teacher_top1 = None
        role = "teacher" if is_teacher else f"stage {row['stage']}"
        baselines.append({"label": f"{role}: {row['student']} ({row['method']})", **row})
    return ModelCardContext(
        dataset_name=splits.name,
        train_split=splits.train_split,
        eval_split=splits.eval_split,
        student_name=run.model_args.model_name_or_path,
        teacher_name=run.model_args.teacher if teacher is not None else None,
        teacher_top1=teacher_top1,
        teacher_top1_source=source,
        baselines=baselines,
    )


def _push_at_end(trainer: DistillationTrainer) -> None:
    """The final push (export, card, records); a failure keeps every local file and says how to retry."""
    repo = trainer.hub_model_id or trainer.args.hub_model_id
    try:
        trainer.push_to_hub(commit_message="End of training")
    except Exception as err:  # huggingface_hub raises HTTP, connection and validation errors
        text = str(err).strip()
        raise HubError(
            f"training finished but pushing {trainer.args.output_dir!r} to the Hub repo {repo!r} failed "
            f"({text.splitlines()[0] if text else type(err).__name__}); the run's files are intact, retry with: "
            f"hfkd push {trainer.args.output_dir} --hub_model_id {repo}"
        ) from err


def run_stage(run: RunSpec, earlier: list[dict] | None = None) -> dict:
    """Train one run of a recipe; ``earlier`` are the results rows of the recipe's earlier stages (for the card)."""
    model_args, data_args, args = run.model_args, run.data_args, run.training_args
    resume = _resume_target(args)
    _check_output_dir(args, resuming=resume is not None)
    set_seed(args.seed)  # before the student is built, so its initialisation follows the seed
    _set_cpu_threads(args)

    splits = load_splits(data_args, seed=args.seed)
    student = create_model(
        model_args.model_name_or_path, num_classes=len(splits.label_names), trust_remote_code=model_args.trust_remote_code
    )
    data = prepare_datasets(data_args, splits, model_preprocessing=getattr(student, "hfkd_preprocessing", None))
    student_classes = getattr(student, "num_classes", data.num_classes)
    if int(student_classes) != data.num_classes:
        raise IncompatibleSetupError(
            f"the student {model_args.model_name_or_path!r} predicts {student_classes} classes but dataset "
            f"{data.dataset_name!r} has {data.num_classes}"
        )
    teacher = None
    if args.method != NO_DISTILLATION:
        if model_args.teacher is None:
            raise RecipeError(f"method {args.method!r} needs a teacher; set 'teacher' in the recipe")
        teacher = _load_teacher(model_args, data)

    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=data.train_dataset,
        eval_dataset=data.eval_dataset,
        processing_class=data.image_processor(),
        class_names=data.label_names,
        card_context=_card_context(run, splits, teacher, earlier or []),
    )
    trainer.card_context.recipe = resolved_recipe(run)  # after the trainer resolved the method's default weights
    if trainer.is_world_process_zero():
        write_resolved_recipe(run)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()  # the clean export: config.json, model.safetensors, preprocessor_config.json
    trainer.create_model_card()  # README.md and training_curves.png
    summary = summarize_evaluations(trainer.state.log_history)
    row = {
        "stage": run.name,
        "student": model_args.model_name_or_path,
        "teacher": model_args.teacher if teacher is not None else None,
        "method": args.method,
        **summary,
        "output_dir": args.output_dir,
    }
    if trainer.is_world_process_zero():
        (Path(args.output_dir) / "results.json").write_text(json.dumps(row, indent=2))
        (Path(args.output_dir) / "history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    if args.push_to_hub:
        _push_at_end(trainer)
    trainer.accelerator.wait_for_everyone()  # a later stage may load this export as its teacher
    return row


def _quiet_loading_bars() -> None:
    """Keep the training progress bar; drop the per-file bars of dataset loading and model saving."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def run_recipe(path: str, overrides: list[str]) -> str | None:
    """Run every stage of a recipe; the main process writes results.md / results.json and gets the table."""
    from accelerate import PartialState

    recipe = load_recipe(path, overrides)
    rows: list[dict] = []
    for run in recipe.runs:
        rows.append(run_stage(run, earlier=rows))
    return write_results(rows, recipe.output_dir) if PartialState().is_main_process else None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    _quiet_loading_bars()
    try:
        table = run_recipe(argv[0], argv[1:])
    except HfkdError as err:
        print(f"hfkd: error: {err}", file=sys.stderr)
        return 2
    if table is not None:
        print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
