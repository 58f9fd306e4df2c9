"""Errors a user can cause. Each carries one sentence naming the bad value and what would be valid."""

from __future__ import annotations


class HfkdError(Exception):
    """Base of every user-facing hfkd error; the CLI prints its message without a traceback."""

    def __init__(self, *args) -> None:
        # torch's DataLoader re-raises a worker's exception as ``type("Caught ... Original Traceback ...")``: keep
        # the sentence, which is the traceback's last line after the exception's name
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith("Caught "):
            lines = args[0].rstrip().splitlines()
            if len(lines) > 1 and lines[1].startswith("Original Traceback"):
                args = (lines[-1].split(": ", 1)[-1],)
        super().__init__(*args)


class RecipeError(HfkdError, ValueError):
    """A recipe key, value or override that cannot be used."""


class ModelLoadError(HfkdError, ValueError):
    """A model name, path or checkpoint that cannot be turned into a model."""


class DataError(HfkdError, ValueError):
    """A dataset, split or column that cannot be used."""


class IncompatibleSetupError(HfkdError, ValueError):
    """A teacher / student / dataset / method combination that cannot train (class counts, feature shapes)."""


class HubError(HfkdError, RuntimeError):
    """The Hub could not be reached or refused a request; local files are left as they were."""


class NonFiniteLossError(HfkdError, RuntimeError):
    """A loss term became nan or inf; training stopped without writing a checkpoint after it."""


class UnreadableFileError(HfkdError, ValueError):
    """A file hfkd opens is missing, truncated, corrupt or not of the kind expected; the message names the file."""


def describe_os_error(err: OSError) -> str:
    """One sentence for an operating-system error (disk full, permission denied, ...) naming the path it hit."""
    reason = err.strerror or str(err).strip().splitlines()[0] or type(err).__name__
    path = err.filename if err.filename is not None else None
    return f"{reason}: {str(path)!r}" if path is not None else reason
