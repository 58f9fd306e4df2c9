"""Train from a recipe: ``accelerate launch hfkd/run.py recipe.yaml [--key value ...]`` (what ``hfkd launch`` runs).

The same as ``hfkd train`` and ``python -m hfkd train``; the work is done by :mod:`hfkd.train`.
"""

import sys

from hfkd.train import main

if __name__ == "__main__":
    sys.exit(main())
