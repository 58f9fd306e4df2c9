"""Teacher caches (issue 19): a KD step from the cache against the online KD step, the build against the teacher's
inference, and the disk a cache takes.

    python bench/teacher_cache.py [--images 4096] [--windows 3] [--steps 8] [--speed_settings auto|off] [--json F]

resnet32x4 teacher (BatchNorm statistics calibrated on random batches) -> resnet8x4 student, 100 classes, batch 64,
random CIFAR-size uint8 images behind hfkd's data path, the speed settings ``auto`` picks on this machine (or, with
``--speed_settings off``, fp32 NCHW). All in one
process, so a busy machine slows both sides of each ratio alike:

- ``step``: one DistillationTrainer trains KD and, at every window edge, swaps its teacher in turn between the online
  teacher, the CachedTeacher of a full float16 cache of the same views (``teacher_cache`` in a recipe does the same,
  minus the swap) and a "free" teacher (the ceiling: fixed logits, no read, no forward); img/s = 64 / mean step time
  of a window, per mode; the ratios of the medians.
- ``build``: alternating windows of (a) the teacher's inference on already-normalised images, batches of 256 (what an
  evaluation pass does), and (b) the build's per-file work, ``hfkd cache-teacher``'s inner loop: the training views of
  one epoch (keyed crop, flip, normalise), the teacher, and the parquet file written; plus one whole
  ``hfkd cache-teacher`` of 2 epochs, set-up included.
- ``disk``: the bytes of one epoch of CIFAR-100 (50,000 examples, 100 classes) as written by the cache, every logit in
  float16 and the top 10, from logits drawn N(0, 3^2) (parquet's compression gains little on such mantissas; real
  logits are no more compressible), and the totals for the reference 240 epochs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH = 64
WARMUP_STEPS = 3
EVAL_BATCH = 256
CIFAR100_TRAIN, CIFAR100_CLASSES, REFERENCE_EPOCHS = 50_000, 100, 240


def synchronize() -> None:
    """On a GPU, wait for the queued kernels, so a clock read at a window edge counts them (steps inside a window
    still overlap, as in training)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def write_setting(root: Path, images: int, speed_settings: str) -> Path:
    """A parquet dataset of random images (100 classes), a calibrated resnet32x4 saved as a reference checkpoint,
    and a KD recipe (resnet8x4 student) over them; returns the recipe."""
    import datasets
    import numpy as np
    import yaml

    from hfkd.models import create_model

    rng = np.random.default_rng(0)
    features = datasets.Features({"img": datasets.Image(),
                                  "label": datasets.ClassLabel(num_classes=CIFAR100_CLASSES)})
    (root / "data").mkdir()
    for split, count in (("train", images), ("test", 512)):
        pixels = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        rows = {"img": list(pixels), "label": (np.arange(count) % CIFAR100_CLASSES).tolist()}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(root / "data" / f"{split}.parquet"))
    torch.manual_seed(0)
    teacher = create_model("resnet32x4", num_classes=CIFAR100_CLASSES)
    for module in teacher.modules():  # at their initial statistics a deep random ResNet's activations explode
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        teacher.train()
        for _ in range(4):
            teacher(torch.randn(BATCH, 3, 32, 32))
    (root / "resnet32x4_vanilla").mkdir()
    torch.save({"model": teacher.state_dict()}, root / "resnet32x4_vanilla" / "ckpt_epoch_240.pth")
    recipe = {"dataset_name": str(root / "data"), "model_name_or_path": "resnet8x4", "method": "kd",
              "teacher": str(root / "resnet32x4_vanilla" / "ckpt_epoch_240.pth"), "num_train_epochs": 1,
              "per_device_train_batch_size": BATCH, "per_device_eval_batch_size": EVAL_BATCH, "lr_decay_epochs": [],
              "speed_settings": speed_settings, "save_strategy": "no", "eval_strategy": "no", "logging_strategy": "no",
              "report_to": "none", "disable_tqdm": True, "learning_rate": 1e-3, "seed": 0,
              "output_dir": str(root / "run"), "teacher_cache": str(root / "cache")}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


