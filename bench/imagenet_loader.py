"""ImageNet-size (224 px) loader throughput per DataLoader worker, against what a 224-px KD step consumes (issue 20).

    python bench/imagenet_loader.py [--images 256] [--json bench/results/imagenet_loader.json]
    python bench/imagenet_loader.py --step-device cuda --step-batch 256    # on a GPU: the step a loader must feed

Writes imagenet-1k-schema parquet shards of synthetic photographs-like JPEGs (smooth content, 500x375, about the size
of ImageNet's files), then measures images/s of ONE DataLoader worker (num_workers=1, so the figure is per worker;
the median of timed windows after a warm-up) for:
  - map-style, the default view (RandomResizedCrop 224 + flip, timm's create_transform) and with RandAugment
    (rand-m9-mstd0.5-inc1) + random erasing;
  - streaming (datasets IterableDataset over the shards), the same two;
  - decode_on_device's worker side (bytes only) and its decode + crop on --decode-device (the CPU here);
plus Mixup + CutMix on a batch in the main process, and the images/s of a resnet50 -> resnet18 KD training step at
224 px on --step-device. Workers needed = step img/s / per-worker img/s.
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
from PIL import Image, ImageFilter

from hfkd.config import DataArguments
from hfkd.data import collate_image_batch, prepare_datasets
from hfkd.data.augmentation import KeyedMixup

BATCH = 32


def write_shards(folder: Path, images: int, shards: int = 4) -> str:
    rng = np.random.default_rng(0)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    (folder / "data").mkdir(parents=True)
    per_shard = images // shards
    for split, count, n_shards in (("train", per_shard, shards), ("validation", 16, 1)):
        for k in range(n_shards):
            rows = []
            for _ in range(count):
                small = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
                picture = small.resize((500, 375), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
                noisy = np.asarray(picture).astype(np.int16) + rng.integers(-12, 12, (375, 500, 3))
                buffer = io.BytesIO()
                Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
                rows.append(buffer.getvalue())
            table = datasets.Dataset.from_dict(
                {"image": [{"bytes": b, "path": None} for b in rows], "label": [i % 10 for i in range(count)]},
                features=features)
            table.to_parquet(str(folder / "data" / f"{split}-{k:05d}-of-{n_shards:05d}.parquet"))
    return str(folder)


def median_rate(iterator, windows: int = 5, batches_per_window: int = 3, warmup: int = 2) -> float:
    for _ in range(warmup):
        next(iterator)
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        count = sum(len(next(iterator)["labels"]) for _ in range(batches_per_window))
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def endless(make_loader):
    while True:
        yield from make_loader()


def per_worker_rate(dataset, streaming: bool) -> float:
    if streaming:
        dataset.for_process(BATCH, 0, 1)
        make = lambda: torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1)
    else:
        make = lambda: torch.utils.data.DataLoader(
            dataset, batch_size=BATCH, shuffle=True, num_workers=1, collate_fn=collate_image_batch, drop_last=True)
    return median_rate(endless(make))


def kd_step_rate(device: str, batch: int) -> float:
    """img/s of a resnet50 -> resnet18 KD training step (fp32; bf16 autocast on a GPU) at 224 px."""
    import timm
    import torch.nn.functional as F

    student, teacher = timm.create_model("resnet18").to(device), timm.create_model("resnet50").to(device).eval()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device=device)
    autocast = torch.autocast("cuda", torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)

    def step():
        with autocast:
            with torch.no_grad():
                t = teacher(x)
            s = student(x)
            loss = F.kl_div(F.log_softmax(s.float() / 4, 1), F.log_softmax(t.float() / 4, 1), log_target=True,
                            reduction="batchmean") * 16
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    rates = []
    for _ in range(3 if device == "cpu" else 10):
        start = time.perf_counter()
        step()
        rates.append(batch / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--decode-device", default="cpu")
    parser.add_argument("--step-device", default="cpu")
    parser.add_argument("--step-batch", type=int, default=16)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    torch.set_num_threads(1)  # the worker and the main process share this machine's cores
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        shards = write_shards(Path(tmp) / "shards", args.images)
        strong = dict(auto_augment="rand-m9-mstd0.5-inc1", reprob=0.25)
        for streaming in (False, True):
            for name, keys in (("default", {}), ("randaugment+erasing", strong)):
                data = prepare_datasets(DataArguments(dataset_name=shards, streaming=streaming, **keys))
                label = f"{'streaming' if streaming else 'map-style'}, {name}"
                results[label] = per_worker_rate(data.train_dataset, streaming)
                print(f"{label:40s} {results[label]:8.1f} img/s per worker", flush=True)
        data = prepare_datasets(DataArguments(dataset_name=shards, decode_on_device=True))
        results["decode_on_device, worker (bytes only)"] = per_worker_rate(data.train_dataset, False)
        batch = data.train_dataset.__getitems__(list(range(BATCH)))
        decode = lambda: data.train_dataset.decoder(batch["encoded"], batch["index"], 0, args.decode_device)
        decode()
        start = time.perf_counter()
        for _ in range(3):
            decode()
        results[f"decode_on_device, decode+crop on {args.decode_device}"] = 3 * BATCH / (time.perf_counter() - start)
        mixup = KeyedMixup(DataArguments(dataset_name="x", mixup_alpha=0.8, cutmix_alpha=1.0), 1000)
        images = {"pixel_values": torch.randn(64, 3, 224, 224), "labels": torch.arange(64), "index": torch.arange(64)}
        start = time.perf_counter()
        for epoch in range(5):
            mixup(images, epoch)
        results["mixup+cutmix, main process"] = 5 * 64 / (time.perf_counter() - start)
    for label in list(results)[-3:]:
        print(f"{label:40s} {results[label]:8.1f} img/s", flush=True)
    step = kd_step_rate(args.step_device, args.step_batch)
    results[f"kd step resnet50->resnet18, {args.step_device}, batch {args.step_batch}"] = step
    print(f"KD step (resnet50 -> resnet18, 224 px, {args.step_device}, batch {args.step_batch}): {step:.1f} img/s")
    for label in [k for k in results if k.startswith(("map-style", "streaming"))]:
        print(f"  workers to feed it, {label}: {step / results[label]:.2f}")
    record = {"machine": platform.processor() or platform.machine(), "torch_threads": 1, "batch": BATCH,
              "images": args.images, "img_per_s": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
