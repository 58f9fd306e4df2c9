"""The input normalisation and size a pretrained model declares (image processor or timm pretrained_cfg)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preprocessing:
    """Per-channel ``mean`` / ``std`` (in [0, 1] pixel units) and the square input ``size`` a model expects."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int | None = None

    def differs_from(self, mean, std, size: int | None) -> bool:
        close = all(abs(a - b) < 1e-4 for a, b in zip((*self.mean, *self.std), (*mean, *std)))
        return not close or (self.size is not None and size is not None and self.size != size)


def from_image_processor(processor) -> Preprocessing | None:
    """Read mean, std and the final input side from a transformers image processor."""
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if mean is None or std is None:
        return None
    size = None
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    for candidate in (crop, getattr(processor, "size", None)):
        size = _side(candidate)
        if size:
            break
    return Preprocessing(tuple(float(v) for v in mean), tuple(float(v) for v in std), int(size) if size else None)


def _side(size) -> int | None:
    """The square side of a processor size (a dict in older transformers, a SizeDict in 5.x)."""
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    return get("height") or get("shortest_edge")


def from_timm_config(pretrained_cfg: dict) -> Preprocessing | None:
    """Read mean, std and the input side from a timm ``pretrained_cfg`` (None when it declares no mean / std)."""
    mean, std = pretrained_cfg.get("mean"), pretrained_cfg.get("std")
    if mean is None or std is None:
        return None
    input_size = pretrained_cfg.get("input_size")
    return Preprocessing(tuple(mean), tuple(std), int(input_size[-1]) if input_size else None)


# PIL resampling filters (what ``processor.resample`` holds) by timm's interpolation names
_TIMM_INTERPOLATION = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def timm_data_config(processor) -> dict | None:
    """A transformers image processor's evaluation preprocessing as a timm ``data_config`` (``input_size``, ``mean``,
    ``std``, ``interpolation``, ``crop_pct``, ``crop_mode``), so that timm's ``resolve_data_config`` and transformers'
    ``TimmWrapperImageProcessor`` preprocess a timm export the way the processor does; None when it declares no
    mean / std or no size.

    A ``crop_pct`` processor (ConvNeXt's: short side to ``size / crop_pct``, then a centre crop below 384 pixels)
    keeps its crop; a centre-cropping processor gets ``crop_pct = crop / shortest edge``; any other resizes to the
    square side (timm's ``squash``).
    """
    declared = from_image_processor(processor)
    if declared is None or declared.size is None:
        return None
    side = declared.size
    resample = getattr(processor, "resample", None)
    config = {
        "input_size": (3, side, side),
        "mean": declared.mean,
        "std": declared.std,
        "interpolation": _TIMM_INTERPOLATION.get(int(resample), "bilinear") if resample is not None else "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "squash",
    }
    size = getattr(processor, "size", None)
    shortest = (size.get if isinstance(size, dict) else lambda key: getattr(size, key, None))("shortest_edge")
    crop_pct = getattr(processor, "crop_pct", None)
    if crop_pct and shortest and shortest < 384:
        config.update(crop_pct=float(crop_pct), crop_mode="center")
    elif getattr(processor, "do_center_crop", False) and shortest:
        config.update(crop_pct=side / shortest, crop_mode="center")
    return config


def load_declared_preprocessing(name_or_path: str, **hub_kwargs) -> Preprocessing | None:
    """The preprocessing saved with a model directory or Hub repo (``preprocessor_config.json``), if any."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(name_or_path, **hub_kwargs)
    except (OSError, ValueError):
        return None
    return from_image_processor(processor)
