"""Running a sweep: every (recipe, seed) in its own folder, finished runs skipped, failures recorded, not raised."""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..recipe import load_recipe
from .teacher_caches import cache_command, plan_teacher_caches

# a run folder holds one of these when the run is over: the stage rows written by the recipe runner, or the error
RESULTS = "results.json"
FAILED = "failed.json"


@dataclass
class SweepRun:
    """One recipe at one seed."""

    recipe: Path
    seed: int
    output_dir: Path
    # overrides of this run only (after the sweep's own): a shared teacher cache
    overrides: tuple[str, ...] = ()

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

    run_recipe(str(run.recipe), [*overrides, *run.overrides, "--seed", str(run.seed), "--output_dir", str(run.output_dir)])


def _run_process(run: SweepRun, overrides: list[str], launcher: str, accelerate_args: list[str]) -> None:
    """The run in a process of its own: ``hfkd launch`` (accelerate's launcher, ending with hfkd's sentence, which
    is what a failed run records) or ``python -m hfkd train``."""
    arguments = [str(run.recipe), *overrides, *run.overrides, "--seed", str(run.seed), "--output_dir",
                 str(run.output_dir)]
    if launcher == "accelerate":
        command = [sys.executable, "-m", "hfkd", "launch", *accelerate_args, *arguments]
    else:
        command = [sys.executable, "-m", "hfkd", "train", *arguments]
    _check_process(command, launcher)


def _check_process(command: list[str], launcher: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"{launcher} run exited with {done.returncode}")


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
    runs_per_device: int = 1,
    teacher_cache: bool = False,
) -> list[dict[str, Any]]:
    """Run every (recipe, seed) not finished yet; returns one record per run (finished, skipped or failed), with
    its start and end time (seconds since the epoch) for the runs that ran.

    Every recipe is loaded with the overrides first, so a bad recipe or override raises its RecipeError before any
    run starts; a run that fails later is recorded in its ``failed.json`` and the sweep goes on. With
    ``runs_per_device`` N > 1, up to N runs share the device at once, each in its own process (on the CPU with an
    N-th of the cores: ``--cpu_threads``); the ``single_seed`` recipes (shared teachers) all finish before the
    others start, since those may read them. With ``teacher_cache`` the logit runs of each (teacher, seed) train
    from one teacher cache (``teacher_caches``), built after the shared teachers and before those runs.
    """
    overrides = overrides or []
    for recipe in recipes:
        load_recipe(recipe, overrides)
    if runs_per_device < 1:
        raise RecipeError(f"runs_per_device must be >= 1, got {runs_per_device}")
    if runs_per_device > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // runs_per_device)
        overrides = [*overrides, "--cpu_threads", str(threads)]
    runs = [SweepRun(recipe, seed, run_folder(output_dir, recipe, seed))
            for recipe in recipes for seed in seeds_for(recipe, seeds, single_seed)]

    def execute(run: SweepRun) -> dict[str, Any]:
        return _execute(run, overrides, launcher, accelerate_args or [], in_process=runs_per_device == 1)

    if runs_per_device == 1 and not teacher_cache:
        return [execute(run) for run in runs]
    shared = [run for run in runs if any(fnmatch.fnmatch(run.recipe.name, p) for p in single_seed or [])]
    records = []
    for wave in (shared, [run for run in runs if run not in shared]):
        if teacher_cache and wave is not shared:
            pending = [run for run in wave if not (run.output_dir / RESULTS).is_file()]
            records += _build_teacher_caches(plan_teacher_caches(pending, output_dir, overrides).values(), overrides,
                                             launcher, accelerate_args or [], in_process=runs_per_device == 1)
        if runs_per_device == 1:
            records += [execute(run) for run in wave]
            continue
        with ThreadPoolExecutor(max_workers=runs_per_device) as pool:
            records += list(pool.map(execute, wave))
    return records


def _build_teacher_caches(caches, overrides: list[str], launcher: str, accelerate_args: list[str], in_process: bool
                          ) -> list[dict[str, Any]]:
    """Build (or finish) each shared cache, one after the other with the whole device; a failed build is reported
    and the runs reading it fail with the cache's own one-sentence error."""
    records = []
    for cache in caches:
        arguments = cache_command(cache, overrides)
        print(f"hfkd sweep: teacher cache for {len(cache.readers)} runs of seed {cache.seed} -> {cache.folder}",
              flush=True)
        started = time.time()
        try:
            if launcher == "inline" and in_process:
                from ..teacher_cache.build import main as cache_main

                if cache_main(arguments) != 0:
                    raise RuntimeError("hfkd cache-teacher failed (its error is above)")
            elif launcher == "accelerate":
                _check_process([sys.executable, "-m", "accelerate.commands.launch", *accelerate_args, "-m", "hfkd",
                                "cache-teacher", *arguments], launcher)
            else:
                _check_process([sys.executable, "-m", "hfkd", "cache-teacher", *arguments], launcher)
            status = "cached"
        except (Exception, SystemExit) as err:
            print(f"hfkd sweep: teacher cache {cache.folder} failed: {err}", file=sys.stderr, flush=True)
            status = "cache failed"
        records.append({"recipe": "teacher cache", "seed": cache.seed, "dir": str(cache.folder), "status": status,
                        "started": started, "ended": time.time()})
    return records


def _execute(run: SweepRun, overrides: list[str], launcher: str, accelerate_args: list[str], in_process: bool
             ) -> dict[str, Any]:
    """Run one (recipe, seed) unless it finished before; a failure is written to its ``failed.json``."""
    record = {"recipe": run.name, "seed": run.seed, "dir": str(run.output_dir)}
    results, failed = run.output_dir / RESULTS, run.output_dir / FAILED
    if results.is_file():
        return {**record, "status": "skipped"}
    failed.unlink(missing_ok=True)
    kept = set_aside_interrupted(run.output_dir)
    if kept is not None:
        print(f"hfkd sweep: {run.name} seed {run.seed} was interrupted earlier; its files are kept in {kept}",
              flush=True)
    print(f"hfkd sweep: {run.name} seed {run.seed} -> {run.output_dir}", flush=True)
    started = time.time()
    try:
        if launcher == "inline" and in_process:
            _run_inline(run, overrides)
        else:
            _run_process(run, overrides, launcher, accelerate_args)
        status = "finished"
    except (Exception, SystemExit) as err:  # a failed run is reported and the sweep goes on
        message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        run.output_dir.mkdir(parents=True, exist_ok=True)
        failed.write_text(json.dumps({"error": message, "traceback": traceback.format_exc()}, indent=2))
        print(f"hfkd sweep: {run.name} seed {run.seed} failed: {message}", file=sys.stderr, flush=True)
        status = "failed"
    return {**record, "status": status, "started": started, "ended": time.time()}
