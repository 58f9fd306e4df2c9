"""Opening a run's ``teacher_cache``: the cache must hold exactly the teacher outputs the run would compute online.

Each refusal is one sentence, raised before training: a method that reads teacher features, views that cannot be
replayed, another teacher, other data, another seed or augmentation, fewer epochs than the run trains, an unfinished
build. The teacher itself is never loaded (its weights' fingerprint is on the card; the run compares its name).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import IncompatibleSetupError, RecipeError
from ..methods import METHODS, NO_DISTILLATION
from ..models.provenance import ModelProvenance, attach_provenance
from .cached_teacher import CachedTeacher
from .fingerprints import augmentation_of, data_fingerprint, require_replayable
from .parts import missing_parts, part_file
from .record import CacheRecord, read_record


def require_logit_method(method: str) -> None:
    """Only methods whose own term reads no teacher features train from a cache (their ``div`` term too)."""
    cls = METHODS.get(method)
    if method == NO_DISTILLATION or cls is None:
        raise RecipeError(f"teacher_cache is set but method {method!r} does not distil from a teacher")
    if cls.needs_teacher_features:
        usable = ", ".join(name for name, c in sorted(METHODS.items()) if not c.needs_teacher_features)
        raise IncompatibleSetupError(
            f"method {method!r} reads the teacher's features, which a teacher cache does not hold (logits only); "
            f"train it with the teacher, or use a cache with one of {usable}"
        )


def epochs_needed(args, num_examples: int) -> int:
    """The epochs (0 .. n-1) a run with ``args`` (a ``DistillationConfig``) draws views from: ``num_train_epochs``
    rounded up, or the epochs ``max_steps`` optimizer steps reach at ``world_size`` processes."""
    if args.max_steps > 0:
        batches = math.ceil(num_examples / (args.per_device_train_batch_size * max(1, args.world_size)))
        steps_per_epoch = max(1, math.ceil(batches / args.gradient_accumulation_steps))
        return math.ceil(args.max_steps / steps_per_epoch)
    return math.ceil(args.num_train_epochs)


def local_cache_folder(location: str) -> Path:
    """A folder, or a Hub dataset repo id downloaded (cached) by huggingface_hub."""
    folder = Path(location)
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(location, repo_type="dataset"))
    except Exception as err:  # invalid ids, missing repos, no network: all end in the same sentence
        raise RecipeError(
            f"teacher_cache {location!r} is neither a folder nor a Hub dataset that can be downloaded "
            f"({type(err).__name__}); build it with `hfkd cache-teacher RECIPE --teacher_cache {location}`"
        ) from None


def check_record(location: str, cache: CacheRecord, run: CacheRecord, teacher: str | None, epochs: int) -> None:
    """``cache`` (the card's record) against ``run`` (what this run would cache); one sentence for the first
    difference. ``teacher`` is the recipe's teacher (None: not named, so not compared)."""
    where = f"teacher_cache {location!r}"
    if teacher is not None and teacher != cache.teacher:
        raise RecipeError(f"{where} holds the outputs of teacher {cache.teacher!r}, but the recipe's teacher is "
                          f"{teacher!r}")
    if cache.data_fingerprint != run.data_fingerprint:
        raise RecipeError(
            f"{where} was built on other training data ({cache.dataset!r}, {cache.num_examples} examples) than this "
            f"run's ({run.dataset!r}, {run.num_examples} examples)")
    if cache.seed != run.seed:
        raise RecipeError(f"{where} was built for seed {cache.seed}, but this run has seed {run.seed}")
    if cache.augmentation != run.augmentation:
        raise RecipeError(f"{where} holds views augmented as {cache.augmentation}, but this run augments as "
                          f"{run.augmentation}")
    if epochs > cache.epochs:
        raise RecipeError(f"this run trains {epochs} epochs but {where} holds {cache.epochs}; extend it with "
                          f"`hfkd cache-teacher RECIPE --teacher_cache {location} --num_train_epochs {epochs}`")


def open_teacher_cache(model_args, args, data) -> CachedTeacher:
    """The ``CachedTeacher`` of ``model_args.teacher_cache`` for a run with ``args`` on ``data`` (``PreparedData``),
    after every check above; raises ``RecipeError`` / ``IncompatibleSetupError`` with one sentence."""
    location = model_args.teacher_cache
    require_logit_method(args.method)
    train = require_replayable(data.train_dataset, data.preset)
    folder = local_cache_folder(location)
    cache = read_record(folder)
    if cache is None:
        raise RecipeError(f"teacher_cache {location!r} holds no teacher cache (no README.md with an hfkd_teacher_cache "
                          f"record); build it with `hfkd cache-teacher RECIPE --teacher_cache {location}`")
    run = CacheRecord(teacher=model_args.teacher or cache.teacher, teacher_fingerprint="", dataset=data.dataset_name,
                      data_fingerprint=data_fingerprint(train), num_examples=len(train), num_classes=data.num_classes,
                      seed=args.seed, augmentation=augmentation_of(train), precision="", epochs=0, topk=None,
                      dtype="")
    epochs = epochs_needed(args, len(train))
    check_record(location, cache, run, model_args.teacher, epochs)
    missing = missing_parts(folder, cache, epochs)
    if missing:
        more = f" and {len(missing) - 1} more files" if len(missing) > 1 else ""
        raise RecipeError(
            f"teacher_cache {location!r} is unfinished (it lacks {part_file(folder, *missing[0]).name}{more}); "
            f"finish it with `hfkd cache-teacher RECIPE --teacher_cache {location}`")
    teacher = CachedTeacher(folder, cache, source=location)
    return attach_provenance(teacher, ModelProvenance(architecture=None, source=cache.teacher))
