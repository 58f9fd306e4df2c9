"""How many training images per second a sweep's runs trained, alone and together (``--runs_per_device``).

Each finished run's stages record the Trainer's ``train_runtime`` (s) and ``train_samples_per_second`` in their
``history.json``; their product is the images the stage trained (epochs x examples). The sweep's aggregate rate is
the images of every run that ran divided by the wall time from the first start to the last end (process start-up,
data loading and export included); ``aggregate_training_img_per_s`` divides by the span of the runs' training only.
Against one run's own rate alone (a ``--runs_per_device 1`` sweep's ``mean_run_img_per_s``), it shows whether N runs
sharing a device pay.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..readable_files import read_json
from .runner import RESULTS

THROUGHPUT = "throughput.json"


def trained_images(run_dir: Path) -> tuple[float, float]:
    """(images trained, seconds of training) over the stages of a finished run folder."""
    rows = read_json(run_dir / RESULTS, "sweep results file")
    images = seconds = 0.0
    for row in rows if isinstance(rows, list) else [rows]:
        history = Path(row["output_dir"]) / "history.json"
        if not history.is_file():
            continue
        final = [entry for entry in read_json(history, "training history") if "train_runtime" in entry]
        if final:
            images += final[-1]["train_runtime"] * final[-1]["train_samples_per_second"]
            seconds += final[-1]["train_runtime"]
    return images, seconds


def sweep_throughput(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Aggregate and per-run img/s of the runs a sweep finished (None when it ran none)."""
    ran = [r for r in records if r.get("status") == "finished"]
    if not ran:
        return None
    images, rates, training = 0.0, [], []
    for record in ran:
        run_images, seconds = trained_images(Path(record["dir"]))
        images += run_images
        if seconds:
            rates.append(run_images / seconds)
            # the run trained for its last `seconds` before it ended (its export and card take a moment after)
            training.append((record["ended"] - seconds, record["ended"]))
    wall = max(r["ended"] for r in ran) - min(r["started"] for r in ran)
    span = max(end for _, end in training) - min(start for start, _ in training) if training else None
    return {"runs": len(ran), "images": images, "wall_s": wall, "aggregate_img_per_s": images / wall if wall else None,
            "training_span_s": span, "aggregate_training_img_per_s": images / span if span else None,
            "mean_run_img_per_s": statistics.mean(rates) if rates else None}


def write_throughput(output_dir: Path, throughput: dict[str, Any], runs_per_device: int) -> Path:
    """Write ``throughput.json`` beside the sweep's table and print its one-line summary."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / THROUGHPUT
    path.write_text(json.dumps({**throughput, "runs_per_device": runs_per_device}, indent=2))
    rate = throughput["aggregate_img_per_s"]
    if rate:
        print(f"hfkd sweep: {throughput['runs']} runs, {runs_per_device} at a time: {rate:.1f} training img/s "
              f"together", flush=True)
    return path
