"""``create_model``: one entry point for every model source a recipe can name (DESIGN.md, "Models")."""

from __future__ import annotations

import difflib
from pathlib import Path

from torch import nn

from ..errors import ModelLoadError, UnreadableFileError
from ..readable_files import check_safetensors, check_torch_archive, read_json
from .deit_adapter import DeiTFeatureClassifier
from .modeling_hfkd import TIMM_PREFIX, HfkdForImageClassification, build_architecture
from .preprocessing import from_timm_config, load_declared_preprocessing
from .provenance import ModelProvenance, attach_provenance, provenance_of
from .reference_checkpoint import load_reference_checkpoint
from .registry import is_zoo_model, list_zoo_models
from .timm_adapter import TimmFeatureClassifier
from .transformers_adapter import TransformersFeatureClassifier

_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pth.tar")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def create_model(
    name_or_path: str,
    num_classes: int | None = None,
    trust_remote_code: bool = False,
    arch: str | None = None,
    **kwargs,
) -> nn.Module:
    """A model honouring hfkd's contract (``model(x, return_features=True)`` -> logits + feats, ``.classifier``).

    Accepts, in this order: a CIFAR zoo name; a reference ``.pth`` checkpoint (``arch=`` when its folder name does
    not say it); a local directory holding an hfkd export, a timm checkpoint (``save_for_hf``'s layout, as hfkd
    exports timm students) or any transformers image classifier; a timm name (random init unless
    ``pretrained=True``; ``timm/...``, ``hf-hub:...`` and ``local-dir:...`` ids load pretrained weights); a Hub repo
    id of an hfkd export, a timm checkpoint or a transformers image classifier. ``num_classes`` sizes a new model or
    a new head; a loaded model keeps its own head when it is None. How the model was made (architecture, declared input
    preprocessing, source) is attached as one record, read with ``hfkd.models.provenance_of(model)``.

    Raises ``ModelLoadError`` (one sentence) for a name no source knows or a model that cannot be loaded.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()

    if is_zoo_model(name):
        model = build_architecture(name, num_classes or 100, kwargs or None)
        return attach_provenance(model, ModelProvenance(architecture=name, architecture_kwargs=kwargs or None,
                                                        source=name))

    if name.endswith(_CHECKPOINT_SUFFIXES):
        model = load_reference_checkpoint(path, arch=arch)
        return attach_provenance(model, provenance_of(model).replace(source=name))

    if path.is_dir():
        model = _load_pretrained(str(path), num_classes, trust_remote_code, where=f"directory {name!r}")
        return attach_provenance(model, provenance_of(model).replace(source=name))

    timm_name = _timm_name(name)
    if timm_name is not None:
        return _create_timm_model(name, timm_name, num_classes, kwargs)

    if name.count("/") == 1 and not path.exists():
        where = f"Hub repo {name!r} (there is no local directory of that name)"
        model = _load_pretrained(name, num_classes, trust_remote_code, where=where)
        return attach_provenance(model, provenance_of(model).replace(source=name))

    close = difflib.get_close_matches(name, list_zoo_models(), n=3, cutoff=0.5)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ModelLoadError(
        f"model {name!r} is not a CIFAR zoo name{hint}, an existing directory, a .pth checkpoint, a timm model name "
        f"or a Hub repo id"
    )


def _create_timm_model(name: str, timm_name: str, num_classes: int | None, kwargs: dict) -> nn.Module:
    import timm

    pretrained = kwargs.pop("pretrained", name.startswith(("timm/", "hf-hub:", "local-dir:")))
    source = ("hf-hub:" + name if name.startswith("timm/") else name) if pretrained else timm_name
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        timm_model = timm.create_model(source, pretrained=pretrained, **kwargs)
    except Exception as err:  # offline, unknown tag, bad kwargs: timm raises many types
        raise ModelLoadError(f"timm could not create {name!r}: {str(err).splitlines()[0]}") from err
    architecture = timm_model.pretrained_cfg.get("architecture") or timm_name
    # a checkpoint's recorded constructor arguments (img_size, ...) rebuild it, as in an hfkd export with a head
    recorded = dict(getattr(timm_model, "pretrained_model_args", None) or {}) if pretrained else {}
    return attach_provenance(TimmFeatureClassifier(timm_model), ModelProvenance(
        architecture=TIMM_PREFIX + architecture,
        architecture_kwargs={k: v for k, v in {**recorded, **kwargs}.items() if k != "num_classes"} or None,
        preprocessing=from_timm_config(timm_model.pretrained_cfg) if pretrained else None,
        source=name,
    ))


def _timm_name(name: str) -> str | None:
    """The timm architecture a name refers to, or None when timm does not know it."""
    import timm

    if name.startswith("timm/"):
        return name[len("timm/") :]
    if name.startswith("hf-hub:"):
        return name[len("hf-hub:") :].removeprefix("timm/")
    if name.startswith("local-dir:"):
        return name[len("local-dir:") :]
    return name if timm.is_model(name) else None


def is_timm_checkpoint_config(config: dict) -> bool:
    """Whether a ``config.json`` (or the dict transformers' ``AutoConfig`` made of it) describes a timm checkpoint.

    timm writes ``architecture`` and ``pretrained_cfg`` and no ``model_type``; transformers tells the two apart by
    ``pretrained_cfg`` too, and names the type ``timm_wrapper`` when it reads one.
    """
    return "pretrained_cfg" in config and config.get("model_type") in (None, "timm_wrapper")


def _read_config(name_or_path: str, trust_remote_code: bool, where: str) -> dict:
    local = Path(name_or_path) / "config.json"
    if Path(name_or_path).is_dir():
        if not local.is_file():
            raise ModelLoadError(f"{where} has no config.json, so it is not a saved model")
        check_model_files(Path(name_or_path))
        config = read_json(local, "the model config")
        if not isinstance(config, dict):
            raise UnreadableFileError(f"the model config {str(local)!r} holds a JSON {type(config).__name__}, not an object")
        return config
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code).to_dict()
    except Exception as err:  # offline, missing repo, gated: huggingface_hub raises many types
        raise ModelLoadError(f"could not read the config of {where}: {str(err).strip().splitlines()[0]}") from err


def check_model_files(folder: Path) -> None:
    """The files a saved model's loader reads are whole: JSON that parses, safetensors and PyTorch archives that
    are not truncated. Raises ``UnreadableFileError`` naming the first bad file (the libraries' own errors name
    neither the file nor the problem)."""
    for path in sorted(folder.glob("*.json")):
        read_json(path, "the model file")
    for path in sorted(folder.glob("*.safetensors")):
        check_safetensors(path, "the model weights")
    for path in sorted(folder.glob("*.bin")):
        check_torch_archive(path, "the model weights")


def _feature_classifier(hf_model: nn.Module) -> TransformersFeatureClassifier:
    """The adapter for a transformers image classifier: a DeiT with a distillation token has two heads and its own."""
    from transformers import DeiTForImageClassificationWithTeacher

    if isinstance(hf_model, DeiTForImageClassificationWithTeacher):
        return DeiTFeatureClassifier(hf_model)
    return TransformersFeatureClassifier(hf_model)


def _load_pretrained(name_or_path: str, num_classes: int | None, trust_remote_code: bool, where: str) -> nn.Module:
    """An hfkd export, a timm checkpoint or a transformers image classifier, from a directory or the Hub."""
    from transformers import AutoConfig, AutoModelForImageClassification

    config = _read_config(name_or_path, trust_remote_code, where)
    # an hfkd export's record of how it was made: in HfkdConfig.distillation, or hfkd_distillation in the config of a
    # transformers or timm export
    record = config.get("distillation") if config.get("model_type") == "hfkd" else config.get("hfkd_distillation")
    if is_timm_checkpoint_config(config):  # through timm itself, so it keeps timm's features and state-dict keys
        prefix = "local-dir:" if Path(name_or_path).is_dir() else "hf-hub:"
        model = _create_timm_model(prefix + name_or_path, config.get("architecture"), num_classes, {})
        return attach_provenance(model.eval(), provenance_of(model).replace(source=name_or_path, distillation=record))
    has_weights = not Path(name_or_path).is_dir() or any((Path(name_or_path) / f).is_file() for f in _WEIGHT_FILES)
    try:
        if config.get("model_type") == "hfkd":
            model = HfkdForImageClassification.from_pretrained(name_or_path)
            architecture = model.config.architecture
        else:
            head = {"num_labels": num_classes, "ignore_mismatched_sizes": True} if num_classes else {}
            if has_weights:
                hf_model = AutoModelForImageClassification.from_pretrained(
                    name_or_path, trust_remote_code=trust_remote_code, **head
                )
            else:  # a config alone: a new, randomly initialised model of that architecture
                hf_config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
                if num_classes:
                    hf_config.num_labels = num_classes
                hf_model = AutoModelForImageClassification.from_config(hf_config, trust_remote_code=trust_remote_code)
            model = _feature_classifier(hf_model)
            architecture = None  # exported as the native transformers model
    except ModelLoadError:
        raise
    except ValueError as err:
        raise ModelLoadError(f"{where} is not an image-classification model: {str(err).splitlines()[0]}") from err
    except OSError as err:
        raise ModelLoadError(f"could not load {where}: {str(err).strip().splitlines()[0]}") from err
    preprocessing = load_declared_preprocessing(name_or_path, trust_remote_code=trust_remote_code)
    attach_provenance(model, ModelProvenance(architecture=architecture, preprocessing=preprocessing,
                                             source=name_or_path, distillation=record))
    return model.eval() if has_weights else model
