"""``hfkd sweep --teacher_cache``: one teacher cache per (teacher, seed, training data), shared by every logit run.

A sweep's logit runs (methods whose own term reads no teacher features: kd, dkd, dist, logit_std, spherical, deit)
with the same teacher, seed and data would all compute the same teacher outputs; with ``--teacher_cache`` the sweep
builds them once (``hfkd cache-teacher``, with the recipe among them that trains the most epochs) into
``{output_dir}/teacher_caches/{teacher}-{key}/seed-{seed}`` after the shared teachers have trained, and passes
``--teacher_cache`` to those runs. A run whose recipe sets its own ``teacher_cache`` is left as it is.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..methods import METHODS
from ..recipe import load_recipe
from ..teacher_cache.matching import epochs_needed

CACHES_FOLDER = "teacher_caches"
# the recipe keys that decide the training views a teacher sees (with the seed): runs agreeing on them share a cache
VIEW_KEYS = ("dataset_name", "dataset_config_name", "train_dir", "train_split", "image_column_name",
             "label_column_name", "max_train_samples", "train_val_split", "transform_preset", "image_mean", "image_std")


@dataclass
class SharedCache:
    """A cache the sweep builds: its folder, the (recipe, seed) it is built with, and the runs that read it."""

    folder: Path
    recipe: Path
    seed: int
    epochs: int
    readers: list = field(default_factory=list)


def _uses_cache(run_spec) -> bool:
    method = METHODS.get(run_spec.training_args.method)
    return (method is not None and not method.needs_teacher_features and run_spec.model_args.teacher is not None
            and run_spec.model_args.teacher_cache is None)


def cache_folder(output_dir: Path, run_spec) -> Path:
    """``{output_dir}/teacher_caches/{teacher name}-{hash of teacher and view keys}/seed-{seed}``."""
    teacher = run_spec.model_args.teacher
    views = {key: getattr(run_spec.data_args, key) for key in VIEW_KEYS}
    digest = hashlib.sha256(json.dumps([teacher, views], sort_keys=True, default=str).encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(teacher.rstrip("/")).name or teacher)[-40:]
    return output_dir / CACHES_FOLDER / f"{name}-{digest}" / f"seed-{run_spec.training_args.seed}"


def plan_teacher_caches(runs: list, output_dir: Path, overrides: list[str]) -> dict[Path, SharedCache]:
    """The caches ``runs`` (``SweepRun``s still to run) share, by folder; each run that reads one gets
    ``--teacher_cache FOLDER`` added to its ``overrides``. Recipes with stages are left to train online."""
    caches: dict[Path, SharedCache] = {}
    for run in runs:
        specs = load_recipe(run.recipe, [*overrides, "--seed", str(run.seed)]).runs
        if len(specs) != 1 or not _uses_cache(specs[0]):
            continue
        spec = specs[0]
        folder = cache_folder(output_dir, spec)
        # without a training set at hand, epochs come from num_train_epochs (max_steps runs count their own)
        epochs = epochs_needed(spec.training_args, 1) if spec.training_args.max_steps <= 0 else 0
        cache = caches.setdefault(folder, SharedCache(folder, run.recipe, run.seed, epochs))
        if epochs > cache.epochs:
            cache.recipe, cache.epochs = run.recipe, epochs
        cache.readers.append(run)
        run.overrides = (*run.overrides, "--teacher_cache", str(folder))
    return caches


def cache_command(cache: SharedCache, overrides: list[str]) -> list[str]:
    """The ``hfkd cache-teacher`` arguments that build ``cache``."""
    return [str(cache.recipe), *overrides, "--seed", str(cache.seed), "--teacher_cache", str(cache.folder)]