MODES = ("online", "cached", "free")


def step_ratio(run, windows: int, steps: int) -> dict:
    """Online, cached and free-teacher KD steps in rotating windows of one DistillationTrainer (module docstring)."""
    from transformers import TrainerCallback

    from hfkd.models.outputs import ClassifierOutput
    from hfkd.teacher_cache import CachedTeacher, open_teacher_cache
    from hfkd.train import load_teacher, prepare_stage_data
    from hfkd.trainer import DistillationTrainer

    _, student, data = prepare_stage_data(run)
    args = run.training_args  # max_steps = WARMUP_STEPS + len(MODES) * windows * steps (main)
    cached = open_teacher_cache(run.model_args, args, data)
    online = load_teacher(run.model_args, data)

    class FreeTeacher(CachedTeacher):
        """The ceiling: a cache whose read costs nothing (fixed logits), so its window is the KD step minus every
        teacher cost."""

        def forward(self, pixel_values, return_features=False, *, index, epoch):
            return ClassifierOutput(logits=torch.zeros(len(index), self.num_classes, device=pixel_values.device))

    free = FreeTeacher(cached.folder, cached.record)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}

    class Rotate(TrainerCallback):
        start: float | None = None
        turn = 0

        def on_step_end(self, args, state, control, **kwargs):
            done = state.global_step - WARMUP_STEPS
            if done < 0 or done % steps:
                return
            synchronize()
            now = time.perf_counter()
            if self.start is not None:
                times[MODES[self.turn % len(MODES)]].append((now - self.start) / steps)
                self.turn += 1
            trainer.teacher = {"online": prepared, "cached": cached, "free": free}[MODES[self.turn % len(MODES)]]
            synchronize()
            self.start = time.perf_counter()

    trainer = DistillationTrainer(model=student, teacher=cached, args=args, train_dataset=data.train_dataset,
                                  callbacks=[Rotate()])
    if trainer.args.channels_last:
        online.to(memory_format=torch.channels_last)
    prepared = trainer._prepare_teacher(online)
    trainer.teacher = prepared  # warm-up steps online
    trainer.train()
    median = {mode: statistics.median(times[mode]) for mode in MODES}
    return {"online_img_per_s": BATCH / median["online"], "cached_img_per_s": BATCH / median["cached"],
            "free_img_per_s": BATCH / median["free"], "cached_over_online": median["online"] / median["cached"],
            "free_over_online": median["online"] / median["free"],
            "windows": {k: [BATCH / t for t in v] for k, v in times.items()},
            "steps_per_window": steps, "precision": run.launch.precision(run.values)}


def build_speed(run, windows: int) -> dict:
    """The build's per-file work against the teacher's inference, alternating (module docstring)."""
    from accelerate import Accelerator

    from hfkd.teacher_cache.build import _teacher_logits
    from hfkd.teacher_cache.parts import part_file, write_part
    from hfkd.teacher_cache.record import read_record
    from hfkd.train import load_teacher, prepare_stage_data

    args = run.training_args
    _, _, data = prepare_stage_data(run)
    train = data.train_dataset
    record = read_record(Path(run.model_args.teacher_cache))
    accelerator = Accelerator(cpu=args.use_cpu, mixed_precision="bf16" if args.bf16 else "no")
    teacher = load_teacher(run.model_args, data).eval().requires_grad_(False)
    if args.channels_last:
        teacher.to(memory_format=torch.channels_last)
    teacher = accelerator.prepare_model(teacher, evaluation_mode=True)
    n = len(train)
    normalised = train.transform.steps[-1](train.images, None)  # evaluation inputs: normalised, not augmented
    if args.channels_last:
        normalised = normalised.contiguous(memory_format=torch.channels_last)
    folder = Path(tempfile.mkdtemp())
    evaluation, building = [], []
    for window in range(windows + 1):  # the first pair warms up
        synchronize()
        begin = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, n, EVAL_BATCH):
                teacher(normalised[start:start + EVAL_BATCH].to(accelerator.device, non_blocking=True))
        synchronize()
        eval_s = time.perf_counter() - begin
        begin = time.perf_counter()
        train.set_epoch(window)
        logits = _teacher_logits(teacher, train, range(n), EVAL_BATCH, accelerator.device, args.channels_last)
        write_part(part_file(folder, window, 0), record, window, torch.arange(n), logits)
        build_s = time.perf_counter() - begin
        if window:
            evaluation.append(n / eval_s)
            building.append(n / build_s)
    teacher_eval, build = statistics.median(evaluation), statistics.median(building)
    return {"teacher_eval_img_per_s": teacher_eval, "build_img_per_s": build, "build_over_eval": build / teacher_eval,
            "windows": {"teacher_eval": evaluation, "build": building}, "batch": EVAL_BATCH}


