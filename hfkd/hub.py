"""The Hub: pushing a finished run (``hfkd push OUTPUT_DIR``), pushing during training, and the errors of both.

What is uploaded is always the clean export, its card and the run's records, never checkpoints or private files
(one ignore list, ``PUSH_IGNORE``); a failed push leaves every local file as it was and says how to retry.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
from pathlib import Path

from .errors import HubError, RecipeError
from .readable_files import read_yaml
from .recipe import RESOLVED_RECIPE_NAME

# never uploaded: the Trainer's checkpoints and private files (the same rule as Trainer.push_to_hub)
PUSH_IGNORE = ("_*", "checkpoint-*")
# where checkpoint folders are copied while they upload (a "_" name: never part of a model push)
PUSH_STAGING = "_push_staging"
_USAGE_MODEL = re.compile(r'(pipeline\("image-classification", model=)"[^"]*"')
_USAGE_TIMM = re.compile(r'(timm\.create_model\()"(?:local-dir|hf-hub):[^"]*"')
_EXPORT_FILES = ("config.json",)
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def _files_to_push(output_dir: Path) -> list[Path]:
    files = []
    for path in sorted(output_dir.rglob("*")):
        relative = path.relative_to(output_dir).as_posix()
        if path.is_file() and not any(fnmatch.fnmatch(relative, pattern) for pattern in PUSH_IGNORE):
            files.append(path)
    return files


def default_repo_id(output_dir: Path) -> str:
    """The run's ``hub_model_id`` from its resolved recipe, else the folder name (in the user's namespace)."""
    recipe = output_dir / RESOLVED_RECIPE_NAME
    if recipe.is_file():
        values = read_yaml(recipe, "the run's recipe")
        hub_model_id = values.get("hub_model_id") if isinstance(values, dict) else None
        if hub_model_id:
            return hub_model_id
    return output_dir.resolve().name


def push_run(
    output_dir: str | Path,
    repo_id: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload with hfkd push",
) -> str:
    """Upload a finished run's export, card and records in one commit; returns the repo id.

    Files are read, never written: a failed push leaves the folder byte-identical, and the error says how to retry.
    In the uploaded README the local path of the usage example becomes the repo id.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    output_dir = Path(output_dir)
    if not all((output_dir / name).is_file() for name in _EXPORT_FILES) or not any(
        (output_dir / name).is_file() for name in _WEIGHT_FILES
    ):
        raise RecipeError(
            f"{str(output_dir)!r} is not a finished hfkd run (it needs config.json and model.safetensors); "
            f"train it first or point at the run's output_dir"
        )
    from .models.factory import check_model_files

    check_model_files(output_dir)  # a truncated or replaced file is named here, not uploaded
    repo_id = repo_id or default_repo_id(output_dir)
    retry = f"hfkd push {output_dir} --hub_model_id {repo_id}"
    try:
        api = HfApi()
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        operations = []
        for path in _files_to_push(output_dir):
            relative = path.relative_to(output_dir).as_posix()
            content: Path | bytes = path
            if relative == "README.md":  # the usage example loads the repo, not the local folder
                content = _usage_for_repo(path.read_text(), repo_id).encode()
            operations.append(CommitOperationAdd(path_in_repo=relative, path_or_fileobj=content))
        api.create_commit(repo_id, operations=operations, commit_message=commit_message, revision=revision)
    except Exception as err:  # HTTP, connection and validation errors of huggingface_hub
        raise HubError(
            f"pushing {str(output_dir)!r} to the Hub repo {repo_id!r} failed ({first_line(err)}); every local file is "
            f"unchanged, retry with: {retry}"
        ) from err
    return repo_id


def _usage_for_repo(card: str, repo_id: str) -> str:
    """A model card whose usage example loads ``repo_id`` (the pipeline's model, a timm checkpoint's ``hf-hub:``)."""
    card = _USAGE_MODEL.sub(f'\\g<1>"{repo_id}"', card)
    return _USAGE_TIMM.sub(f'\\g<1>"hf-hub:{repo_id}"', card)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (huggingface_hub's messages run over several lines)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def repo_creation_error(repo: str, err: BaseException) -> HubError:
    """The sentence for a Hub repo that could not be created or reached before training."""
    return HubError(
        f"could not create or reach the Hub repo {repo!r} ({first_line(err)}); check the token "
        f"(`hf auth login` or HF_TOKEN), or train without push_to_hub and run `hfkd push` later"
    )


def push_at_end(trainer) -> None:
    """The final push of a ``DistillationTrainer`` (export, card, records); a failure keeps every local file and
    says how to retry."""
    repo = trainer.hub_model_id or trainer.args.hub_model_id
    try:
        trainer.push_to_hub(commit_message="End of training")
    except Exception as err:  # huggingface_hub raises HTTP, connection and validation errors
        raise HubError(
            f"training finished but pushing {trainer.args.output_dir!r} to the Hub repo {repo!r} failed "
            f"({first_line(err)}); the run's files are intact, retry with: "
            f"hfkd push {trainer.args.output_dir} --hub_model_id {repo}"
        ) from err


def push_training_snapshot(trainer, checkpoint_folder: str) -> None:
    """During training, push the clean export and card of ``trainer`` (a ``DistillationTrainer``), not the
    checkpoint's training-state weights; with ``hub_strategy`` checkpoint / all_checkpoints the checkpoint folder is
    uploaded as well, so a run can resume from the Hub. Uploads run in the background, as the Trainer's do."""
    from transformers.trainer_utils import HubStrategy, SaveStrategy
    from transformers.utils.hub import PushInProgress, hf_api

    args = trainer.args
    if not trainer.is_world_process_zero() or args.hub_strategy == HubStrategy.END:
        return
    if not args.hub_always_push and trainer.push_in_progress is not None and not trainer.push_in_progress.is_done():
        return
    trainer.callback_handler.on_push_begin(args, trainer.state, trainer.control)
    trainer.save_model(args.output_dir, _internal_call=True)  # the export; _internal_call: no second push
    trainer.create_model_card(model_name=trainer.hub_model_id.split("/")[-1])
    if args.save_strategy == SaveStrategy.STEPS:
        message = f"Training in progress, step {trainer.state.global_step}"
    else:
        message = f"Training in progress, epoch {int(trainer.state.epoch)}"
    api = hf_api()
    jobs = [api.upload_folder(repo_id=trainer.hub_model_id, folder_path=args.output_dir, commit_message=message,
                              token=args.hub_token, run_as_future=True, ignore_patterns=list(PUSH_IGNORE),
                              revision=args.hub_revision)]
    if args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
        name = Path(checkpoint_folder).name
        path_in_repo = "last-checkpoint" if args.hub_strategy == HubStrategy.CHECKPOINT else name
        # upload a staged copy: save_total_limit may delete the checkpoint folder before an async upload ends
        staging = Path(args.output_dir) / PUSH_STAGING / name
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(checkpoint_folder, staging)
        job = api.upload_folder(repo_id=trainer.hub_model_id, folder_path=str(staging), path_in_repo=path_in_repo,
                                commit_message=message + ", checkpoint", token=args.hub_token, run_as_future=True,
                                revision=args.hub_revision)
        job.add_done_callback(lambda _: shutil.rmtree(staging, ignore_errors=True))
        jobs.append(job)
    if trainer.push_in_progress is None or trainer.push_in_progress.is_done():
        trainer.push_in_progress = PushInProgress(jobs)
    else:
        trainer.push_in_progress.jobs.extend(jobs)
