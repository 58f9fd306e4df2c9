"""Loading an image-classification dataset from any source ``datasets`` reads, and finding its columns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datasets

from ..errors import DataError

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
        files = {"train": str(Path(data_args.train_dir) / "**")}
        if data_args.validation_dir:
            files["validation"] = str(Path(data_args.validation_dir) / "**")
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
    label_feature = train.features[label_column]
    if isinstance(label_feature, datasets.ClassLabel):
        label_names = list(label_feature.names)
    else:
        label_names = [str(i) for i in range(int(max(train[label_column])) + 1)]
    return ClassificationSplits(
        train, evaluation, image_column, label_column, label_names, str(name), data_args.train_split, eval_split
    )
