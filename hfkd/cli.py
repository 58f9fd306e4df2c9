"""The ``hfkd`` command: ``hfkd train RECIPE [--key value ...]``."""

from __future__ import annotations

import sys

USAGE = """usage: hfkd train RECIPE.yaml [--key value ...]

  train    train the runs of a recipe (same as `accelerate launch hfkd/run.py RECIPE.yaml ...`)
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from .run import main as train_main

        return train_main(rest)
    print(f"hfkd: error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
