"""Running a sweep: every (recipe, seed) in its own folder, finished runs skipped, failures recorded, not raised."""

from __future__ import annotations

import fnmatch
import glob
import json
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..recipe import load_recipe

# a run folder holds one of these when the run is over: the stage rows written by the recipe runner, or the error
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
    """Recipe paths from paths and globs, in the order given (globs sorted), without repeats.

    Raises RecipeError when a glob matches nothing or a path is not a file.
    """
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


def run_folder(output_dir: Path, recipe: Path, seed: int) -> Path:
    """Where a sweep runs ``recipe`` at ``seed``: ``{output_dir}/{recipe name}/seed-{seed}``."""
    return output_dir / recipe.stem / f"seed-{seed}"


def _run_inline(run: SweepRun, overrides: list[str]) -> None:
    from ..train import run_recipe

    run_recipe(str(run.recipe), [*overrides, "--seed", str(run.seed), "--output_dir", str(run.output_dir)])


def _run_accelerate(run: SweepRun, overrides: list[str], accelerate_args: list[str]) -> None:
    script = Path(__file__).resolve().parents[1] / "run.py"  # hfkd/run.py, the script accelerate launches
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
    """Run every (recipe, seed) not finished yet; returns one record per run (finished, skipped or failed).

    Every recipe is loaded with the overrides first, so a bad recipe or override raises its RecipeError before any
    run starts; a run that fails later is recorded in its ``failed.json`` and the sweep goes on.
    """
    overrides = overrides or []
    for recipe in recipes:
        load_recipe(recipe, overrides)
    records = []
    for recipe in recipes:
        for seed in seeds_for(recipe, seeds, single_seed):
            run = SweepRun(recipe, seed, run_folder(output_dir, recipe, seed))
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
