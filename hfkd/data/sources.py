"""Loading an image-classification dataset from any source ``datasets`` reads, and finding its columns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datasets

from ..errors import DataError
from .labels import check_image_column, check_several_classes, class_names

BUILTIN_PREFIX = "builtin:"
BUILTIN_ROOT = Path(__file__).resolve().parents[1] / "builtin_datasets"
# label columns preferred when a dataset has several ClassLabel columns (cifar100: fine_label over coarse_label)
_PREFERRED_LABELS = ("label", "labels", "fine_label")


@dataclass
class ClassificationSplits:
    """The train and eval splits of a dataset, with the columns that hold images and labels."""

    train: datasets.Dataset
    eval: datasets.Dataset
    image_column: str
    label_column: str
    label_names: list[str]
    name: str
    train_split: str = "train"
    eval_split: str = "test"
    # a streamed train split (``datasets.IterableDataset``) has no len(): its size from the card or parquet footers
    num_train_examples: int | None = None


def builtin_names() -> list[str]:
    return sorted(p.name for p in BUILTIN_ROOT.iterdir() if (p / "train.parquet").is_file())


def _load(data_args) -> datasets.DatasetDict:
    name = data_args.dataset_name
    if data_args.train_dir:
        files = {}
        for split, key in (("train", "train_dir"), ("validation", "validation_dir")):
            folder = getattr(data_args, key)
            if folder:
                _check_image_folder(Path(folder), key)
                files[split] = str(Path(folder) / "**")
        return datasets.load_dataset("imagefolder", data_files=files)
    if name.startswith(BUILTIN_PREFIX):
        folder = BUILTIN_ROOT / name[len(BUILTIN_PREFIX) :]
        if not (folder / "train.parquet").is_file():
            raise DataError(f"built-in dataset {name!r} does not exist; built-ins are {builtin_names()}")
        files = {p.stem: str(p) for p in sorted(folder.glob("*.parquet"))}
        return datasets.load_dataset("parquet", data_files=files)
    path = Path(name).expanduser()
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
        return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
    try:
        return datasets.load_dataset(name, data_args.dataset_config_name)
    except Exception as err:  # datasets raises many types (offline, not found, bad config)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"could not load dataset {name!r}: {first_line}") from err


def _check_image_folder(folder: Path, key: str) -> None:
    """An image folder (``train_dir`` / ``validation_dir``) exists and has one subfolder per class, at least two
    (with one, ``datasets``' imagefolder makes no label column at all)."""
    if not folder.exists():
        raise DataError(f"{key} {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise DataError(f"{key} {str(folder)!r} is a file; it must be a folder with one subfolder of images per class")
    classes = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(classes) < 2:
        found = f"only the class folder {classes[0]!r}" if classes else "no class folders"
        raise DataError(
            f"{key} {str(folder)!r} has {found}; an image folder needs one subfolder of images per class, at least two"
        )


def _pick_eval_split(dataset: datasets.DatasetDict, data_args, name: str) -> str | None:
    """The evaluation split's name, or None when the train split must be divided (``train_val_split``)."""
    requested = data_args.eval_split
    if requested is not None:
        if requested not in dataset:
            raise DataError(f"dataset {name!r} has no split {requested!r}; its splits are {list(dataset)}")
        return requested
    for candidate in ("validation", "test"):
        if candidate in dataset:
            return candidate
    if data_args.train_val_split is not None:
        return None
    raise DataError(
        f"dataset {name!r} has no 'validation' or 'test' split ({list(dataset)}); set eval_split, or "
        f"train_val_split to hold out part of the training split"
    )


def detect_columns(features: datasets.Features, image_column: str | None, label_column: str | None, name: str):
    """(image column, label column), from the recipe or from the feature types (``Image`` and ``ClassLabel``)."""
    columns = list(features)
    for wanted, kind in ((image_column, "image"), (label_column, "label")):
        if wanted is not None and wanted not in features:
            raise DataError(f"dataset {name!r} has no {kind} column {wanted!r}; its columns are {columns}")
    if image_column is None:
        images = [c for c, f in features.items() if isinstance(f, datasets.Image)]
        if not images:
            raise DataError(f"dataset {name!r} has no Image column among {columns}; set image_column_name")
        image_column = images[0]
    if label_column is None:
        # ClassLabel columns first; a plain integer column only when it has a conventional label name
        class_labels = [c for c, f in features.items() if isinstance(f, datasets.ClassLabel)]
        candidates = class_labels or [c for c in _PREFERRED_LABELS if c in features]
        preferred = [c for c in _PREFERRED_LABELS if c in candidates]
        if not candidates:
            raise DataError(f"dataset {name!r} has no ClassLabel column among {columns}; set label_column_name")
        label_column = (preferred or candidates)[0]
    return image_column, label_column


def load_splits(data_args, seed: int = 0) -> ClassificationSplits:
    """Load the dataset a recipe names and pick its train / eval splits and columns.

    ``seed`` fixes the held-out part when ``train_val_split`` divides the training split.
    """
    if data_args.streaming:
        from .streaming import load_streaming_splits

        return load_streaming_splits(data_args, seed=seed)
    name = data_args.dataset_name or data_args.train_dir
    dataset = _load(data_args)
    if data_args.train_split not in dataset:
        raise DataError(f"dataset {name!r} has no split {data_args.train_split!r}; its splits are {list(dataset)}")
    train = dataset[data_args.train_split]
    image_column, label_column = detect_columns(
        train.features, data_args.image_column_name, data_args.label_column_name, name
    )
    check_image_column(train.features, image_column, name)
    label_names = class_names(train, label_column, name)  # the whole split's classes, before max_train_samples
    eval_split = _pick_eval_split(dataset, data_args, name)
    if eval_split is None:
        stratify = label_column if isinstance(train.features[label_column], datasets.ClassLabel) else None
        parts = train.train_test_split(test_size=data_args.train_val_split, seed=seed, stratify_by_column=stratify)
        train, evaluation = parts["train"], parts["test"]
        eval_split = f"{data_args.train_split} (held-out {data_args.train_val_split:g})"
    else:
        evaluation = dataset[eval_split]
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if data_args.max_eval_samples is not None:
        evaluation = evaluation.select(range(min(data_args.max_eval_samples, len(evaluation))))
    check_several_classes(train, label_column, label_names, name, data_args.max_train_samples)
    return ClassificationSplits(
        train, evaluation, image_column, label_column, label_names, str(name), data_args.train_split, eval_split
    )
