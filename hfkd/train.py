"""Train a recipe's stages: ``hfkd train recipe.yaml [--key value ...]`` (``accelerate launch hfkd/run.py`` runs this).

Per stage: set-up checks -> data, student, teacher -> loss weights resolved -> resolved recipe written ->
DistillationTrainer (train + evaluate) -> export, model card, results.json -> push. The stage table of the whole
recipe is printed at the end and written to ``results.md`` / ``results.json`` in the recipe's output folder.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from torch import nn
from transformers import TrainerCallback, set_seed

from .checkpoints import latest_complete_checkpoint
from .data import load_splits, prepare_datasets
from .distillation_model import resolve_loss_weights
from .errors import HfkdError, describe_os_error
from .hub import push_at_end
from .launch import set_cpu_threads
from .methods import NO_DISTILLATION
from .model_card import ModelCardContext
from .output_folder import check_output_dir, finished_results
from .models import Preprocessing, adapt_teacher_inputs, create_model, provenance_of, required_input_size
from .recipe import RunSpec, load_recipe, resolved_recipe, write_resolved_recipe
from .results import summarize_evaluations, write_results
from .setup_checks import check_run_target
from .teacher_cache import open_teacher_cache
from .trainer import DistillationTrainer

logger = logging.getLogger(__name__)


def load_teacher(model_args, data) -> nn.Module:
    """The recipe's teacher, fed inputs normalised (and sized) the way it declares it expects them."""
    teacher = create_model(model_args.teacher, arch=model_args.teacher_arch,
                           trust_remote_code=model_args.trust_remote_code)
    adapted = adapt_teacher_inputs(teacher, Preprocessing(data.mean, data.std, data.image_size))
    if adapted is not teacher:
        target = adapted.target
        logger.warning(
            "the teacher expects inputs normalised with mean %s, std %s%s; hfkd re-normalises the student's batches "
            "for it", target.mean, target.std, f" at {target.size}x{target.size} pixels" if adapted.size else ""
        )
    return adapted


def recorded_teacher_accuracy(teacher: nn.Module) -> tuple[float | None, str | None]:
    """The teacher's own top-1 (%) and where it comes from, when its source records one (an hfkd export's last
    epoch, in any export format; a reference checkpoint's stored accuracy); (None, None) otherwise."""
    provenance = provenance_of(teacher)
    if provenance is None:
        return None, None
    results = (provenance.distillation or {}).get("results") or {}
    if results.get("top1_last") is not None:
        return float(results["top1_last"]), "last epoch, from its hfkd export"
    if provenance.checkpoint is not None and provenance.checkpoint.accuracy is not None:
        return float(provenance.checkpoint.accuracy), "as stored in its reference checkpoint"
    return None, None


def teacher_source(run: RunSpec, teacher: nn.Module | None) -> str | None:
    """The teacher's name: the recipe's ``teacher``, else (a run from a teacher cache) the cache's teacher."""
    if teacher is None:
        return None
    return run.model_args.teacher or provenance_of(teacher).source


def card_context(run: RunSpec, splits, teacher: nn.Module | None, earlier: list[dict], recipe: dict) -> ModelCardContext:
    """What the model card knows from outside the model: data, sources, the resolved recipe and the earlier stages
    (the teacher's own stage, when it is one, marked so that the card shows the teacher once)."""
    teacher_top1, source = recorded_teacher_accuracy(teacher) if teacher is not None else (None, None)
    teacher_name = teacher_source(run, teacher)
    teacher_dir = Path(teacher_name).resolve() if teacher_name is not None else None
    baselines = []
    for row in earlier:
        if row.get("top1_last") is None:
            continue
        is_teacher = teacher_dir is not None and Path(row["output_dir"]).resolve() == teacher_dir
        role = "teacher" if is_teacher else f"stage {row['stage']}"
        baselines.append({"label": f"{role}: {row['student']} ({row['method']})", "is_teacher": is_teacher, **row})
    return ModelCardContext(
        dataset_name=splits.name,
        train_split=splits.train_split,
        eval_split=splits.eval_split,
        student_name=run.model_args.model_name_or_path,
        teacher_name=teacher_name,
        teacher_top1=teacher_top1,
        teacher_top1_source=source,
        recipe=recipe,
        baselines=baselines,
        hardware=run.launch.describe(run.values),
    )


class WriteResolvedRecipe(TrainerCallback):
    """Writes the run's ``recipe.yaml`` when training begins: after a resumed checkpoint has loaded, so a run that
    fails to resume leaves the folder as it was."""

    def __init__(self, run: RunSpec, weights) -> None:
        self.run, self.weights = run, weights

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_resolved_recipe(self.run, loss_weights=self.weights)


def prepare_stage_data(run: RunSpec):
    """The run's splits, its student (its declared preprocessing picks the normalisation) and its prepared data
    (``PreparedData``): the training views every stage, and ``hfkd cache-teacher``, computes the teacher on."""
    model_args, data_args = run.model_args, run.data_args
    splits = load_splits(data_args, seed=run.training_args.seed)
    student = create_model(
        model_args.model_name_or_path, num_classes=len(splits.label_names), trust_remote_code=model_args.trust_remote_code
    )
    declared = provenance_of(student).preprocessing
    data = prepare_datasets(data_args, splits, model_preprocessing=declared, seed=run.training_args.seed,
                            model_input_size=required_input_size(student))
    return splits, student, data


