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

Settings: ``fp32``; ``fast`` = bf16 autocast + channels_last. On a GPU also ``fp16`` (fp16 autocast + loss scaling +
channels_last), ``compiled`` (``fast`` + ``torch_compile``), ``device_aug`` (``fast`` + crop / flip / normalise on the
GPU) and ``workers`` (``fast`` + 4 DataLoader workers). On a GPU the clock is read after a ``cuda.synchronize()`` at
each window's edges only (steps inside a window overlap as in training), windows are longer, and peak memory is the
GPU's peak allocation. ``--batch`` changes the batch size (model FLOP utilisation grows with it on a GPU).
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

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# the parent passes --batch and --models to its children through the environment
BATCH = int(os.environ.get("HFKD_BENCH_BATCH", 64))
TINY = os.environ.get("HFKD_BENCH_MODELS") == "tiny"
N_TRAIN = 50_000
N_EVAL = 2_048
IMAGE_SIZE = 8 if TINY else 32
# a GPU step (or a tiny model's) is ~100x shorter: longer windows, more warm-up (cuDNN autotuning, compilation)
WARMUP_STEPS, WINDOWS, STEPS_PER_WINDOW = (10, 5, 20) if DEVICE == "cuda" or TINY else (4, 5, 3)
FAST = {"bf16": True, "channels_last": True}
# fp32: the reference code's loop (fp32, NCHW); auto: what speed_settings: auto picks on this machine (hfkd.launch)
SETTINGS = {"fp32": {}, "fp32_cl": {"channels_last": True}, "fast": FAST, "auto": {"speed_settings": "auto"},
            # inductor (torch.compile) on top of fp32 + channels_last: what the CPU offers beyond the memory format
            "fp32_cl_compiled": {"channels_last": True, "torch_compile": True}}
if DEVICE == "cuda":
    SETTINGS.update({"fp16": {"fp16": True, "channels_last": True}, "compiled": {**FAST, "torch_compile": True},
                     "device_aug": {**FAST, "augment_on_device": True},
                     # CUDA graphs: inductor's reduce-overhead mode replays the captured step, data augmented on the GPU
                     "graphs": {**FAST, "torch_compile": True, "torch_compile_mode": "reduce-overhead",
                                "augment_on_device": True},
                     "workers": {**FAST, "dataloader_num_workers": 4}})
DATA_SETTINGS = ("augment_on_device",)  # keys that shape the dataset, not the DistillationConfig


def synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def resolved(setting: str) -> dict:
    """The setting's keys with ``speed_settings: auto`` resolved for this machine, as a recipe run resolves them."""
    from hfkd.launch import choose_launch

    values = dict(SETTINGS[setting])
    return {**values, **choose_launch(values).overrides}


def autocast(setting: str):
    """The bare loops' precision: what the Trainer's bf16 autocast does (they do not run fp16, which needs scaling)."""
    if resolved(setting).get("fp16"):
        raise ValueError("the bare-loop benchmarks run fp32 and bf16 settings only")
    return torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bool(resolved(setting).get("bf16")))


def random_data(n: int, setting: str = "fp32", num_classes: int = 100):
    from hfkd.data import DecodedImageDataset
    from hfkd.data.normalization import KNOWN_STATISTICS
    from hfkd.data.transforms import cifar_eval_transform, cifar_train_transform

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % num_classes
    mean, std = KNOWN_STATISTICS["cifar100"]
    on_device = bool(SETTINGS[setting].get("augment_on_device"))
    return (DecodedImageDataset(images, labels, cifar_train_transform(mean, std), on_device=on_device),
            DecodedImageDataset(images[:N_EVAL], labels[:N_EVAL], cifar_eval_transform(mean, std), on_device=on_device))


def config(method: str, setting: str, output: str, **extra):
    from hfkd.config import DistillationConfig
    from hfkd.launch import choose_launch

    values = {"output_dir": output, "method": method, "per_device_train_batch_size": BATCH,
              "per_device_eval_batch_size": 256, "save_strategy": "no", "eval_strategy": "no",
              "logging_strategy": "no", "disable_tqdm": True, "report_to": "none", "lr_decay_epochs": [],
              "max_steps": WARMUP_STEPS + WINDOWS * STEPS_PER_WINDOW, "seed": 0,
              # throughput does not depend on the step size; a small one keeps every method finite on random data
              "learning_rate": 1e-3}
    values.update({k: v for k, v in SETTINGS[setting].items() if k not in DATA_SETTINGS})
    values.update(extra)
    values.update(choose_launch(values).overrides)  # use_cpu on a machine without a GPU, as a recipe run does
    return DistillationConfig(**values)


