"""Loading the teacher checkpoints released with the SimKD and CRD code (spec section 7)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelLoadError
from ..readable_files import load_torch_file
from .provenance import CheckpointInfo, ModelProvenance, attach_provenance
from .registry import is_zoo_model, list_zoo_models, zoo_entrypoint

# SimKD's ImageNet models are torchvision-identical; timm's ResNets use the same state_dict keys (spec 6.8).
_IMAGENET_REFERENCE_TO_TIMM = {"ResNet18": "resnet18", "ResNet34": "resnet34", "ResNet50": "resnet50"}


def infer_reference_arch(path: str | Path) -> str | None:
    """The architecture named by the checkpoint's parent folder, or None.

    SimKD's ``S:<student>_T:...`` (``~`` on Windows) names a distilled student. Otherwise the folder starts with
    the architecture (``resnet32x4_vanilla``). Unlike the references, which keep only the first ``_``-separated
    piece (spec 8.4), the longest registered name that prefixes the folder wins, so ``ShuffleV2_1_5_vanilla`` and
    ``MobileNetV2_1_0_vanilla`` resolve correctly.
    """
    folder = Path(path).resolve().parent.name
    student = re.match(r"S[:~](.+?)_T[:~]", folder)
    if student:
        folder = student.group(1)
    candidates = [n for n in list_zoo_models() if folder == n or folder.startswith(n + "_")]
    return max(candidates, key=len) if candidates else None


def _read_state_dict(path: Path) -> dict:
    # only a well-formed pickle of other objects gets the advice (a corrupt *_best.pth is named as corrupt)
    checkpoint = load_torch_file(
        path, "reference checkpoint",
        objects_hint=" (RepDistiller's *_last.pth keeps an argparse Namespace); use the *_best.pth or "
                     "ckpt_epoch_*.pth file, which hold weights only",
    )
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        keys = list(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ModelLoadError(
            f"{str(path)!r} is not a reference checkpoint: expected a dict with a 'model' state_dict, found {keys}"
        )
    if "proj" in checkpoint:
        raise ModelLoadError(
            f"{str(path)!r} is a SimKD student: its own classifier is untrained (spec 8.2) and the teacher "
            f"classifier it predicts with is not in the file, so it cannot be used on its own"
        )
    return checkpoint


def load_reference_checkpoint(path: str | Path, arch: str | None = None) -> nn.Module:
    """Build ``arch`` (inferred from the folder name when not given) and load the file's ``'model'`` weights.

    The file is read with ``torch.load(weights_only=True)``. The model is returned in eval mode, with a provenance
    record whose ``checkpoint`` holds the file's ``epoch`` and ``best_acc`` / ``accuracy`` (when present).
    """
    path = Path(path)
    checkpoint = _read_state_dict(path)
    state_dict = checkpoint["model"]
    arch = arch or infer_reference_arch(path)
    if arch is None:
        raise ModelLoadError(
            f"cannot tell the architecture of {str(path)!r} from its folder name {path.resolve().parent.name!r}; "
            f"pass it explicitly (teacher_arch: resnet32x4)"
        )
    weights = dict(state_dict)
    if arch in _IMAGENET_REFERENCE_TO_TIMM and "fc.weight" in weights:
        from .modeling_hfkd import TIMM_PREFIX, build_architecture

        num_classes = weights["fc.weight"].shape[0]
        model = build_architecture(TIMM_PREFIX + _IMAGENET_REFERENCE_TO_TIMM[arch], num_classes)
        weights = {f"model.{k}": v for k, v in weights.items()}
        arch = TIMM_PREFIX + _IMAGENET_REFERENCE_TO_TIMM[arch]
    elif is_zoo_model(arch):
        model = zoo_entrypoint(arch)(num_classes=_num_classes(weights, arch))
    else:
        raise ModelLoadError(
            f"architecture {arch!r} of {str(path)!r} is not in the CIFAR zoo ({', '.join(list_zoo_models())})"
        )

    result = model.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            f"{str(path)!r} does not fit architecture {arch!r}: missing keys {result.missing_keys[:3]}, unexpected "
            f"keys {result.unexpected_keys[:3]}; pass the right teacher_arch"
        )
    info = CheckpointInfo(arch, _as_number(checkpoint.get("epoch")),
                          _as_number(checkpoint.get("best_acc", checkpoint.get("accuracy"))))
    attach_provenance(model, ModelProvenance(architecture=arch, source=str(path), checkpoint=info))
    return model.eval()


def _num_classes(state_dict: dict, arch: str) -> int:
    """The class count of the checkpoint's classifier, under any of the zoo's head key names."""
    for key in ("fc.weight", "linear.weight", "classifier.weight", "classifier.0.weight"):
        if key in state_dict:
            return int(state_dict[key].shape[0])
    raise ModelLoadError(f"the checkpoint has no classifier weight for architecture {arch!r}")


def _as_number(value):
    if isinstance(value, torch.Tensor):
        return value.item()
    return value
