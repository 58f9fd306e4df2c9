"""Checks on a multi-stage recipe as a whole, made when it is read, before its first stage trains.

Each stage's keys and values are checked when its arguments are built (:mod:`hfkd.recipe`); what no single stage can
see is checked here: the stage names (each becomes a folder), the folders the stages write (two stages must not write
one), and the models a stage reads from the recipe's own output folder (a teacher trained by an earlier stage: a
stage that reads a later stage's folder, or a folder no stage writes and that does not exist, would fail only after
the stages before it had trained, hours in).
"""

from __future__ import annotations

from pathlib import Path

from .errors import RecipeError
from .setup_checks import require_teacher

# model keys whose value may name a folder an earlier stage writes
_MODEL_KEYS = ("teacher", "model_name_or_path")


def check_stage_name(name: object, recipe: str) -> str:
    """A stage name as a folder name: a non-empty string without path separators, not '.' or '..'."""
    text = str(name) if isinstance(name, (str, int)) and not isinstance(name, bool) else None
    if text is None or not text.strip() or "/" in text or "\\" in text or text in (".", ".."):
        raise RecipeError(
            f"stage name {name!r} in recipe {recipe!r} cannot be a folder name; name stages with letters, digits, "
            f"'-' or '_' (e.g. teacher, kd)"
        )
    return text


def check_stages(runs: list, root: str, recipe: str) -> None:
    """The checks of a whole recipe's stages (``runs``, ``RunSpec`` objects in order; ``root`` the recipe's output
    folder). Raises ``RecipeError`` naming the stage and the key."""
    written: dict[Path, str] = {}
    for run in runs:
        try:
            require_teacher(run.training_args.method, run.model_args.teacher is not None)
        except RecipeError as err:
            raise RecipeError(f"stage {run.name!r} of recipe {recipe!r}: {err}") from None
        folder = Path(run.training_args.output_dir).resolve()
        if folder in written:
            raise RecipeError(
                f"stages {written[folder]!r} and {run.name!r} of recipe {recipe!r} both write to "
                f"{run.training_args.output_dir!r}; give each stage its own output_dir"
            )
        written[folder] = run.name
    order = {run.name: i for i, run in enumerate(runs)}
    root_folder = Path(root).resolve()
    for run in runs:
        for key in _MODEL_KEYS:
            value = getattr(run.model_args, key)
            if not value:
                continue
            target = Path(value).resolve()
            writer = written.get(target)
            if writer is not None and order[writer] >= order[run.name]:
                when = "itself" if writer == run.name else f"stage {writer!r}, which comes after it"
                raise RecipeError(
                    f"stage {run.name!r} of recipe {recipe!r} reads {key} {value!r}, which is written by {when}; "
                    f"a stage can read only the folders of the stages before it"
                )
            if writer is None and root_folder in target.parents and not target.exists():
                stages = ", ".join(f"{name!r}" for name in order)
                raise RecipeError(
                    f"stage {run.name!r} of recipe {recipe!r} reads {key} {value!r}, which does not exist and which "
                    f"no stage writes (the stages are {stages}); name an earlier stage's folder"
                )
