"""``python -m hfkd.sweep ...``: the same as ``hfkd sweep ...``."""

import os
import sys

from hfkd.sweep import main

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
