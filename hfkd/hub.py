"""Pushing a finished run to the Hub (``hfkd push OUTPUT_DIR``), without touching a local file."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import yaml

from .errors import HubError, RecipeError
from .recipe import RESOLVED_RECIPE_NAME

# never uploaded: the Trainer's checkpoints and private files (the same rule as Trainer.push_to_hub)
PUSH_IGNORE = ("_*", "checkpoint-*")
_USAGE_MODEL = re.compile(r'(pipeline\("image-classification", model=)"[^"]*"')
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
        hub_model_id = (yaml.safe_load(recipe.read_text()) or {}).get("hub_model_id")
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
                content = _USAGE_MODEL.sub(f'\\g<1>"{repo_id}"', path.read_text()).encode()
            operations.append(CommitOperationAdd(path_in_repo=relative, path_or_fileobj=content))
        api.create_commit(repo_id, operations=operations, commit_message=commit_message, revision=revision)
    except Exception as err:  # HTTP, connection and validation errors of huggingface_hub
        text = str(err).strip()
        reason = text.splitlines()[0] if text else type(err).__name__
        raise HubError(
            f"pushing {str(output_dir)!r} to the Hub repo {repo_id!r} failed ({reason}); every local file is "
            f"unchanged, retry with: {retry}"
        ) from err
    return repo_id
