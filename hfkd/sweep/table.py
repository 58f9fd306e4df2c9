"""The sweep's report: finished runs collected into one entry per (recipe, stage), their statistics over seeds, the
results table, and ``results.md`` / ``results.json`` / plots written beside the runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..readable_files import read_json, read_yaml
from ..results import format_cell, markdown_table
from .runner import FAILED, RESULTS, run_folder


def _stage_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The results rows of a finished run (one per stage)."""
    data = read_json(run_dir / RESULTS, "sweep results file")
    return data if isinstance(data, list) else [data]


def _reference(run_dir: Path, stage_dir: Path) -> tuple[float | None, str | None]:
    recipe = stage_dir / "recipe.yaml"
    if not recipe.is_file():
        return None, None
    values = read_yaml(recipe, "resolved recipe") or {}
    return values.get("reference_top1"), values.get("reference_source")


def collect(recipes: list[Path], seeds: list[int], output_dir: Path) -> list[dict[str, Any]]:
    """One entry per (recipe, stage): label, student, method, per-seed top-1 / top-5, failures, reference."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for recipe in recipes:
        for seed in seeds:  # seeds a recipe did not run with are simply absent
            run_dir = run_folder(output_dir, recipe, seed)
            if (run_dir / FAILED).is_file():
                error = (read_json(run_dir / FAILED, "sweep failure record") or {}).get("error")
                entry = entries.setdefault((recipe.stem, ""), {"label": recipe.stem, "student": None, "method": None,
                                                               "top1": {}, "top5": {}, "failed": {}, "dirs": {}})
                entry["failed"][seed] = error
                continue
            if not (run_dir / RESULTS).is_file():
                continue
            rows = _stage_rows(run_dir)
            for row in rows:
                label = recipe.stem if len(rows) == 1 else row["stage"]
                entry = entries.setdefault((recipe.stem, row["stage"]), {
                    "label": label, "student": row["student"], "method": row["method"], "teacher": row["teacher"],
                    "top1": {}, "top5": {}, "failed": {}, "dirs": {},
                })
                entry["top1"][seed], entry["top5"][seed] = row.get("top1_last"), row.get("top5_last")
                entry["dirs"][seed] = row["output_dir"]
                reference, source = _reference(run_dir, Path(row["output_dir"]))
                if reference is not None:
                    entry["reference_top1"], entry["reference_source"] = reference, source
    for (stem, stage), failure in list(entries.items()):
        finished = [entry for key, entry in entries.items() if key[0] == stem and key[1]]
        if stage == "" and len(finished) == 1:  # a one-stage recipe that failed on some seeds only: one row
            finished[0]["failed"].update(failure["failed"])
            del entries[(stem, stage)]
    return list(entries.values())


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0.0 for one value) of the values that are not None; (None, None) if none."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def _signed(value: float | None) -> str:
    """A difference as :func:`format_cell` writes numbers, with its sign (``+0.25``, ``-1.10``)."""
    text = format_cell(value)
    return text if value is None or text.startswith("-") else "+" + text


def _cell(entry: dict[str, Any]) -> str:
    """One table cell: mean ± std (n) of the seeds' top-1 (the mean alone for one seed), the reference and the
    difference to it, and the count of failed seeds."""
    parts = []
    if entry["top1"]:
        mean, std = mean_std(list(entry["top1"].values()))
        n = len(entry["top1"])
        parts.append(f"{format_cell(mean)} ± {format_cell(std)} ({n})" if n > 1 else format_cell(mean))
        reference = entry.get("reference_top1")
        if reference is not None:
            reference = float(reference)  # a YAML `40` is an int; it prints as every other accuracy does
            difference = None if mean is None else mean - reference
            parts.append(f"[ref {format_cell(reference)}, {_signed(difference)}]")
    if entry["failed"]:
        parts.append(f"failed ({len(entry['failed'])} seed{'s' if len(entry['failed']) > 1 else ''})")
    return " ".join(parts)


# the seed table's row order (SimKD README), then the later methods; a method not listed goes last
TABLE_ORDER = ("kd", "fitnet", "at", "sp", "vid", "crd", "srrl", "semckd", "simkd", "spherical", "dkd", "dist",
               "logit_std", "pkt", "rkd", "cc", "nst")


def _table_rank(entry: dict[str, Any]) -> int:
    return TABLE_ORDER.index(entry["method"]) if entry["method"] in TABLE_ORDER else len(TABLE_ORDER)


def display_order(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs without distillation first, then the methods in the seed table's order (ties keep the recipe order)."""
    return sorted(entries, key=lambda e: (e["method"] not in (None, "none"), _table_rank(e)))


TABLE_NOTE = (
    "Top-1 (%) at the last epoch on the evaluation split: mean ± sample std over the seeds run (their count in "
    "parentheses). `[ref x, ±d]` is the published figure the recipe names and the measured difference."
)


def results_table(entries: list[dict[str, Any]]) -> str:
    """The sweep's markdown table of :func:`collect`'s entries, with its note below it.

    Rows = run labels (teacher and student-alone first, then the methods in the seed table's order, then recipes that
    failed on every seed), columns = students; cells are mean ± std (n seeds) of the last-epoch top-1.
    """
    students = []
    for entry in entries:
        if entry["student"] and entry["method"] != "none" and entry["student"] not in students:
            students.append(entry["student"])
    students = students or sorted({e["student"] for e in entries if e["student"]})
    teachers = [e for e in entries if e["method"] == "none" and e["student"] not in students]
    alone = [e for e in entries if e["method"] == "none" and e["student"] in students]
    distilled = sorted((e for e in entries if e["method"] not in (None, "none")), key=_table_rank)
    rows = [[f"teacher {teacher['student']}", *(_cell(teacher) for _ in students)] for teacher in teachers]
    for group in (alone, distilled):
        labels = []
        for entry in group:
            if entry["label"] not in labels:
                labels.append(entry["label"])
        for label in labels:
            cells = []
            for student in students:
                match = [e for e in group if e["label"] == label and e["student"] == student]
                cells.append(_cell(match[0]) if match else "")
            rows.append([label, *cells])
    columns = students or [""]  # runs that all failed have no student: they still get one column for the failure
    rows += [[entry["label"], *(_cell(entry) for _ in columns)] for entry in entries if entry["student"] is None]
    return markdown_table(["method", *columns], rows) + "\n\n" + TABLE_NOTE + "\n"


def write_report(recipes: list[Path], seeds: list[int], output_dir: Path) -> str:
    """Write the sweep's ``results.md`` (the table), ``results.json`` (the entries) and plots to ``output_dir``;
    return the table."""
    from .plots import plot_results  # imported here: the plots build on this module's order and statistics

    entries = collect(recipes, seeds, output_dir)
    table = results_table(entries)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.md").write_text(table)
    (output_dir / "results.json").write_text(json.dumps(entries, indent=2, default=str))
    plot_results(entries, output_dir)
    return table