def models():
    """Student and teacher. The random teacher's BatchNorm statistics are calibrated on a few batches: at their
    initial values the activations of a deep random ResNet grow to a scale no trained teacher has, which sends the
    feature-magnitude-sensitive losses (CC) to inf; the arithmetic is the same either way."""
    from hfkd.models import create_model

    torch.manual_seed(0)
    student, teacher = (create_model("resnet8", num_classes=100), create_model("resnet20", num_classes=100)) if TINY \
        else (create_model("resnet8x4", num_classes=100), create_model("resnet32x4", num_classes=100))
    for module in teacher.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batches
    with torch.no_grad():
        teacher.train()
        for _ in range(4):
            teacher(torch.randn(BATCH, 3, IMAGE_SIZE, IMAGE_SIZE))
    return student, teacher.eval()


class WindowTimer:
    """A TrainerCallback timing windows of STEPS_PER_WINDOW optimizer steps after WARMUP_STEPS, from one optimizer
    step's end to another's: everything the Trainer does per step (fetching and collating the batch, the step,
    logging bookkeeping). The device is synchronised at the window edges only. ``between(state, control)`` runs at
    each edge, outside the Trainer's windows (the overhead benchmark's bare windows)."""

    def __init__(self, between=None):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                done = state.global_step - WARMUP_STEPS
                if done < 0 or done % STEPS_PER_WINDOW:
                    return
                synchronize()
                if timer.window_start is not None:
                    timer.windows.append((time.perf_counter() - timer.window_start) / STEPS_PER_WINDOW)
                if between is not None:
                    between(state, control)
                timer.window_start = time.perf_counter()

        self.windows: list[float] = []  # mean step time of each window
        self.window_start: float | None = None
        self.callback = Callback()

    def median_step(self) -> float:
        return statistics.median(self.windows)


def peak_memory() -> dict:
    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if DEVICE == "cuda":
        peak["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def child_train(method: str, setting: str, output: str) -> dict:
    from hfkd.trainer import DistillationTrainer

    train, _ = random_data(N_TRAIN, setting)
    student, teacher = models()
    timer = WindowTimer()
    trainer = DistillationTrainer(model=student, teacher=teacher, args=config(method, setting, output),
                                  train_dataset=train, callbacks=[timer.callback])
    trainer.train()
    step = timer.median_step()
    return {"img_per_s": BATCH / step, "step_s": step, "batch": BATCH, **peak_memory()}


def bare_window(model, teacher, optimizer, dataset, indices: list[list[int]], setting: str) -> float:
    """Mean step time of a bare PyTorch loop over these batches: fetch, move to the device (and augment there for an
    on-device dataset), teacher forward under no_grad, forward, backward, SGD step, zero_grad."""
    channels_last = bool(resolved(setting).get("channels_last"))
    synchronize()
    begin = time.perf_counter()
    for batch_indices in indices:
        batch = to_device(dataset.__getitems__(batch_indices))
        batch = dataset.device_transform(batch) if hasattr(dataset, "device_transform") else batch
        pixels = batch.pop("pixel_values")
        if channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with autocast(setting):
            with torch.no_grad():
                teacher_out = teacher(pixels, return_features=model.method.needs_teacher_features)
            out = model(pixel_values=pixels, teacher_outputs=teacher_out, epoch=1, **batch)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize()
    return (time.perf_counter() - begin) / len(indices)


def to_device(batch: dict) -> dict:
    return {k: v.to(DEVICE, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def batches(order: torch.Tensor, start: int, count: int) -> list[list[int]]:
    return [order[(start + i) * BATCH:(start + i + 1) * BATCH].tolist() for i in range(count)]


def child_overhead(method: str, setting: str, output: str) -> dict:
    """Alternate windows of a bare loop and of the Trainer over the same DistillationModel, teacher and batches."""
    from hfkd.trainer import DistillationTrainer

    train, _ = random_data(N_TRAIN, setting)
    student, teacher = models()
    args = config(method, setting, output, max_steps=10_000)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=train)
    model, teacher = trainer.model, trainer.teacher
    optimizer = trainer.create_optimizer()  # the same SGD (momentum 0.9, decay on every parameter)
    order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(1))
    bare: list[float] = []

    def interleave(state, control) -> None:  # a bare window between the Trainer's windows
        if state.global_step > WARMUP_STEPS:  # a Trainer window has just ended
            model.train()
            bare.append(bare_window(model, teacher, optimizer, train, batches(order, state.global_step,
                                                                            STEPS_PER_WINDOW), setting))
        if len(bare) >= WINDOWS:
            control.should_training_stop = True

    model.train()
    bare_window(model, teacher, optimizer, train, batches(order, 0, WARMUP_STEPS), setting)  # warm the bare path
    timer = WindowTimer(between=interleave)
    trainer.add_callback(timer.callback)
    trainer.train()
    trainer_step, bare_step = timer.median_step(), statistics.median(bare)
    return {"trainer_step_s": trainer_step, "bare_step_s": bare_step, "overhead": trainer_step / bare_step - 1}


def child_reference(method: str, setting: str, output: str) -> dict:
    """The Trainer in ``setting`` against the reference code's loop (a bare fp32 NCHW loop), in alternating windows
    of one process: the same method, architectures and batches, each side with its own copy of the models."""
    from hfkd.trainer import DistillationTrainer

    train, _ = random_data(N_TRAIN, setting)
    student, teacher = models()
    reference = DistillationTrainer(model=student, teacher=teacher, args=config(method, "fp32", output),
                                    train_dataset=random_data(N_TRAIN, "fp32")[0])
    ref_model, ref_teacher = reference.model.train(), reference.teacher
    ref_optimizer, ref_data = reference.create_optimizer(), reference.train_dataset
    student, teacher = models()
    trainer = DistillationTrainer(model=student, teacher=teacher, args=config(method, setting, output, max_steps=10_000),
                                  train_dataset=train)
    order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(1))
    bare: list[float] = []

    def interleave(state, control) -> None:  # a reference window between the Trainer's windows
        if state.global_step > WARMUP_STEPS:
            bare.append(bare_window(ref_model, ref_teacher, ref_optimizer, ref_data,
                                    batches(order, state.global_step, STEPS_PER_WINDOW), "fp32"))
        if len(bare) >= WINDOWS:
            control.should_training_stop = True

    bare_window(ref_model, ref_teacher, ref_optimizer, ref_data, batches(order, 0, WARMUP_STEPS), "fp32")
    timer = WindowTimer(between=interleave)
    trainer.add_callback(timer.callback)
    trainer.train()
    trainer_step, reference_step = timer.median_step(), statistics.median(bare)
    return {"trainer_step_s": trainer_step, "reference_step_s": reference_step,
            "speedup_vs_reference": reference_step / trainer_step, "resolved": resolved(setting)}


