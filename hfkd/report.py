"""The results table printed after a recipe's runs (and written to ``results.md`` / ``results.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = (
    ("stage", "stage"),
    ("student", "student"),
    ("teacher", "teacher"),
    ("method", "method"),
    ("top1_last", "top-1 last"),
    ("top1_best", "top-1 best"),
    ("epoch_best", "best epoch"),
    ("top5_last", "top-5 last"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.2f}"
    return str(value)


def results_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table, one row per run; accuracies are percentages on the evaluation split."""
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key)) for key, _ in COLUMNS) + " |")
    note = (
        "\nAccuracies in % on the evaluation split; 'best' is the best epoch selected on that same split "
        "(as the reference toolboxes do), 'last' the final epoch."
    )
    return "\n".join(lines) + "\n" + note + "\n"


def write_results(rows: list[dict[str, Any]], output_dir: str | Path) -> str:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = results_table(rows)
    (output_dir / "results.md").write_text(table)
    (output_dir / "results.json").write_text(json.dumps(rows, indent=2))
    return table
