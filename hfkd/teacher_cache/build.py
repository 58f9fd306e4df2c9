"""``hfkd cache-teacher RECIPE [--key value ...]``: run the recipe's teacher once over every training view it will see.

The views come from the run's own training set (``hfkd.train.prepare_stage_data``): the same decoded images, the same
keyed crops and flips for (seed, epoch, example index), the same normalisation, the same teacher input adapter; the
teacher runs as the trainer runs it (inference, placed and autocast by Accelerate with the run's precision and memory
format), with batches of ``per_device_eval_batch_size``. The files of epochs ``0 .. epochs-1`` (``parts``) are split
round-robin over the processes of ``accelerate launch``; files already there are kept, so a killed build resumes
where it stopped and a finished one extended to more epochs computes only the new ones.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from torch import nn

from ..errors import HfkdError, RecipeError
from ..launch import set_cpu_threads
from ..recipe import RunSpec, load_recipe
from ..teacher_check import TEACHER_CHECK_EXAMPLES
from .fingerprints import augmentation_of, data_fingerprint, require_replayable, teacher_fingerprint
from .matching import epochs_needed
from .parts import missing_parts, part_file, part_range, write_part
from .record import DATA_FOLDER, ROWS_PER_FILE, CacheRecord, read_record, write_card

logger = logging.getLogger(__name__)

USAGE = "usage: hfkd cache-teacher RECIPE.yaml [--key value ...]   (the cache goes to the recipe's teacher_cache)"


def _views(dataset, indices: list[int], device: torch.device, channels_last: bool) -> torch.Tensor:
    """The training views of ``indices`` in the dataset's current epoch, as the trainer's inputs (on ``device``,
    finished there when the dataset leaves batches raw, ``augment_on_device``)."""
    batch = dataset.__getitems__(indices)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if getattr(dataset, "on_device", False):
        batch = dataset.device_transform(batch)
    pixels = batch["pixel_values"]
    return pixels.contiguous(memory_format=torch.channels_last) if channels_last else pixels


def _teacher_logits(teacher: nn.Module, dataset, indices: range, batch_size: int, device: torch.device,
                    channels_last: bool, progress=None) -> torch.Tensor:
    """fp32 teacher logits ``[len(indices), C]`` of the views of ``indices`` in the dataset's current epoch."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(indices), batch_size):
            chunk = list(indices[start:start + batch_size])
            chunks.append(teacher(_views(dataset, chunk, device, channels_last)).logits.float().cpu())
            if progress is not None:
                progress.update(len(chunk))
    return torch.cat(chunks)


