"""Last-epoch and best-epoch accuracy from the Trainer's log history (both are reported; spec 8.17)."""

from __future__ import annotations

from typing import Any


def summarize_evaluations(log_history: list[dict[str, Any]], prefix: str = "eval") -> dict[str, Any]:
    """``{top1_last, top5_last, epoch_last, top1_best, top5_at_best, epoch_best, evaluations}`` or {} if none.

    The best epoch is selected on the evaluation split itself, as the references do; say so when reporting it.
    """
    evaluations = [entry for entry in log_history if f"{prefix}_top1" in entry]
    if not evaluations:
        return {}
    last = evaluations[-1]
    best = max(evaluations, key=lambda entry: entry[f"{prefix}_top1"])  # earliest epoch wins a tie
    return {
        "top1_last": last[f"{prefix}_top1"],
        "top5_last": last.get(f"{prefix}_top5"),
        "epoch_last": last.get("epoch"),
        "top1_best": best[f"{prefix}_top1"],
        "top5_at_best": best.get(f"{prefix}_top5"),
        "epoch_best": best.get("epoch"),
        "evaluations": len(evaluations),
    }