def child_relative(method: str, setting: str, output: str) -> dict:
    """Step time of ``method`` relative to KD's, from alternating timed windows in one process (robust to the
    machine's drift between processes). Both step their DistillationModel with the same SGD, teacher and batches."""
    from hfkd.trainer import DistillationTrainer

    train, _ = random_data(N_TRAIN, setting)
    steppers = {}
    for name in ("kd", method):
        student, teacher = models()
        trainer = DistillationTrainer(model=student, teacher=teacher, args=config(name, setting, output),
                                      train_dataset=train)
        model, optimizer = trainer.model.train(), trainer.create_optimizer()
        prepared = trainer.train_dataset  # CRD's is wrapped with indices and negatives
        steppers[name] = (model, trainer.teacher, optimizer, prepared)
    order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(1))
    for name in steppers:
        bare_window(*steppers[name], batches(order, 0, WARMUP_STEPS), setting)
    times = {name: [] for name in steppers}
    for w in range(WINDOWS):
        for name in steppers:
            times[name].append(bare_window(*steppers[name], batches(order, WARMUP_STEPS + w * STEPS_PER_WINDOW,
                                                                    STEPS_PER_WINDOW), setting))
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
        batch = to_device(dataset.__getitems__(list(range(BATCH))))
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

    train, evaluation = random_data(N_TRAIN, setting)
    student, teacher = models()
    trainer = DistillationTrainer(model=student, teacher=teacher, args=config(method, setting, output),
                                  train_dataset=train, eval_dataset=evaluation)
    channels_last = bool(resolved(setting).get("channels_last"))
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
        synchronize()
        begin = time.perf_counter()
        with torch.no_grad(), autocast(setting):
            for batch in loader:
                batch = evaluation.device_transform(to_device(batch))
                pixels = batch["pixel_values"]
                if channels_last:
                    pixels = pixels.contiguous(memory_format=torch.channels_last)
                trainer.teacher(pixels, return_features=True)  # what the reference runs and discards
                model(pixel_values=pixels)
        synchronize()
        return time.perf_counter() - begin

    with_teacher()
    reference_rate = len(evaluation) / statistics.median([with_teacher() for _ in range(3)])
    return {"hfkd_eval_img_per_s": hfkd_rate, "teacher_forward_eval_img_per_s": reference_rate,
            "speedup": hfkd_rate / reference_rate}


