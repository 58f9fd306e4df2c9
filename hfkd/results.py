"""Results: the last- and best-epoch summary of a run, and the one way hfkd renders them as table cells.

The stage table printed after a recipe (``results.md``), the sweep table and the model card's results table all
format their cells with :func:`format_cell` and lay out rows with :func:`markdown_table`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# the caveat every results table carries: "best" is selected on the evaluation split itself (spec 8.17)
BEST_EPOCH_NOTE = (
    "Accuracies in % on the evaluation split; 'best' is the best epoch selected on that same split "
    "(as the reference toolboxes do), 'last' the final epoch."
)
STAGE_COLUMNS = (
    ("stage", "stage"),
    ("student", "student"),
    ("teacher", "teacher"),
    ("method", "method"),
    ("top1_last", "top-1 last"),
    ("top1_best", "top-1 best"),
    ("epoch_best", "best epoch"),
    ("top5_last", "top-5 last"),
)
# cells holding an epoch count: whole epochs print without decimals
EPOCH_KEYS = frozenset({"epoch_best", "epoch_last"})


def summarize_evaluations(log_history: list[dict[str, Any]], prefix: str = "eval") -> dict[str, Any]:
    """``{top1_last, top5_last, epoch_last, top1_best, top5_at_best, epoch_best, evaluations}`` or {} if none.

    ``log_history`` is the Trainer's ``state.log_history``; accuracies are in %. The best epoch is selected on the
    evaluation split itself, as the references do (spec 8.17); say so when reporting it. A tie keeps the earliest.
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


def format_cell(value: Any, epoch: bool = False) -> str:
    """A table cell: ``-`` for a missing value, accuracies (any float) with two decimals, an ``epoch`` as a whole
    number when it is one, anything else as its ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return str(int(value)) if epoch and value.is_integer() else f"{value:.2f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table from already formatted cells (no trailing newline)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def stage_table(rows: list[dict[str, Any]]) -> str:
    """The table printed after a recipe: one row per stage, accuracies in % on the evaluation split."""
    cells = [[format_cell(row.get(key), epoch=key in EPOCH_KEYS) for key, _ in STAGE_COLUMNS] for row in rows]
    return markdown_table([title for _, title in STAGE_COLUMNS], cells) + "\n\n" + BEST_EPOCH_NOTE + "\n"


def write_results(rows: list[dict[str, Any]], output_dir: str | Path) -> str:
    """Write ``results.md`` (the stage table) and ``results.json`` (the rows) to ``output_dir``; return the table."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = stage_table(rows)
    (output_dir / "results.md").write_text(table)
    (output_dir / "results.json").write_text(json.dumps(rows, indent=2))
    return table
