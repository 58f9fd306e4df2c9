"""``hfkd launch [accelerate launch options] RECIPE [--key value ...]``: ``accelerate launch hfkd/run.py`` that ends
with hfkd's sentence.

``accelerate launch`` reports a training process that exits non-zero by raising: ``subprocess.CalledProcessError``
from its one-process launcher (quiet only with ``--quiet``, which turns exit code 2 into 1), torch's
``ChildFailedError`` from its multi-process one (``--multi_gpu``, torchrun). Either way a bad input ends in a
launcher traceback after hfkd's one sentence. This command takes the same options and runs the same launcher, but
checks the recipe first, in the launching process, before any training process starts (so a bad recipe is one
sentence, once, whatever the process count), and reports a training process's failure by exiting with its exit code:
the process has printed its own sentence (or its traceback, for a fault that is not a bad input).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from .cli_parser import CommandLineParser
from .errors import HfkdError

RUN_SCRIPT = Path(__file__).resolve().with_name("run.py")


def main(argv: list[str] | None = None) -> int:
    """Check the recipe, then ``accelerate launch hfkd/run.py RECIPE [overrides]`` with the given launcher options;
    0 on success, 2 with one sentence for a bad recipe, else the failed training process's exit code."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = launch_command_parser()
    parser.prog = "hfkd launch"
    parser.error = CommandLineParser.error.__get__(parser)  # one line, not accelerate's usage block
    for action in parser._actions:  # the training script accelerate asks for is hfkd/run.py; the user gives a recipe
        if action.dest in ("training_script", "training_script_args"):
            action.metavar = "RECIPE" if action.dest == "training_script" else "--key value"
    args = parser.parse_args(argv)  # accelerate's options, then the recipe (its "training script") and overrides
    recipe, overrides = args.training_script, list(args.training_script_args)
    try:
        from .recipe import load_recipe

        load_recipe(recipe, overrides)
    except HfkdError as err:
        print(f"hfkd: error: {err}", file=sys.stderr)
        return 2
    args.training_script, args.training_script_args = str(RUN_SCRIPT), [recipe, *overrides]
    # torchrun's "failed (exitcode: 2) local_rank: 0 ... of binary" and "Sending process ... closing signal" lines
    # repeat, after the processes' own sentences, what the exit code says
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    try:
        launch_command(args)
    except subprocess.CalledProcessError as err:  # one process: it printed why it stopped
        return err.returncode if err.returncode > 0 else 128 - err.returncode  # killed by a signal: 128 + signal
    except Exception as err:  # torchrun's ChildFailedError: the first failed process's exit code
        failures = getattr(err, "failures", None)
        if not failures:
            raise
        return next(iter(failures.values())).exitcode or 1
    return 0
