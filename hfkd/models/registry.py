"""Name -> constructor registry for the CIFAR model zoo (reference names such as ``resnet8x4``, ``ShuffleV2_1_5``)."""

from __future__ import annotations

from typing import Callable

_MODEL_ENTRYPOINTS: dict[str, Callable] = {}


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Register ``fn(num_classes=100, **kwargs) -> FeatureClassifier`` under ``name`` (the reference spelling)."""

    def decorator(fn: Callable) -> Callable:
        if name in _MODEL_ENTRYPOINTS:
            raise ValueError(f"model name {name!r} is registered twice")
        _MODEL_ENTRYPOINTS[name] = fn
        return fn

    return decorator


def is_zoo_model(name: str) -> bool:
    return name in _MODEL_ENTRYPOINTS


def zoo_entrypoint(name: str) -> Callable:
    return _MODEL_ENTRYPOINTS[name]


def list_zoo_models() -> list[str]:
    return sorted(_MODEL_ENTRYPOINTS)
