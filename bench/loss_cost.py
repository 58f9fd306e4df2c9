"""The cost of a method's loss alone: forward + backward over real-shaped features, in fp32 and with the speed settings.

    python bench/loss_cost.py --methods nst at vid [--json out.json]

Only the method's own terms are timed (the ``beta`` term; KD has none: its CE and KD terms are the same in every
method's step). CRD's rows of K = 16,384 negatives are random indices here: drawing them is the data path's cost,
not the loss's. The features are those of resnet8x4 (student) and resnet32x4 (teacher) on a batch of 64 random
CIFAR-size images, computed once per setting the way a training step makes them (``fast``: bf16 autocast over
channels-last models); then the method's loss terms are summed and back-propagated to the student's features (the
teacher's are constants, as in training) under the same autocast. Reports the median over timed repetitions after
warm-up, in ms. It times what the step benchmark (``train_throughput.py``) cannot separate from the networks; for a
before / after comparison, run it in a worktree of each commit, back to back.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as bench  # noqa: E402  (the step benchmark's models, settings and configs)

WARMUP, REPEATS = 3, 9


def features(model: torch.nn.Module, images: torch.Tensor, fast: bool):
    """The model's output with features, as a training step under ``fast`` (or fp32) makes them."""
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
        return model(images, return_features=True)


def loss_ms(name: str, fast: bool, student: torch.nn.Module, teacher: torch.nn.Module, output: str) -> float:
    from hfkd.methods import build_method
    from hfkd.models.outputs import ClassifierOutput

    images = torch.randn(bench.BATCH, 3, bench.IMAGE_SIZE, bench.IMAGE_SIZE)
    batch = {"labels": torch.arange(bench.BATCH) % 100, "pixel_values": images,
             "index": torch.arange(bench.BATCH),
             "contrast_index": torch.randint(0, bench.N_TRAIN, (bench.BATCH, 16_385))}
    layout = torch.channels_last if fast else torch.contiguous_format
    images = images.contiguous(memory_format=layout)
    student, teacher = (m.to(memory_format=layout) for m in (student, teacher))
    # CRD sizes its memory bank by the training set's length: a range of N_TRAIN stands in for the training set
    method = build_method(name, student, teacher, bench.config(name, "fast" if fast else "fp32", output), batch,
                          train_dataset=range(bench.N_TRAIN))
    method = method.to(memory_format=layout)
    s, t = features(student, images, fast), features(teacher, images, fast)
    student_feats = [f.detach().requires_grad_(True) for f in s.feats]
    student_out = ClassifierOutput(logits=s.logits.detach().requires_grad_(True), feats=student_feats)

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
        if not method(student_out, t, batch):
            return 0.0  # no feature term (KD's CE and KD terms are the DistillationModel's, the same for every method)

    def once() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            loss = sum(method(student_out, t, batch).values())
        loss.backward()
        return time.perf_counter() - start

    for _ in range(WARMUP):
        once()
    return 1000 * statistics.median(once() for _ in range(REPEATS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["kd", "nst"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    student, teacher = bench.models()
    results = {}
    with tempfile.TemporaryDirectory() as output:
        for name in args.methods:
            for fast in (False, True):
                key = f"{name}/{'fast' if fast else 'fp32'}"
                results[key] = loss_ms(name, fast, student, teacher, output)
                print(f"{key:16s} loss forward + backward {results[key]:8.1f} ms", flush=True)
    report = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads", "torch": torch.__version__,
              "batch": bench.BATCH, "date": time.strftime("%Y-%m-%d"), "loss_ms": results}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
