"""Method name -> class (a plain dict, as in mdistiller)."""

from __future__ import annotations

from .base import DistillationMethod

METHODS: dict[str, type[DistillationMethod]] = {}
# trains the model alone, with no teacher (teacher training, student baselines)
NO_DISTILLATION = "none"


def register_method(cls: type[DistillationMethod]) -> type[DistillationMethod]:
    if not cls.name or cls.name in METHODS or cls.name == NO_DISTILLATION:
        raise ValueError(f"method class {cls.__name__} has a missing or duplicate name {cls.name!r}")
    METHODS[cls.name] = cls
    return cls


def known_method_names() -> list[str]:
    return [NO_DISTILLATION, *sorted(METHODS)]
