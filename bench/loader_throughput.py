"""Data-loader throughput against what a training step consumes (issue 4).

    python bench/loader_throughput.py [--cifar-dir ../shared/data/cifar10_jpeg] [--json bench/results/loader.json]

Measures images/s of the loader alone (median of timed windows after a warm-up) for
  - CIFAR-size data on hfkd's decode-once path (uint8 in memory, batched crop + flip + normalise),
  - the same images decoded from JPEG for every example with torchvision's per-image transforms (what the
    reference code does), for comparison,
  - 224-pixel data on hfkd's per-image ImageNet preset (decode + RandomResizedCrop in DataLoader workers),
and the images/s a resnet32x4 -> resnet8x4 KD training step consumes at batch 64 (fp32, and bf16 + channels_last),
then prints the loader / step ratios. Without --cifar-dir it uses the built-in 5,000-image CIFAR-10 subset.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hfkd.config import DataArguments
from hfkd.data import collate_image_batch, prepare_datasets
from hfkd.models import create_model

BATCH = 64


def median_rate(step, items_per_call: int, warmup: int = 3, windows: int = 7, calls_per_window: int = 5) -> float:
    """Median over timed windows of items/s for repeated calls of ``step``."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(calls_per_window):
            step()
        rates.append(items_per_call * calls_per_window / (time.perf_counter() - start))
    return statistics.median(rates)


def loader_rate(dataset, num_workers: int, batches: int = 40) -> float:
    """Images/s of a shuffled DataLoader over ``dataset``: median of windows of ``batches // 4`` batches."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=BATCH, shuffle=True, num_workers=num_workers, collate_fn=collate_image_batch,
        persistent_workers=num_workers > 0, drop_last=True,
    )
    iterator = iter(loader)

    def next_batch():
        nonlocal iterator
        try:
            next(iterator)
        except StopIteration:
            iterator = iter(loader)
            next(iterator)

    return median_rate(next_batch, BATCH, warmup=max(2, num_workers * 2), windows=5, calls_per_window=batches // 4)


class DecodeEveryTime(torch.utils.data.Dataset):
    """The references' CIFAR path: decode the image and run torchvision transforms for every example."""

    def __init__(self, hf_dataset, image_column: str, label_column: str, mean, std) -> None:
        from torchvision import transforms

        self.rows = hf_dataset.cast_column(image_column, datasets.Image(decode=False))
        self.image_column, self.label_column = image_column, label_column
        self.transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        image = Image.open(io.BytesIO(row[self.image_column]["bytes"])).convert("RGB")
        return {"pixel_values": self.transform(image), "labels": row[self.label_column]}


def imagenet_like_dataset(folder: Path, n: int = 512) -> str:
    """JPEGs of 300-500 pixels in the ILSVRC/imagenet-1k schema (image + ClassLabel), saved to disk."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(n):
        h, w = int(rng.integers(300, 500)), int(rng.integers(300, 500))
        array = (rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8)  # smooth-ish content, JPEG-friendly
        image = Image.fromarray(array).resize((w, h), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        images.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    ds = datasets.Dataset.from_dict({"image": images, "label": [i % 10 for i in range(n)]}, features=features)
    datasets.DatasetDict({"train": ds, "validation": ds.select(range(64))}).save_to_disk(str(folder))
    return str(folder)


def kd_step_rate(fast: bool, size: int = 32, batch: int = BATCH) -> float:
    """Images/s of a bare resnet32x4 -> resnet8x4 KD step (teacher no_grad, student fwd/bwd, SGD)."""
    torch.manual_seed(0)
    teacher = create_model("resnet32x4", num_classes=100).eval()
    student = create_model("resnet8x4", num_classes=100)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 100, (batch,))
    if fast:
        teacher, student = teacher.to(memory_format=torch.channels_last), student.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            with torch.no_grad():
                t = teacher(x).logits
            s = student(x).logits
            loss = F.cross_entropy(s.float(), y) + 16 * F.kl_div(
                F.log_softmax(s.float() / 4, 1), F.log_softmax(t.float() / 4, 1), reduction="batchmean",
                log_target=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if size > 64:  # a 224-pixel step costs about 49 times a 32-pixel one: fewer, shorter windows
        return median_rate(step, batch, warmup=1, windows=3, calls_per_window=2)
    return median_rate(step, batch, warmup=3, windows=5, calls_per_window=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar-dir", default=None, help="a CIFAR-size parquet dataset folder (default: built-in)")
    parser.add_argument("--json", default="bench/results/loader_throughput.json")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    torch.manual_seed(0)

    name = args.cifar_dir or "builtin:cifar10-quickstart"
    cifar = prepare_datasets(DataArguments(dataset_name=name))
    from hfkd.data import load_splits

    splits = load_splits(DataArguments(dataset_name=name))
    rows = {}
    rows["cifar decode-once (hfkd), 0 workers"] = loader_rate(cifar.train_dataset, 0)
    reference = DecodeEveryTime(splits.train, splits.image_column, splits.label_column, cifar.mean, cifar.std)
    rows["cifar decode every time (reference), 0 workers"] = loader_rate(reference, 0)
    rows["cifar decode every time (reference), 2 workers"] = loader_rate(reference, 2)
    with tempfile.TemporaryDirectory() as tmp:
        imagenet = prepare_datasets(DataArguments(dataset_name=imagenet_like_dataset(Path(tmp) / "imagenet_like")))
        rows["224 px per-image preset (hfkd), 0 workers"] = loader_rate(imagenet.train_dataset, 0, batches=8)
        rows["224 px per-image preset (hfkd), 2 workers"] = loader_rate(imagenet.train_dataset, 2, batches=8)
    step = {"fp32": kd_step_rate(False), "bf16 + channels_last": kd_step_rate(True)}
    step_224 = {"fp32": kd_step_rate(False, 224, 8), "bf16 + channels_last": kd_step_rate(True, 224, 8)}

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; dataset {name}")
    print("loader img/s, and how many times the KD step's consumption at the same image size it sustains")
    print(f"{'loader':52s} {'img/s':>9s} {'/ fp32 step':>12s} {'/ fast step':>12s}")
    for label, rate in rows.items():
        reference = step_224 if label.startswith("224") else step
        print(f"{label:52s} {rate:9.0f} {rate / reference['fp32']:11.1f}x "
              f"{rate / reference['bf16 + channels_last']:11.1f}x")
    for label, rate in step.items():
        print(f"{'KD step resnet32x4->resnet8x4, 32 px, batch 64, ' + label:52s} {rate:9.1f}")
    for label, rate in step_224.items():
        print(f"{'KD step resnet32x4->resnet8x4, 224 px, batch 8, ' + label:52s} {rate:9.1f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"loader_img_per_s": rows, "kd_step_img_per_s_32px": step,
                                           "kd_step_img_per_s_224px": step_224, "dataset": name,
                                           "torch": torch.__version__, "threads": torch.get_num_threads()}, indent=2))


if __name__ == "__main__":
    main()