def run_stage(run: RunSpec, earlier: list[dict] | None = None) -> dict:
    """Train one run of a recipe; ``earlier`` are the results rows of the recipe's earlier stages (for the card)."""
    model_args, args = run.model_args, run.training_args
    weights = resolve_loss_weights(args)
    resume = check_run_target(model_args, args, resolved_recipe(run, weights))
    set_seed(args.seed)  # before the student is built, so its initialisation follows the seed
    set_cpu_threads(args)
    if args.process_index == 0:
        print(f"hfkd: stage {run.name}: {run.launch.describe(run.values)}", flush=True)

    splits, student, data = prepare_stage_data(run)
    if model_args.teacher_cache is not None and args.method != NO_DISTILLATION:
        teacher = open_teacher_cache(model_args, args, data)
    else:
        teacher = load_teacher(model_args, data) if args.method != NO_DISTILLATION else None

    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=data.train_dataset,
        eval_dataset=data.eval_dataset,
        processing_class=data.image_processor(),
        class_names=data.label_names,
        card_context=card_context(run, splits, teacher, earlier or [], resolved_recipe(run, weights)),
        loss_weights=weights,
        mixup=data.mixup,
    )
    trainer.add_callback(WriteResolvedRecipe(run, weights))
    try:
        trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()  # the clean export: config.json, model.safetensors (and preprocessor_config.json but timm's)
        trainer.create_model_card()  # README.md and training_curves.png
    except OSError as err:  # a full disk mid-save: say which checkpoint is whole (main prints the notes)
        latest = latest_complete_checkpoint(args.output_dir)
        err.add_note(f"the last complete checkpoint, {latest}, is kept; resume from it with --resume_from_checkpoint "
                     f"true once the disk has room" if latest else "no complete checkpoint was written")
        raise
    row = {
        "stage": run.name,
        "student": model_args.model_name_or_path,
        "teacher": teacher_source(run, teacher),
        "method": args.method,
        **summarize_evaluations(trainer.state.log_history),
        "output_dir": args.output_dir,
        "launch": run.launch.record(run.values),
    }
    if trainer.is_world_process_zero():
        (Path(args.output_dir) / "results.json").write_text(json.dumps(row, indent=2))
        (Path(args.output_dir) / "history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    if args.push_to_hub:
        push_at_end(trainer)
    trainer.accelerator.wait_for_everyone()  # a later stage may load this export as its teacher
    return row


def run_recipe(path: str, overrides: list[str]) -> str | None:
    """Run every stage of a recipe; the main process writes results.md / results.json and gets the table."""
    from accelerate import PartialState

    recipe = load_recipe(path, overrides)
    finished = check_output_folders(recipe)
    rows: list[dict] = []
    for run in recipe.runs:
        if finished.get(run.name) is not None:  # kept from an earlier run of this recipe, not trained again
            if PartialState().is_main_process:
                print(f"hfkd: stage {run.name}: finished earlier in {run.training_args.output_dir}, kept "
                      f"(--overwrite_output_dir true trains it again)", flush=True)
            rows.append(finished[run.name])
            continue
        rows.append(run_stage(run, earlier=rows))
    return write_results(rows, recipe.output_dir) if PartialState().is_main_process else None


def check_output_folders(recipe) -> dict[str, dict | None]:
    """Every folder the recipe writes, checked before its first stage trains (``hfkd.output_folder``); returns each
    stage's results row when an earlier run of the same recipe finished it (those stages are kept, not retrained)."""
    finished = {}
    for run in recipe.runs:
        args = run.training_args
        resolved = resolved_recipe(run, resolve_loss_weights(args))
        row = finished_results(args.output_dir, run.name, resolved) if not args.overwrite_output_dir else None
        finished[run.name] = row
        if row is None and args.resume_from_checkpoint in (None, False, "false", "False"):
            check_output_dir(args.output_dir, args.overwrite_output_dir, resuming=False)
    stages = tuple(Path(run.training_args.output_dir).name for run in recipe.runs
                   if Path(run.training_args.output_dir).parent.resolve() == Path(recipe.output_dir).resolve())
    if len(recipe.runs) > 1:
        overwrite = any(run.training_args.overwrite_output_dir for run in recipe.runs)
        check_output_dir(recipe.output_dir, overwrite, resuming=False, what="the recipe's output_dir", stages=stages)
    return finished


def quiet_loading_bars() -> None:
    """Keep the training progress bar; drop the per-file bars of dataset loading and model saving."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    """``hfkd train RECIPE [--key value ...]``: 0 on success, 2 with one sentence on stderr for a bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        from .recipe_help import USAGE, recipe_help

        print(recipe_help(argv[1] if len(argv) > 1 else None) if argv else USAGE)
        return 0 if argv else 2
    quiet_loading_bars()
    try:
        table = run_recipe(argv[0], argv[1:])
    except HfkdError as err:
        print(f"hfkd: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full or a lost mount mid-run: not a bad input, so exit 1 (no traceback either)
        notes = "".join(f"; {note}" for note in getattr(err, "__notes__", []))
        print(f"hfkd: error: training stopped: {describe_os_error(err)}{notes}", file=sys.stderr)
        return 1
    if table is not None:
        print("\n" + table)
    return 0