def whole_build(recipe: Path, images: int) -> dict:
    """One ``hfkd cache-teacher`` of 2 epochs into a new folder, set-up (data, teacher, fingerprints, the teacher's
    top-1 on 512 evaluation images) included."""
    from hfkd.teacher_cache.build import main

    folder = Path(tempfile.mkdtemp()) / "cache"
    begin = time.perf_counter()
    assert main([str(recipe), "--teacher_cache", str(folder), "--num_train_epochs", "2"]) == 0
    seconds = time.perf_counter() - begin
    return {"epochs": 2, "images": 2 * images, "seconds": seconds, "img_per_s": 2 * images / seconds}


def disk() -> dict:
    """Bytes of one CIFAR-100 epoch, full float16 and top-10 float16, and 240-epoch totals (module docstring)."""
    from hfkd.teacher_cache.parts import write_part
    from hfkd.teacher_cache.record import CacheRecord

    logits = torch.randn(CIFAR100_TRAIN, CIFAR100_CLASSES, generator=torch.Generator().manual_seed(0)) * 3
    sizes = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, topk in (("full_fp16", None), ("top10_fp16", 10)):
            record = CacheRecord("t", "", "d", "", CIFAR100_TRAIN, CIFAR100_CLASSES, 0, {}, "fp32", 1, topk,
                                 "float16")
            path = Path(folder) / f"{name}.parquet"
            write_part(path, record, 0, torch.arange(CIFAR100_TRAIN), logits)
            size = path.stat().st_size
            sizes[name] = {"mb_per_epoch": size / 1e6, f"gb_{REFERENCE_EPOCHS}_epochs": size * REFERENCE_EPOCHS / 1e9}
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096, help="training images (the cache holds one epoch)")
    parser.add_argument("--windows", type=int, default=3, help="timed windows per side")
    parser.add_argument("--steps", type=int, default=8, help="KD steps per window")
    parser.add_argument("--speed_settings", default="auto", choices=["auto", "off"], help="off: fp32, NCHW")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from hfkd.recipe import load_recipe
    from hfkd.teacher_cache.build import main as cache_teacher

    with tempfile.TemporaryDirectory() as root:
        recipe = write_setting(Path(root), args.images, args.speed_settings)
        max_steps = ["--max_steps", str(WARMUP_STEPS + len(MODES) * args.windows * args.steps)]
        assert cache_teacher([str(recipe), *max_steps]) == 0  # a float16 cache of the epochs those steps reach
        (run,) = load_recipe(recipe, max_steps).runs
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
        results = {"machine": device, "torch": torch.__version__, "images": args.images,
                   "step": step_ratio(run, args.windows, args.steps)}
        (run,) = load_recipe(recipe).runs
        results["build"] = build_speed(run, args.windows)
        results["whole_build"] = whole_build(recipe, args.images)
    results["disk"] = disk()
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
