"""``hfkd sweep``: run many recipes (and seeds), skip finished runs, and tabulate and plot the results.

    hfkd sweep "recipes/cifar10-mini/*.yaml" --seeds 0 1 2 --output_dir sweeps/cifar10-mini -- --dataset_name DIR

Every (recipe, seed) runs in ``{output_dir}/{recipe name}/seed-{seed}`` (its stages below it), is skipped when its
``results.json`` exists (so an interrupted sweep resumes; what an interrupted run left is moved to
``seed-{seed}.interrupted-{k}`` and the run starts over), and is recorded as failed, without stopping the sweep,
when it raises or exits non-zero. The table has one row per method (run label) and one column per student, with the
mean +- std of the last-epoch top-1 over seeds; a recipe's ``reference_top1`` is shown beside the measured value.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import math
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HfkdError, RecipeError
from .recipe import load_recipe

RESULTS = "results.json"
FAILED = "failed.json"


@dataclass
class SweepRun:
    """One recipe at one seed."""

    recipe: Path
    seed: int
    output_dir: Path

    @property
    def name(self) -> str:
        return self.recipe.stem


def expand_recipes(patterns: list[str]) -> list[Path]:
    """Recipe paths from paths and globs, in the order given (globs sorted), without repeats."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not matches:
            raise RecipeError(f"no recipe matches {pattern!r}")
        for match in matches:
            path = Path(match)
            if not path.is_file():
                raise RecipeError(f"recipe {str(path)!r} does not exist")
            if path not in paths:
                paths.append(path)
    return paths


def _run_inline(run: SweepRun, overrides: list[str]) -> None:
    from .train import run_recipe

    run_recipe(str(run.recipe), [*overrides, "--seed", str(run.seed), "--output_dir", str(run.output_dir)])


def _run_accelerate(run: SweepRun, overrides: list[str], accelerate_args: list[str]) -> None:
    script = Path(__file__).resolve().parent / "run.py"
    command = [sys.executable, "-m", "accelerate.commands.launch", *accelerate_args, str(script), str(run.recipe),
               *overrides, "--seed", str(run.seed), "--output_dir", str(run.output_dir)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"accelerate launch exited with {done.returncode}")


def seeds_for(recipe: Path, seeds: list[int], single_seed: list[str] | None) -> list[int]:
    """All seeds, or only the first for a recipe whose file name matches a ``single_seed`` pattern (a teacher)."""
    if any(fnmatch.fnmatch(recipe.name, pattern) for pattern in single_seed or []):
        return seeds[:1]
    return seeds


def set_aside_interrupted(run_dir: Path) -> Path | None:
    """Move what an interrupted (or failed) run left behind to ``{run_dir}.interrupted-{k}``, so that the run starts
    over in a clean folder and no file it wrote is lost; None when there is nothing to move."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    k = 1
    while run_dir.with_name(f"{run_dir.name}.interrupted-{k}").exists():
        k += 1
    return run_dir.rename(run_dir.with_name(f"{run_dir.name}.interrupted-{k}"))


def run_sweep(
    recipes: list[Path],
    seeds: list[int],
    output_dir: Path,
    overrides: list[str] | None = None,
    launcher: str = "inline",
    accelerate_args: list[str] | None = None,
    single_seed: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Run every (recipe, seed) not finished yet; returns one record per run (finished, skipped or failed)."""
    overrides = overrides or []
    for recipe in recipes:
        load_recipe(recipe, overrides)  # a bad recipe or override is one clear error before anything runs
    records = []
    for recipe in recipes:
        for seed in seeds_for(recipe, seeds, single_seed):
            run = SweepRun(recipe, seed, output_dir / recipe.stem / f"seed-{seed}")
            results, failed = run.output_dir / RESULTS, run.output_dir / FAILED
            if results.is_file():
                records.append({"recipe": run.name, "seed": seed, "status": "skipped", "dir": str(run.output_dir)})
                continue
            failed.unlink(missing_ok=True)
            kept = set_aside_interrupted(run.output_dir)
            if kept is not None:
                print(f"hfkd sweep: {run.name} seed {seed} was interrupted earlier; its files are kept in {kept}",
                      flush=True)
            print(f"hfkd sweep: {run.name} seed {seed} -> {run.output_dir}", flush=True)
            try:
                if launcher == "accelerate":
                    _run_accelerate(run, overrides, accelerate_args or [])
                else:
                    _run_inline(run, overrides)
                status = "finished"
            except (Exception, SystemExit) as err:  # a failed run is reported and the sweep goes on
                message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
                run.output_dir.mkdir(parents=True, exist_ok=True)
                failed.write_text(json.dumps({"error": message, "traceback": traceback.format_exc()}, indent=2))
                print(f"hfkd sweep: {run.name} seed {seed} failed: {message}", file=sys.stderr, flush=True)
                status = "failed"
            records.append({"recipe": run.name, "seed": seed, "status": status, "dir": str(run.output_dir)})
    return records


