"""Where a run may write: never over a user's own files, never over a run it was not asked to resume or overwrite.

hfkd writes a run only into a folder that is new or empty, that holds an hfkd run it resumes (or a recipe's
finished stages it keeps), or, with ``overwrite_output_dir``, that holds an earlier hfkd run. Even then it never
writes over a file it did not write: a folder is hfkd's when its ``recipe.yaml`` is an hfkd resolved recipe (or its
``results.json`` an hfkd results table); in any other folder, a file with a name hfkd writes belongs to the user.
Every check here runs before a run writes anything, and each failure is one sentence naming the folder.
"""

from __future__ import annotations

import fnmatch
import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .checkpoints import latest_complete_checkpoint
from .errors import RecipeError

MODEL_CODE_DIR = Path(__file__).resolve().parent / "models"
# what a run writes into its output_dir (the export, its model code, the card, records, checkpoints, logs)
RUN_FILES = (
    "config.json", "model.safetensors", "model.safetensors.index.json", "model-*.safetensors", "pytorch_model.bin",
    "preprocessor_config.json", "README.md", "training_curves.png", "recipe.yaml", "results.json", "results.md",
    "history.json", "training_args.bin", "checkpoint-*", "runs", "*.py",
)
# files whose presence means output_dir already holds a trained run (an export or a checkpoint)
RUN_MARKERS = ("model.safetensors", "config.json")
RESOLVED_RECIPE = "recipe.yaml"
RESULTS = "results.json"


def _hfkd_writes(name: str) -> bool:
    if name.endswith(".py"):  # the model code an export carries, and nothing else ending in .py
        return (MODEL_CODE_DIR / name).is_file()
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILES)


def _read(path: Path, parse) -> Any:
    try:
        return parse(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None


def saved_recipe(folder: str | Path) -> dict | None:
    """The resolved recipe an hfkd run wrote into ``folder``, or None when there is none (or it is not hfkd's)."""
    recipe = _read(Path(folder) / RESOLVED_RECIPE, yaml.safe_load)
    return recipe if isinstance(recipe, dict) and {"method", "model_name_or_path"} <= set(recipe) else None


def written_by_hfkd(folder: str | Path) -> bool:
    """Whether ``folder`` holds an hfkd run (its resolved recipe) or a multi-stage recipe's results table."""
    folder = Path(folder)
    if saved_recipe(folder) is not None:
        return True
    rows = _read(folder / RESULTS, json.loads)
    return isinstance(rows, list) and bool(rows) and all(isinstance(r, dict) and "stage" in r for r in rows)


def check_writable_folder(folder: str | Path, what: str = "output_dir") -> None:
    """``folder`` can be created (or exists) and written: no file sits where a folder must be, and the nearest
    existing folder accepts a new entry (a probe folder, removed at once; ``os.access`` misses read-only mounts)."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RecipeError(f"{what} {str(folder)!r} cannot be created: {str(existing)!r} is a file, not a folder")
    try:
        Path(tempfile.mkdtemp(prefix=".hfkd-write-check-", dir=existing)).rmdir()
    except OSError as err:
        raise RecipeError(
            f"{what} {str(folder)!r} is not writable ({err.strerror or err} in {str(existing)!r}); choose a folder "
            f"on a writable disk"
        ) from None


def check_output_dir(
    output_dir: str | Path, overwrite: bool, resuming: bool, what: str = "output_dir", stages: tuple[str, ...] = ()
) -> None:
    """The rules of this module for one folder a run writes into; raises ``RecipeError`` with advice that works.

    ``stages`` are the stage folders a multi-stage recipe keeps in its output folder (checked on their own)."""
    folder = Path(output_dir)
    check_writable_folder(folder, what)
    if not folder.exists():
        return
    names = sorted(p.name for p in folder.iterdir() if p.name not in stages or not p.is_dir())
    if not names:
        return
    if not written_by_hfkd(folder):
        clobbered = [n for n in names if _hfkd_writes(n)]
        if clobbered:
            raise RecipeError(
                f"{what} {str(folder)!r} holds files hfkd did not write that a run would overwrite "
                f"({', '.join(clobbered[:4])}); move them or choose an empty output_dir"
            )
        if not overwrite:
            raise RecipeError(
                f"{what} {str(folder)!r} already holds files hfkd did not write ({', '.join(names[:4])}); choose an "
                f"empty output_dir, or pass --overwrite_output_dir true to write next to them"
            )
        return
    if resuming or overwrite:
        return
    previous = [n for n in names if n in RUN_MARKERS or n.startswith("checkpoint-")]
    if previous:
        resume = (
            "resume it with --resume_from_checkpoint true, " if latest_complete_checkpoint(folder) is not None else ""
        )
        raise RecipeError(
            f"{what} {str(folder)!r} already holds a run ({', '.join(previous[:3])}); {resume}pick another "
            f"output_dir, or pass --overwrite_output_dir true"
        )


# keys that do not change what a run trains: a re-run that differs only in them finds its earlier run finished
_NOT_COMPARED = {"resume_from_checkpoint", "overwrite_output_dir", "disable_tqdm", "push_to_hub", "hub_model_id",
                 "hub_strategy", "hub_private_repo", "report_to", "logging_steps", "logging_strategy"}
# keys that, changed, make a checkpoint of the earlier run unusable for this one
IDENTITY_KEYS = ("model_name_or_path", "teacher", "teacher_arch", "method")


def finished_results(output_dir: str | Path, stage: str, resolved: dict) -> dict | None:
    """The results row of stage ``stage``, finished in ``output_dir`` from the same resolved recipe, else None.

    A run is finished once its ``results.json`` is written (after the export and the card); a one-run recipe's
    folder holds the results table (a list of one row) there instead."""
    folder = Path(output_dir)
    saved = saved_recipe(folder)
    row = _read(folder / RESULTS, json.loads)
    if isinstance(row, list):
        row = next((r for r in row if isinstance(r, dict) and r.get("stage") == stage), None)
    if saved is None or not isinstance(row, dict) or not (folder / "model.safetensors").is_file():
        return None
    same = {k: v for k, v in saved.items() if k not in _NOT_COMPARED} == {
        k: v for k, v in resolved.items() if k not in _NOT_COMPARED
    }
    return row if same else None


def check_resumed_run(output_dir: str | Path, resolved: dict) -> None:
    """A resumed run trains the model, teacher and method its checkpoints were made with."""
    saved = saved_recipe(output_dir)
    if saved is None:
        return
    for key in IDENTITY_KEYS:
        if saved.get(key) != resolved.get(key):
            raise RecipeError(
                f"cannot resume the run in {str(output_dir)!r}: it was trained with {key} {saved.get(key)!r}, this "
                f"recipe sets {resolved.get(key)!r}; use the same {key} to resume, or another output_dir"
            )
