"""The argument parser of hfkd's commands: a bad command line is one line, not argparse's usage block first."""

from __future__ import annotations

import argparse
from typing import NoReturn


class CommandLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors (a missing argument, an invalid choice, a value of the wrong type) are
    one line on stderr, ``<prog>: error: <what>; see <prog> --help``, with exit code 2 as argparse's own."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")
