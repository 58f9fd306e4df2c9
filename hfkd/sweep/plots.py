"""The sweep's plots: a bar chart of mean top-1 per student, and the evaluation curves of every run label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..readable_files import read_json
from .table import display_order, mean_std


def plot_results(entries: list[dict[str, Any]], output_dir: Path) -> list[Path]:
    """A bar chart of mean top-1 per student (error bars = std over seeds) and each run's training curves.

    ``entries`` are :func:`hfkd.sweep.table.collect`'s; returns the PNG files written to ``output_dir``
    (``top1_{student}.png`` for each student with results, then ``curves.png``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    students = sorted({e["student"] for e in entries if e["student"] and e["top1"]})
    for student in students:
        group = display_order([e for e in entries if e["student"] == student and e["top1"]])
        means = [mean_std(list(e["top1"].values())) for e in group]
        figure, axis = plt.subplots(figsize=(max(4, 0.6 * len(group) + 1), 3.6), dpi=100)
        axis.bar([e["label"] for e in group], [m for m, _ in means], yerr=[s for _, s in means], capsize=3,
                 color=["#888888" if e["method"] == "none" else "#3b75af" for e in group])
        low = min(m - s for m, s in means)
        axis.set_ylim(max(0, low - 5), min(100, max(m + s for m, s in means) + 2))
        axis.set_ylabel("top-1 (%)")
        axis.set_title(f"student {student}")
        axis.tick_params(axis="x", rotation=45)
        figure.tight_layout()
        path = output_dir / f"top1_{student}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for entry in entries:
        for seed, folder in sorted(entry["dirs"].items())[:1]:  # one curve per run label: its first seed
            state = _trainer_history(Path(folder))
            points = [(h["epoch"], h["eval_top1"]) for h in state if "eval_top1" in h]
            if points:
                axis.plot(*zip(*points), marker=".", label=f"{entry['label']} ({entry['student']})")
    axis.set_xlabel("epoch")
    axis.set_ylabel("eval top-1 (%)")
    axis.legend(fontsize=6, ncol=2)
    figure.tight_layout()
    path = output_dir / "curves.png"
    figure.savefig(path)
    plt.close(figure)
    written.append(path)
    return written


def _trainer_history(folder: Path) -> list[dict[str, Any]]:
    history = folder / "history.json"
    return read_json(history, "training history") if history.is_file() else []
