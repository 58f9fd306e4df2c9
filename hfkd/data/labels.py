"""What the image and label columns of a dataset must hold, and the class names hfkd trains on.

The label column must be a ``ClassLabel`` (its names are the classes) or integers numbered 0..K-1 (the classes are
"0".."K-1"): strings, floats, lists or images are refused, since a class count cannot be read from them. Integer
labels that skip values are refused too: a label 999 among 0..9 would train a 1000-class model with 989 classes that
never occur; a dataset that means those ids gives them names with a ``ClassLabel``. A training split with a single
class is refused, as a classifier learns nothing from it (the loss is 0 and top-1 100 % from the first step).
"""

from __future__ import annotations

import datasets

from ..errors import DataError


def describe_feature(feature) -> str:
    """A feature type in words: 'string values', 'images', 'lists', ..."""
    if isinstance(feature, datasets.Image):
        return "images"
    if isinstance(feature, datasets.Value):
        return f"{feature.dtype} values"
    if isinstance(feature, (datasets.Sequence, list)) or type(feature).__name__ in ("List", "LargeList"):
        return "lists"
    return f"{type(feature).__name__} values"


def check_image_column(features: datasets.Features, column: str, name: str) -> None:
    """The image column is of ``Image`` type; else ``DataError`` naming the column, what it holds and the Image
    columns there are."""
    if isinstance(features[column], datasets.Image):
        return
    images = [c for c, f in features.items() if isinstance(f, datasets.Image)]
    hint = f"set image_column_name to {' or '.join(repr(c) for c in images)}" if images else "it has no Image column"
    raise DataError(
        f"the image column {column!r} of dataset {name!r} holds {describe_feature(features[column])}, not images; {hint}"
    )


def class_names(train: datasets.Dataset, column: str, name: str) -> list[str]:
    """The classes of ``train``'s label column: a ClassLabel's names, or "0".."K-1" for integer labels 0..K-1.

    Raises ``DataError`` for a column of another type or integer labels that skip values (negative labels, which
    mark unlabelled examples, are left to the label-range check of the split).
    """
    feature = train.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    if not (isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))):
        example = train[0][column] if len(train) else None
        shown = "an image" if isinstance(feature, datasets.Image) else repr(example)
        raise DataError(
            f"the label column {column!r} of dataset {name!r} holds {describe_feature(feature)} (e.g. {shown}), but "
            f"labels must be a ClassLabel or integers 0..K-1 to count the classes; set label_column_name to such a "
            f"column or encode this one (datasets' class_encode_column)"
        )
    labels = sorted(int(v) for v in train.unique(column) if v is not None and v >= 0)
    if labels and labels[-1] >= len(labels):
        missing = labels[-1] + 1 - len(labels)
        raise DataError(
            f"the integer labels in column {column!r} of dataset {name!r} skip values: {len(labels)} distinct labels "
            f"from {labels[0]} to {labels[-1]} ({missing} values in between never occur), which would train a "
            f"{labels[-1] + 1}-class model; number the classes 0..{len(labels) - 1}, or make the column a ClassLabel "
            f"that names all {labels[-1] + 1}"
        )
    return [str(i) for i in range(len(labels))]


def check_several_classes(train: datasets.Dataset, column: str, label_names: list[str], name: str,
                          max_train_samples: int | None) -> None:
    """The training examples hold at least two classes; else ``DataError`` (a one-class classifier learns nothing)."""
    present = sorted(v for v in set(train[column]) if v is not None and v >= 0)
    if len(present) >= 2:
        return
    cut = f" (max_train_samples {max_train_samples} kept only its first examples)" if max_train_samples else ""
    held = f"a single class, {label_names[present[0]]!r}," if present else "no labelled example"
    raise DataError(
        f"the training split of dataset {name!r} holds {held} in column {column!r}{cut}; a classifier needs examples "
        f"of at least 2 classes"
    )
