"""Several sweep runs sharing one device (``hfkd sweep --runs_per_device N``) against one run alone (issue 18).

    python bench/sweep_sharing.py [--runs_per_device 4] [--images 10000] [--epochs 2] [--json ...]

A small-model run leaves a GPU mostly idle (its step is host-bound), so N runs at once should train close to N times
the images per second of one. The benchmark writes a CIFAR-size dataset (random uint8 images, parquet), trains N
seeds of one recipe (``--model``, method none) first one at a time (``--runs_per_device 1``), then N at once, and
reports each sweep's aggregate img/s (images trained / wall time from the first start to the last end, process
start-up included; and over the span of the runs' training only) and one run's img/s alone (the Trainer's own
``train_samples_per_second``); the target compares the shared runs' training span rate with one run alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_dataset(folder: Path, images: int, classes: int = 10) -> None:
    import datasets
    import numpy as np

    rng = np.random.default_rng(0)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=classes)})
    for split, count in (("train", images), ("test", max(256, images // 10))):
        pixels = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        rows = {"img": list(pixels), "label": (np.arange(count) % classes).tolist()}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))


def sweep(recipe: Path, seeds: list[int], output: Path, runs_per_device: int) -> dict:
    command = [sys.executable, "-m", "hfkd", "sweep", str(recipe), "--seeds", *map(str, seeds), "--output_dir",
               str(output), "--runs_per_device", str(runs_per_device)]
    begin = time.time()
    done = subprocess.run(command, capture_output=True, text=True, cwd=str(REPO))
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "sweep failed")
    return {**json.loads((output / "throughput.json").read_text()), "command_s": time.time() - begin}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs_per_device", type=int, default=4)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model", default="resnet8x4")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--json", default="bench/results/sweep_sharing.json")
    args = parser.parse_args()
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "data").mkdir()
        write_dataset(tmp / "data", args.images)
        recipe = tmp / "shared.yaml"
        recipe.write_text(yaml.safe_dump({
            "dataset_name": str(tmp / "data"), "model_name_or_path": args.model, "method": "none",
            "num_train_epochs": args.epochs, "lr_decay_epochs": [], "per_device_train_batch_size": args.batch,
            "per_device_eval_batch_size": 256, "save_strategy": "no", "disable_tqdm": True, "report_to": "none",
            "speed_settings": "auto", "output_dir": "unused"}))
        seeds = list(range(args.runs_per_device))
        alone = sweep(recipe, seeds, tmp / "alone", 1)
        shared = sweep(recipe, seeds, tmp / "shared", args.runs_per_device)
    result = {"model": args.model, "images": args.images, "epochs": args.epochs, "batch": args.batch,
              "one_at_a_time": alone, "shared": shared,
              "shared_vs_one_run_alone": shared["aggregate_training_img_per_s"] / alone["mean_run_img_per_s"],
              "shared_vs_sequential_sweep": shared["aggregate_img_per_s"] / alone["aggregate_img_per_s"]}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
