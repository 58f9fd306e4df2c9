"""The ``hfkd`` command: train a recipe, push a finished run, convert a reference checkpoint, sweep, cache a teacher."""

from __future__ import annotations

import sys

from .cli_parser import CommandLineParser
from .errors import HfkdError, describe_os_error

USAGE = """usage: hfkd {train,launch,push,convert,sweep,cache-teacher} ...

  train RECIPE.yaml [--key value ...]     train a recipe's runs in this process
  launch [ACCELERATE OPTIONS] RECIPE.yaml [--key value ...]
                                          `accelerate launch hfkd/run.py ...` that checks the recipe first and
                                          ends with hfkd's sentence, not the launcher's traceback
  push OUTPUT_DIR [--hub_model_id ID]     push a finished run's export, model card and records to the Hub
  convert PTH OUTPUT_DIR [--arch NAME]    turn a SimKD / RepDistiller release checkpoint into an hfkd export
  sweep RECIPES... [--seeds 0 1 2]        run recipes x seeds (resumable) and write a results table and plots
  cache-teacher RECIPE.yaml [--key value]  run the teacher once over every training view into teacher_cache
"""


def _push(argv: list[str]) -> int:
    parser = CommandLineParser(prog="hfkd push", description="Push a finished run to the Hub.")
    parser.add_argument("output_dir")
    parser.add_argument("--hub_model_id", default=None, help="user/repo (default: the run's hub_model_id or folder)")
    parser.add_argument("--hub_private_repo", action="store_true", help="create the repo as private")
    parser.add_argument("--revision", default=None, help="branch to push to (default: main)")
    args = parser.parse_args(argv)
    from .hub import push_run

    repo_id = push_run(args.output_dir, args.hub_model_id, private=args.hub_private_repo or None,
                       revision=args.revision)
    print(f"pushed {args.output_dir} to {repo_id}")
    return 0


def _convert(argv: list[str]) -> int:
    parser = CommandLineParser(prog="hfkd convert", description="Convert a reference .pth to an export.")
    parser.add_argument("checkpoint", help="a .pth holding {'model': state_dict, ...}")
    parser.add_argument("output_dir", help="a new folder for the export")
    parser.add_argument("--arch", default=None, help="architecture, when the checkpoint's folder name does not say")
    parser.add_argument("--dataset", default="cifar100", choices=["cifar100", "imagenet"],
                        help="the normalisation the reference trained with")
    parser.add_argument("--class_names", default=None, help="a text file with one class name per line")
    args = parser.parse_args(argv)
    from .convert import convert_reference_checkpoint
    from .readable_files import read_text_lines

    names = read_text_lines(args.class_names, "class-names file") if args.class_names else None
    output = convert_reference_checkpoint(args.checkpoint, args.output_dir, args.arch, names, args.dataset)
    print(f"wrote {output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from .train import main as train_main

        return train_main(rest)
    if command == "launch":
        from .accelerate_launcher import main as launch_main

        return launch_main(rest)
    if command == "sweep":
        from .sweep import main as sweep_main

        return sweep_main(rest)
    if command == "cache-teacher":
        from .teacher_cache.build import main as cache_main

        return cache_main(rest)
    commands = {"push": _push, "convert": _convert}
    if command not in commands:
        print(f"hfkd: error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return commands[command](rest)
    except HfkdError as err:
        print(f"hfkd: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, permission denied, ... while writing: not the user's input, so exit 1
        print(f"hfkd: error: {describe_os_error(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
