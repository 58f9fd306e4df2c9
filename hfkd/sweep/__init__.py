"""``hfkd sweep``: run many recipes (and seeds), skip finished runs, and tabulate and plot the results.

    hfkd sweep "recipes/cifar10-mini/*.yaml" --seeds 0 1 2 --output_dir sweeps/cifar10-mini -- --dataset_name DIR
    hfkd sweep ... --teacher_cache        # logit methods of each (teacher, seed) share one teacher cache

Every (recipe, seed) runs in ``{output_dir}/{recipe name}/seed-{seed}`` (its stages below it), is skipped when its
``results.json`` exists (so an interrupted sweep resumes; what an interrupted run left is moved to
``seed-{seed}.interrupted-{k}`` and the run starts over), and is recorded as failed, without stopping the sweep,
when it raises or exits non-zero. The table has one row per method (run label) and one column per student, with the
mean +- std of the last-epoch top-1 over seeds; a recipe's ``reference_top1`` is shown beside the measured value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli_parser import CommandLineParser
from ..errors import HfkdError
from .plots import plot_results
from .runner import SweepRun, expand_recipes, run_sweep, seeds_for, set_aside_interrupted
from .table import TABLE_ORDER, collect, display_order, mean_std, results_table, write_report
from .throughput import sweep_throughput, write_throughput

__all__ = [
    "TABLE_ORDER", "SweepRun", "collect", "display_order", "expand_recipes", "main", "mean_std", "plot_results",
    "results_table", "run_sweep", "seeds_for", "set_aside_interrupted", "write_report",
]


def main(argv: list[str] | None = None) -> int:
    """The ``hfkd sweep`` command; returns 0 when every run finished or was skipped, 1 when a run failed, and 2 when
    a recipe, glob or override is bad (reported in one line, before anything runs)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, overrides = argv[:at], argv[at + 1:]
    parser = CommandLineParser(prog="hfkd sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", help="recipe files or globs (quote globs)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds to run every recipe with")
    parser.add_argument("--output_dir", default="sweeps/sweep", help="where the runs and the report go")
    parser.add_argument("--launcher", choices=["inline", "accelerate"], default="inline",
                        help="run in this process, or each run through `hfkd launch` (accelerate)")
    parser.add_argument("--accelerate_args", default="", help="arguments for accelerate launch, one string")
    parser.add_argument("--single_seed", nargs="+", default=None, metavar="PATTERN",
                        help="recipe file names (globs) run with the first seed only, e.g. a shared teacher")
    parser.add_argument("--runs_per_device", type=int, default=1, metavar="N",
                        help="run up to N runs at once on the device, each in its own process (on the CPU each gets "
                             "1/N of the cores); shared teachers (--single_seed) finish first")
    parser.add_argument("--report_only", action="store_true", help="only (re)write the table and plots")
    parser.add_argument("--teacher_cache", action="store_true",
                        help="run each teacher once per seed: its logit-method runs (kd, dkd, dist, logit_std, "
                             "spherical, deit) train from one shared teacher cache, built after the shared teachers")
    args = parser.parse_args(argv)
    try:
        recipes = expand_recipes(args.recipes)
        output_dir = Path(args.output_dir)
        if not args.report_only:
            records = run_sweep(recipes, args.seeds, output_dir, overrides, args.launcher,
                                args.accelerate_args.split(), args.single_seed, args.runs_per_device,
                                args.teacher_cache)
            failed = [r for r in records if r["status"] == "failed"]
            throughput = sweep_throughput(records)
            if throughput is not None:
                write_throughput(output_dir, throughput, args.runs_per_device)
        else:
            failed = []
        print("\n" + write_report(recipes, args.seeds, output_dir))
    except HfkdError as err:
        print(f"hfkd: error: {err}", file=sys.stderr)
        return 2
    return 1 if failed else 0
