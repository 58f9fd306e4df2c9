"""Errors a user can cause. Each carries one sentence naming the bad value and what would be valid."""


class HfkdError(Exception):
    """Base of every user-facing hfkd error; the CLI prints its message without a traceback."""


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