# ---- collecting -------------------------------------------------------------------------------------------


def _stage_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The results rows of a finished run (one per stage)."""
    data = json.loads((run_dir / RESULTS).read_text())
    return data if isinstance(data, list) else [data]


def _reference(run_dir: Path, stage_dir: Path) -> tuple[float | None, str | None]:
    recipe = stage_dir / "recipe.yaml"
    if not recipe.is_file():
        return None, None
    import yaml

    values = yaml.safe_load(recipe.read_text()) or {}
    return values.get("reference_top1"), values.get("reference_source")


def collect(recipes: list[Path], seeds: list[int], output_dir: Path) -> list[dict[str, Any]]:
    """One entry per (recipe, stage): label, student, method, per-seed top-1 / top-5, failures, reference."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for recipe in recipes:
        for seed in seeds:  # seeds a recipe did not run with are simply absent
            run_dir = output_dir / recipe.stem / f"seed-{seed}"
            if (run_dir / FAILED).is_file():
                error = json.loads((run_dir / FAILED).read_text())["error"]
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
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return ""
    parts = []
    if entry["top1"]:
        mean, std = mean_std(list(entry["top1"].values()))
        n = len(entry["top1"])
        parts.append(f"{mean:.2f} ± {std:.2f} ({n})" if n > 1 else f"{mean:.2f}")
        reference = entry.get("reference_top1")
        if reference is not None:
            parts.append(f"[ref {reference:.2f}, {mean - reference:+.2f}]")
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


def results_table(entries: list[dict[str, Any]]) -> str:
    """Rows = run labels (teacher and student-alone first, then the methods in the seed table's order), columns =
    students; mean ± std (n seeds) of top-1."""
    students = []
    for entry in entries:
        if entry["student"] and entry["method"] != "none" and entry["student"] not in students:
            students.append(entry["student"])
    students = students or sorted({e["student"] for e in entries if e["student"]})
    teachers = [e for e in entries if e["method"] == "none" and e["student"] not in students]
    alone = [e for e in entries if e["method"] == "none" and e["student"] in students]
    distilled = sorted((e for e in entries if e["method"] not in (None, "none")), key=_table_rank)
    lines = ["| method | " + " | ".join(students) + " |", "|---|" + "---|" * len(students)]
    for teacher in teachers:
        lines.append(f"| teacher {teacher['student']} | " + " | ".join(_cell(teacher) for _ in students) + " |")
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
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    failed_only = [e for e in entries if e["student"] is None]
    for entry in failed_only:
        lines.append(f"| {entry['label']} | " + " | ".join(_cell(entry) for _ in students or [None]) + " |")
    note = (
        "\nTop-1 (%) at the last epoch on the evaluation split: mean ± sample std over the seeds run (their count in "
        "parentheses). `[ref x, ±d]` is the published figure the recipe names and the measured difference."
    )
    return "\n".join(lines) + "\n" + note + "\n"


def plot_results(entries: list[dict[str, Any]], output_dir: Path) -> list[Path]:
    """A bar chart of mean top-1 per student (error bars = std over seeds) and each run's training curves."""
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
    return json.loads(history.read_text()) if history.is_file() else []


def write_report(recipes: list[Path], seeds: list[int], output_dir: Path) -> str:
    entries = collect(recipes, seeds, output_dir)
    table = results_table(entries)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.md").write_text(table)
    (output_dir / "results.json").write_text(json.dumps(entries, indent=2, default=str))
    plot_results(entries, output_dir)
    return table


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, overrides = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(prog="hfkd sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", help="recipe files or globs (quote globs)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds to run every recipe with")
    parser.add_argument("--output_dir", default="sweeps/sweep", help="where the runs and the report go")
    parser.add_argument("--launcher", choices=["inline", "accelerate"], default="inline",
                        help="run in this process, or each run through `accelerate launch`")
    parser.add_argument("--accelerate_args", default="", help="arguments for accelerate launch, one string")
    parser.add_argument("--single_seed", nargs="+", default=None, metavar="PATTERN",
                        help="recipe file names (globs) run with the first seed only, e.g. a shared teacher")
    parser.add_argument("--report_only", action="store_true", help="only (re)write the table and plots")
    args = parser.parse_args(argv)
    try:
        recipes = expand_recipes(args.recipes)
        output_dir = Path(args.output_dir)
        if not args.report_only:
            records = run_sweep(recipes, args.seeds, output_dir, overrides, args.launcher,
                                args.accelerate_args.split(), args.single_seed)
            failed = [r for r in records if r["status"] == "failed"]
        else:
            failed = []
        print("\n" + write_report(recipes, args.seeds, output_dir))
    except HfkdError as err:
        print(f"hfkd: error: {err}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