def matmul_gflops(dtype: torch.dtype, n: int | None = None, repeats: int = 10) -> float:
    """The machine's dense-arithmetic speed: median GFLOP/s of an n x n matmul (the issue quotes 160 fp32 /
    790 bf16 for n = 2048 on these 2-core machines when quiet), so a reader can tell a slow run from a busy machine.
    On a GPU n = 8192, large enough to reach the tensor cores' peak (the denominator of model FLOP utilisation)."""
    n = n or (8192 if DEVICE == "cuda" else 2048)
    a, b = torch.randn(n, n, dtype=dtype, device=DEVICE), torch.randn(n, n, dtype=dtype, device=DEVICE)
    a @ b
    times = []
    for _ in range(repeats):
        synchronize()
        begin = time.perf_counter()
        a @ b
        synchronize()
        times.append(time.perf_counter() - begin)
    return 2 * n**3 / statistics.median(times) / 1e9


def cpu_description() -> dict:
    """The CPU the figures come from: model name, the flags that decide bf16 speed, and any ISA cap in force."""
    from hfkd.launch import NATIVE_BF16_CPU_FLAGS, _cpuinfo, cpu_native_bf16

    name, flags = _cpuinfo()
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"model": name, "flags": [f for f in wanted if f in flags], "native_bf16": cpu_native_bf16()[0],
            "caps": {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if k in os.environ},
            "bf16_flags_checked": list(NATIVE_BF16_CPU_FLAGS)}


def matmul_rates() -> dict:
    """fp32 and bf16 matmul GFLOP/s; bf16 only where it is native (emulated bf16 takes minutes per 2048² matmul)."""
    from hfkd.launch import cpu_native_bf16

    rates = {"fp32": matmul_gflops(torch.float32)}
    if DEVICE == "cuda" or cpu_native_bf16()[0]:
        rates["bf16"] = matmul_gflops(torch.bfloat16)
    return rates


def run_child(kind: str, method: str, setting: str) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as output:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               "TRANSFORMERS_VERBOSITY": "error"}
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
                        help="train / overhead / eval, relative (each method's step time against KD's, one process), "
                             "flops (each method's step arithmetic against KD's) and reference (the Trainer in a "
                             "setting against the reference's bare fp32 NCHW loop, one process)")
    parser.add_argument("--relative_methods", nargs="+", default=["crd", "semckd", "simkd"],
                        help="methods the relative kind compares with KD")
    parser.add_argument("--batch", type=int, default=BATCH, help="training batch size (default 64)")
    parser.add_argument("--models", choices=["cifar", "tiny"], default="cifar",
                        help="cifar: resnet32x4 -> resnet8x4 at 32 px; tiny: resnet20 -> resnet8 at 8 px, where the "
                             "arithmetic is small enough that the host's per-step work shows (a small model on a GPU)")
    parser.add_argument("--json", default="bench/results/train_throughput.json")
    parser.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, method, setting, output = args.child
        kinds = {"train": child_train, "overhead": child_overhead, "eval": child_eval, "relative": child_relative,
                 "flops": child_flops, "reference": child_reference}
        result = kinds[kind](method, setting, output)
        print("RESULT " + json.dumps(result), flush=True)
        return

    from hfkd.methods import METHODS

    os.environ["HFKD_BENCH_BATCH"] = str(args.batch)  # the children's batch size and models
    os.environ["HFKD_BENCH_MODELS"] = args.models
    methods = args.methods or sorted(METHODS)
    machine = f"{platform.machine()} {os.cpu_count()} CPUs"
    if DEVICE == "cuda":
        machine += f", {torch.cuda.get_device_name()}"
    report = {"machine": machine, "device": DEVICE, "torch": torch.__version__, "batch": args.batch, "models": args.models,
              "date": time.strftime("%Y-%m-%d"), "train": {}, "overhead": {}, "eval": {}, "relative": {},
              "flops": {}, "reference": {}, "cpu": cpu_description()}
    report["matmul_gflops_before"] = matmul_rates()
    print(f"matmul GFLOP/s before: {report['matmul_gflops_before']}", flush=True)

    def write(report: dict) -> None:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))

    plan = {"train": methods, "overhead": ["kd", "simkd"], "eval": ["simkd"], "reference": ["kd", "simkd"],
            "relative": [m for m in args.relative_methods if m != "kd"], "flops": [m for m in methods if m != "kd"]}
    for setting in args.settings:
        for kind in args.kinds:
            if kind == "reference" and setting == "fp32":
                continue  # the reference loop against itself
            for method in plan[kind]:
                report[kind][f"{method}/{setting}"] = result = run_child(kind, method, setting)
                print(f"{kind:8s} {method:10s} {setting:5s} {json.dumps(result)}", flush=True)
                write(report)  # after every result: a run stopped part-way keeps what it measured
    report["matmul_gflops_after"] = matmul_rates()
    print(f"matmul GFLOP/s after: {report['matmul_gflops_after']}", flush=True)
    write(report)


if __name__ == "__main__":
    main()
