"""Training and evaluation throughput of every method, and the Trainer's overhead against a bare loop (issue 7).

    python bench/train_throughput.py [--methods kd simkd ...] [--json bench/results/train_throughput.json]

resnet32x4 teacher -> resnet8x4 student, 100 classes, batch 64, 50,000 random CIFAR-size uint8 images (so CRD's
memory and negatives have their CIFAR-100 sizes: n_data 50,000, K 16,384) behind hfkd's data path (decode-once
storage, keyed crop + flip, normalise). Each (method, setting) runs in a fresh process:

- ``train``: a DistillationTrainer; img/s = 64 / (median over timed windows of the mean step time), after warm-up;
  peak resident memory of the process.
- ``overhead`` (KD, SimKD): the same DistillationModel, teacher, data and SGD stepped by a bare PyTorch loop and by
  the Trainer, in alternating timed windows of the same process; the ratio of their median step times.
- ``eval`` (SimKD): evaluation images/s of the Trainer (student + projector + reused head, no teacher) against a
  loop that also runs the teacher forward, as the reference code does.

Settings: ``fp32``; ``fast`` = bf16 autocast + channels_last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH = 64
N_TRAIN = 50_000
N_EVAL = 2_048
WARMUP_STEPS = 4
WINDOWS = 5
STEPS_PER_WINDOW = 3
SETTINGS = {"fp32": {}, "fast": {"bf16": True, "channels_last": True}}


def random_data(n: int, num_classes: int = 100):
    from hfkd.data import DecodedImageDataset
    from hfkd.data.normalization import KNOWN_STATISTICS
    from hfkd.data.transforms import cifar_eval_transform, cifar_train_transform

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % num_classes
    mean, std = KNOWN_STATISTICS["cifar100"]
    return (DecodedImageDataset(images, labels, cifar_train_transform(mean, std)),
            DecodedImageDataset(images[:N_EVAL], labels[:N_EVAL], cifar_eval_transform(mean, std)))


def config(method: str, setting: str, output: str, **extra):
    from hfkd.config import DistillationConfig

    values = {"output_dir": output, "method": method, "per_device_train_batch_size": BATCH,
              "per_device_eval_batch_size": 256, "save_strategy": "no", "eval_strategy": "no",
              "logging_strategy": "no", "disable_tqdm": True, "report_to": "none", "lr_decay_epochs": [],
              "max_steps": WARMUP_STEPS + WINDOWS * STEPS_PER_WINDOW, "seed": 0,
              # throughput does not depend on the step size; a small one keeps every method finite on random data
              "learning_rate": 1e-3}
    values.update(SETTINGS[setting])
    values.update(extra)
    return DistillationConfig(**values)


def models():
    """Student and teacher. The random teacher's BatchNorm statistics are calibrated on a few batches: at their
    initial values the activations of a deep random ResNet grow to a scale no trained teacher has, which sends the
    feature-magnitude-sensitive losses (CC) to inf; the arithmetic is the same either way."""
    from hfkd.models import create_model

    torch.manual_seed(0)
    student, teacher = create_model("resnet8x4", num_classes=100), create_model("resnet32x4", num_classes=100)
    for module in teacher.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batches
    with torch.no_grad():
        teacher.train()
        for _ in range(4):
            teacher(torch.randn(BATCH, 3, 32, 32))
    return student, teacher.eval()


class StepTimer:
    """A TrainerCallback recording the wall time from one optimizer step's end to the next one's: everything the
    Trainer does per step (fetching and collating the batch, the step, logging bookkeeping). ``between`` runs after a
    step is recorded and before the next one's clock starts (the overhead benchmark's bare windows)."""

    def __init__(self, between=None):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                timer.mark = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer.times.append(time.perf_counter() - timer.mark)
                if between is not None:
                    between(state, control)
                timer.mark = time.perf_counter()

        self.times: list[float] = []
        self.mark = 0.0
        self.callback = Callback()

    def window_medians(self) -> float:
        measured = self.times[WARMUP_STEPS:]
        windows = [statistics.mean(measured[i:i + STEPS_PER_WINDOW]) for i in range(0, len(measured), STEPS_PER_WINDOW)]
        return statistics.median(windows)


def child_train(method: str, setting: str, output: str) -> dict:
    from hfkd.trainer import DistillationTrainer

    train, _ = random_data(N_TRAIN)
    student, teacher = models()
    timer = StepTimer()
    trainer = DistillationTrainer(model=student, teacher=teacher, args=config(method, setting, output),
                                  train_dataset=train, callbacks=[timer.callback])
    trainer.check_teacher = lambda: None  # no evaluation set in this benchmark
    trainer.train()
    step = timer.window_medians()
    return {"img_per_s": BATCH / step, "step_s": step, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_overhead(method: str, setting: str, output: str) -> dict:
    """Alternate windows of a bare loop and of the Trainer over the same DistillationModel, teacher and batches."""
    from hfkd.trainer import DistillationTrainer

    train, _ = random_data(N_TRAIN)
    student, teacher = models()
    fast = setting == "fast"
    args = config(method, setting, output, max_steps=10_000)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=train)
    model, teacher = trainer.model, trainer.teacher
    optimizer = trainer.create_optimizer()  # the same SGD (momentum 0.9, decay on every parameter)
    order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(1))

    def bare_steps(count: int, start: int) -> float:
        model.train()
        begin = time.perf_counter()
        for i in range(count):
            idx = order[(start + i) * BATCH:(start + i + 1) * BATCH].tolist()
            batch = train.__getitems__(idx)
            pixels = batch["pixel_values"]
            if fast:
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
                with torch.no_grad():
                    teacher_out = teacher(pixels, return_features=model.method.needs_teacher_features)
                out = model(pixel_values=pixels, labels=batch["labels"], teacher_outputs=teacher_out, epoch=1)
            out["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return (time.perf_counter() - begin) / count

    bare: list[float] = []

    def interleave(state, control) -> None:  # a bare window after every Trainer window
        step = state.global_step
        if step >= WARMUP_STEPS and (step - WARMUP_STEPS) % STEPS_PER_WINDOW == STEPS_PER_WINDOW - 1:
            bare.append(bare_steps(STEPS_PER_WINDOW, step))
        if step >= WARMUP_STEPS + WINDOWS * STEPS_PER_WINDOW:
            control.should_training_stop = True

    bare_steps(WARMUP_STEPS, 0)  # warm the bare path too
    timer = StepTimer(between=interleave)
    trainer.add_callback(timer.callback)
    trainer.check_teacher = lambda: None
    trainer.train()
    trainer_step = timer.window_medians()
    bare_step = statistics.median(bare)
    return {"trainer_step_s": trainer_step, "bare_step_s": bare_step, "overhead": trainer_step / bare_step - 1}


def child_relative(method: str, setting: str, output: str) -> dict:
    """Step time of ``method`` relative to KD's, from alternating timed windows in one process (robust to the
    machine's drift between processes). Both step their DistillationModel with the same SGD, teacher and batches."""
    from hfkd.trainer import DistillationTrainer

    train, _ = random_data(N_TRAIN)
    fast = setting == "fast"
    steppers = {}
    for name in ("kd", method):
        student, teacher = models()
        trainer = DistillationTrainer(model=student, teacher=teacher, args=config(name, setting, output),
                                      train_dataset=train)
        model, optimizer = trainer.model.train(), trainer.create_optimizer()
        prepared = trainer.train_dataset  # CRD's is wrapped with indices and negatives
        steppers[name] = (model, trainer.teacher, optimizer, prepared)
    order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(1))

    def window(name: str, start: int, count: int) -> float:
        model, teacher, optimizer, dataset = steppers[name]
        begin = time.perf_counter()
        for i in range(count):
            batch = dataset.__getitems__(order[(start + i) * BATCH:(start + i + 1) * BATCH].tolist())
            batch = dataset.device_transform(batch, 0) if hasattr(dataset, "device_transform") else batch
            pixels = batch.pop("pixel_values")
            if fast:
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
                with torch.no_grad():
                    teacher_out = teacher(pixels, return_features=model.method.needs_teacher_features)
                out = model(pixel_values=pixels, teacher_outputs=teacher_out, epoch=1, **batch)
            out["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return (time.perf_counter() - begin) / count

    for name in steppers:
        window(name, 0, WARMUP_STEPS)
    times = {name: [] for name in steppers}
    for w in range(WINDOWS):
        for name in steppers:
            times[name].append(window(name, WARMUP_STEPS + w * STEPS_PER_WINDOW, STEPS_PER_WINDOW))
    kd, other = statistics.median(times["kd"]), statistics.median(times[method])
    return {"kd_step_s": kd, "method_step_s": other, "relative_to_kd": other / kd}


def child_flops(method: str, setting: str, output: str) -> dict:
    """The arithmetic of one training step (teacher forward, student + method forward and backward), counted by
    torch's FlopCounterMode, against KD's: what a method must compute, independent of the machine."""
    from torch.utils.flop_counter import FlopCounterMode

    from hfkd.trainer import DistillationTrainer

    train, _ = random_data(N_TRAIN)
    counts = {}
    for name in ("kd", method):
        student, teacher = models()
        trainer = DistillationTrainer(model=student, teacher=teacher, args=config(name, "fp32", output),
                                      train_dataset=train)
        model, dataset = trainer.model.train(), trainer.train_dataset
        batch = dataset.__getitems__(list(range(BATCH)))
        pixels = batch.pop("pixel_values")
        with FlopCounterMode(display=False) as counter:
            with torch.no_grad():
                teacher_out = trainer.teacher(pixels, return_features=model.method.needs_teacher_features)
            model(pixel_values=pixels, teacher_outputs=teacher_out, epoch=1, **batch)["loss"].backward()
        counts[name] = counter.get_total_flops() / BATCH
    return {"kd_gflop_per_img": counts["kd"] / 1e9, "method_gflop_per_img": counts[method] / 1e9,
            "relative_to_kd": counts[method] / counts["kd"]}


def child_eval(method: str, setting: str, output: str) -> dict:
    """SimKD evaluation: the Trainer (no teacher) against the reference's loop with a teacher forward."""
    from hfkd.trainer import DistillationTrainer

    train, evaluation = random_data(N_TRAIN)
    student, teacher = models()
    trainer = DistillationTrainer(model=student, teacher=teacher, args=config(method, setting, output),
                                  train_dataset=train, eval_dataset=evaluation)
    fast = setting == "fast"
    trainer.evaluate()  # warm-up
    times = []
    for _ in range(3):
        begin = time.perf_counter()
        trainer.evaluate()
        times.append(time.perf_counter() - begin)
    hfkd_rate = len(evaluation) / statistics.median(times)
    model = trainer.model.eval()
    loader = torch.utils.data.DataLoader(evaluation, batch_size=256, collate_fn=lambda b: b)

    def with_teacher() -> float:
        begin = time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            for batch in loader:
                pixels = batch["pixel_values"]
                if fast:
                    pixels = pixels.contiguous(memory_format=torch.channels_last)
                trainer.teacher(pixels, return_features=True)  # what the reference runs and discards
                model(pixel_values=pixels)
        return time.perf_counter() - begin

    with_teacher()
    reference_rate = len(evaluation) / statistics.median([with_teacher() for _ in range(3)])
    return {"hfkd_eval_img_per_s": hfkd_rate, "teacher_forward_eval_img_per_s": reference_rate,
            "speedup": hfkd_rate / reference_rate}


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """The machine's dense-arithmetic speed: median GFLOP/s of an n x n matmul (the issue quotes 160 fp32 /
    790 bf16 on these 2-core machines when quiet), so a reader can tell a slow run from a busy machine."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - begin)
    return 2 * n**3 / statistics.median(times) / 1e9


def run_child(kind: str, method: str, setting: str) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as output:
        env = {**os.environ, "PYTHONPATH": str(REPO), "TRANSFORMERS_VERBOSITY": "error"}
        done = subprocess.run([sys.executable, __file__, "--child", kind, method, setting, output], env=env,
                              capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--kinds", nargs="+", default=["train", "overhead", "eval"],
                        help="train / overhead / eval, relative (each method's step time against KD's, one process) "
                             "and flops (each method's step arithmetic against KD's)")
    parser.add_argument("--relative_methods", nargs="+", default=["crd", "semckd", "simkd"],
                        help="methods the relative kind compares with KD")
    parser.add_argument("--json", default="bench/results/train_throughput.json")
    parser.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, method, setting, output = args.child
        kinds = {"train": child_train, "overhead": child_overhead, "eval": child_eval, "relative": child_relative,
                 "flops": child_flops}
        result = kinds[kind](method, setting, output)
        print("RESULT " + json.dumps(result), flush=True)
        return

    from hfkd.methods import METHODS

    methods = args.methods or sorted(METHODS)
    report = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs", "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d"), "train": {}, "overhead": {}, "eval": {}, "relative": {},
              "flops": {}}
    report["matmul_gflops_before"] = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(f"2048^2 matmul GFLOP/s before: {report['matmul_gflops_before']}", flush=True)
    plan = {"train": methods, "overhead": ["kd", "simkd"], "eval": ["simkd"],
            "relative": [m for m in args.relative_methods if m != "kd"], "flops": [m for m in methods if m != "kd"]}
    for setting in args.settings:
        for kind in args.kinds:
            for method in plan[kind]:
                report[kind][f"{method}/{setting}"] = result = run_child(kind, method, setting)
                print(f"{kind:8s} {method:10s} {setting:5s} {json.dumps(result)}", flush=True)
    report["matmul_gflops_after"] = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(f"2048^2 matmul GFLOP/s after: {report['matmul_gflops_after']}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