def _evaluation_top1(teacher: nn.Module, dataset, batch_size: int, device, channels_last: bool) -> float:
    """The teacher's top-1 (%) on up to TEACHER_CHECK_EXAMPLES evaluation examples, spread as the trainer's check
    spreads them (``teacher_check``), for the card of the students trained from the cache."""
    indices = range(0, len(dataset), max(1, len(dataset) // TEACHER_CHECK_EXAMPLES))[:TEACHER_CHECK_EXAMPLES]
    logits = _teacher_logits(teacher, dataset, indices, batch_size, device, channels_last)
    labels = dataset.labels[list(indices)]
    return 100.0 * float((logits.argmax(1) == labels).float().mean())


def _check_folder(folder: Path, record: CacheRecord) -> CacheRecord | None:
    """The record already in ``folder`` when it is this build's cache (to resume or extend); refuses any other
    non-empty folder, so no file that was there is changed."""
    existing = read_record(folder)
    if existing is not None:
        if existing.identity() != record.identity():
            different = sorted(k for k, v in record.identity().items() if existing.identity().get(k) != v)
            verb = "differs" if len(different) == 1 else "differ"
            raise RecipeError(
                f"teacher_cache {str(folder)!r} holds another cache (its {', '.join(different)} {verb} from this "
                f"build's); choose a new folder")
        return existing
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise RecipeError(f"teacher_cache {str(folder)!r} exists and is not a teacher cache; choose a new folder")
    return None


def build_teacher_cache(run: RunSpec, rows_per_file: int = ROWS_PER_FILE) -> Path:
    """Write (or finish, or extend) the cache of ``run`` (one recipe run) in its ``teacher_cache`` folder.

    Every process of the launch writes its share of the missing files; the main process writes the card. Returns
    the folder. Raises ``RecipeError`` (one sentence) before any file is written for a run that cannot be cached.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm
    from transformers import set_seed

    from ..train import load_teacher, prepare_stage_data

    model_args, args = run.model_args, run.training_args
    if model_args.teacher_cache is None:
        raise RecipeError("set teacher_cache to the folder the cache goes to, e.g. --teacher_cache caches/teacher-seed0")
    if model_args.teacher is None:
        raise RecipeError("hfkd cache-teacher needs the recipe's teacher; set 'teacher'")
    folder = Path(model_args.teacher_cache)
    set_seed(args.seed)  # as a training run does: a teacher built with random weights gets the run's weights
    set_cpu_threads(args)
    _, _, data = prepare_stage_data(run)
    train = require_replayable(data.train_dataset, data.preset)
    teacher = load_teacher(model_args, data)
    mixed = "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
    accelerator = Accelerator(cpu=args.use_cpu, mixed_precision=mixed)
    record = CacheRecord(
        teacher=model_args.teacher, teacher_fingerprint=teacher_fingerprint(teacher), dataset=data.dataset_name,
        data_fingerprint=data_fingerprint(train), num_examples=len(train), num_classes=data.num_classes,
        seed=args.seed, augmentation=augmentation_of(train), precision=run.launch.precision(run.values),
        epochs=epochs_needed(args, len(train)), topk=model_args.teacher_cache_topk,
        dtype=model_args.teacher_cache_dtype, rows_per_file=rows_per_file,
    )
    existing = _check_folder(folder, record)
    if existing is not None and existing.epochs > record.epochs:
        record = CacheRecord.from_dict({**record.to_dict(), "epochs": existing.epochs})
    accelerator.wait_for_everyone()  # every process has checked the folder before the main one writes to it
    if accelerator.is_main_process:
        for leftover in (folder / DATA_FOLDER).glob(".*.tmp"):  # a file a killed build was writing
            leftover.unlink()
        write_card(folder, record)
    accelerator.wait_for_everyone()

    teacher.eval().requires_grad_(False)
    if args.channels_last:
        teacher.to(memory_format=torch.channels_last)
    teacher = accelerator.prepare_model(teacher, evaluation_mode=True)
    todo = missing_parts(folder, record, record.epochs)
    mine = todo[accelerator.process_index::accelerator.num_processes]
    batch_size = args.per_device_eval_batch_size
    total = sum(len(part_range(record, part)) for _, part in mine)
    with tqdm(total=total, unit="img", desc=f"teacher cache {folder.name}",
              disable=not accelerator.is_local_main_process or args.disable_tqdm) as progress:
        for epoch, part in mine:
            train.set_epoch(epoch)
            indices = part_range(record, part)
            logits = _teacher_logits(teacher, train, indices, batch_size, accelerator.device, args.channels_last,
                                     progress)
            write_part(part_file(folder, epoch, part), record, epoch, torch.arange(indices.start, indices.stop), logits)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        top1 = _evaluation_top1(teacher, data.eval_dataset, batch_size, accelerator.device, args.channels_last)
        write_card(folder, CacheRecord.from_dict({**record.to_dict(), "teacher_top1": top1}))
        print(f"hfkd: teacher cache {folder}: epochs 0 to {record.epochs - 1} x {record.num_examples} views of "
              f"teacher {record.teacher} ({len(todo)} of its files written now, teacher top-1 {top1:.2f} %)", flush=True)
    accelerator.wait_for_everyone()
    return folder


def main(argv: list[str] | None = None) -> int:
    """``hfkd cache-teacher RECIPE [--key value ...]``: builds the cache of every run of the recipe that names a
    ``teacher_cache`` (each folder once); 0 on success, 2 with one sentence on stderr for a bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    from ..train import quiet_loading_bars

    quiet_loading_bars()
    try:
        recipe = load_recipe(argv[0], argv[1:])
        runs = [run for run in recipe.runs if run.model_args.teacher_cache is not None]
        if not runs:
            raise RecipeError(f"recipe {argv[0]!r} names no teacher_cache; pass the folder to write, e.g. "
                              f"--teacher_cache caches/teacher-seed0")
        done: set[str] = set()
        for run in runs:
            if run.model_args.teacher_cache not in done:
                build_teacher_cache(run)
                done.add(run.model_args.teacher_cache)
    except HfkdError as err:
        print(f"hfkd: error: {err}", file=sys.stderr)
        return 2
    return 0
