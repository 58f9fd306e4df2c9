"""``hfkd convert PTH --arch NAME OUTPUT_DIR``: a released SimKD / RepDistiller checkpoint as an hfkd export."""

from __future__ import annotations

from pathlib import Path

from .data.normalization import KNOWN_STATISTICS
from .data.transforms import eval_image_processor
from .errors import RecipeError
from .model_card import ModelCardContext, ModelDescription, write_model_card
from .models import HfkdConfig, HfkdForImageClassification, load_reference_checkpoint, provenance_of
from .models.modeling_hfkd import TIMM_PREFIX
from .output_folder import check_writable_folder


def convert_reference_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    arch: str | None = None,
    class_names: list[str] | None = None,
    dataset: str = "cifar100",
) -> Path:
    """Write ``checkpoint`` as a ``from_pretrained``-loadable export with its image processor and a model card.

    ``dataset`` picks the normalisation the reference code trained with: ``cifar100`` (CIFAR zoo, 32 pixels) or
    ``imagenet`` (SimKD's ImageNet ResNets, resize 256 + crop 224). The output folder must not hold files already.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise RecipeError(f"output folder {str(output_dir)!r} is a file; choose a new folder")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise RecipeError(f"output folder {str(output_dir)!r} is not empty; choose a new folder")
    check_writable_folder(output_dir, "output folder")
    if dataset not in ("cifar100", "imagenet"):
        raise RecipeError(f"dataset {dataset!r} is not one of 'cifar100', 'imagenet'")
    model = load_reference_checkpoint(checkpoint, arch=arch)
    info = provenance_of(model).checkpoint
    num_classes = model.num_classes
    names = class_names or [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise RecipeError(f"{len(names)} class names were given for a checkpoint with {num_classes} classes")
    imagenet = dataset == "imagenet" or info.arch.startswith(TIMM_PREFIX)
    size = 224 if imagenet else 32
    mean, std = KNOWN_STATISTICS["imagenet" if imagenet else "cifar100"]
    config = HfkdConfig(
        architecture=info.arch,
        image_size=size,
        id2label={i: n for i, n in enumerate(names)},
        label2id={n: i for i, n in enumerate(names)},
        distillation={"method": "none", "converted_from": str(checkpoint), "checkpoint_epoch": info.epoch,
                      "results": {"top1_best": info.accuracy}},
    )
    export = HfkdForImageClassification(config, model=model)
    export.save_pretrained(output_dir)
    eval_image_processor("imagenet" if imagenet else "cifar", size, mean, std).save_pretrained(output_dir)
    context = ModelCardContext(dataset_name=dataset, eval_split="test" if not imagenet else "validation",
                               student_name=info.arch)
    description = ModelDescription(
        model_name=output_dir.name,
        method="none",
        paper=None,
        loss_formula="1·CE (trained by the reference code)",
        results={"top1_best": info.accuracy} if info.accuracy is not None else {},
        num_classes=num_classes,
        architecture=info.arch,
        parameters=sum(p.numel() for p in export.parameters()),
        schedule=f"trained by the reference code; converted from {Path(checkpoint).name} (epoch {info.epoch})",
        repo=str(output_dir),
        export_format="hfkd",
    )
    write_model_card(output_dir, context, description)
    return output_dir
