"""``python -m hfkd {train,push,convert,sweep} ...``: the ``hfkd`` command."""

import sys

from hfkd.cli import main

if __name__ == "__main__":
    sys.exit(main())
