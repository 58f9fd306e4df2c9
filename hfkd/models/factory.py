"""``create_model``: one entry point for every model source a recipe can name (DESIGN.md, "Models")."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from torch import nn

from ..errors import ModelLoadError
from .modeling_hfkd import TIMM_PREFIX, HfkdForImageClassification, build_architecture
from .timm_adapter import TimmFeatureClassifier
from .reference_checkpoint import load_reference_checkpoint
from .registry import is_zoo_model, list_zoo_models

_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pth.tar")


def create_model(name_or_path: str, num_classes: int | None = None, **kwargs) -> nn.Module:
    """A model honouring hfkd's contract (``model(x, return_features=True)`` -> logits + feats, ``.classifier``).

    Accepts a CIFAR zoo name, an hfkd export directory, a reference ``.pth`` checkpoint (``arch=`` when the folder
    name does not say it), or a timm model name (random init unless ``pretrained=True``; ``timm/...`` and
    ``hf-hub:...`` ids load their pretrained weights). ``num_classes`` sizes a new model; a loaded model keeps
    its own head. The source is recorded in ``model.hfkd_architecture`` for the export.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()

    if is_zoo_model(name):
        model = build_architecture(name, num_classes or 100, kwargs or None)
        model.hfkd_architecture = name
        return model

    if name.endswith(_CHECKPOINT_SUFFIXES):
        return load_reference_checkpoint(path, arch=kwargs.get("arch"))

    if path.is_dir():
        return _load_directory(path)

    timm_name = _timm_name(name)
    if timm_name is not None:
        return _create_timm_model(name, timm_name, num_classes, kwargs)

    close = difflib.get_close_matches(name, list_zoo_models(), n=3, cutoff=0.5)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ModelLoadError(
        f"model {name!r} is not a CIFAR zoo name{hint}, an existing directory, a .pth checkpoint or a timm model name"
    )


def _create_timm_model(name: str, timm_name: str, num_classes: int | None, kwargs: dict) -> nn.Module:
    import timm

    pretrained = kwargs.pop("pretrained", name.startswith(("timm/", "hf-hub:")))
    source = ("hf-hub:" + name if name.startswith("timm/") else name) if pretrained else timm_name
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    timm_model = timm.create_model(source, pretrained=pretrained, **kwargs)
    model = TimmFeatureClassifier(timm_model)
    architecture = timm_model.pretrained_cfg.get("architecture") or timm_name
    model.hfkd_architecture = TIMM_PREFIX + architecture
    model.hfkd_architecture_kwargs = {k: v for k, v in kwargs.items() if k != "num_classes"} or None
    return model


def _timm_name(name: str) -> str | None:
    """The timm architecture a name refers to, or None when timm does not know it."""
    import timm

    if name.startswith("timm/"):
        return name[len("timm/") :]
    if name.startswith("hf-hub:"):
        return name[len("hf-hub:") :].removeprefix("timm/")
    return name if timm.is_model(name) else None


def _load_directory(path: Path) -> nn.Module:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"directory {str(path)!r} has no config.json, so it is not a saved model")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type == "hfkd":
        model = HfkdForImageClassification.from_pretrained(path)
        model.hfkd_architecture = model.config.architecture
        return model.eval()
    raise ModelLoadError(f"directory {str(path)!r} holds a {model_type!r} model, which hfkd cannot load yet")
