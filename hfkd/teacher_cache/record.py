"""A teacher cache's record (teacher, data, views, storage) and its dataset card.

A cache is a ``datasets`` dataset in the Hub layout (``README.md`` + ``data/*.parquet``, see ``parts``), so it loads
with ``datasets.load_dataset(folder or id)`` and is pushed like any dataset; the card's YAML holds the record under
``hfkd_teacher_cache``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CARD_KEY = "hfkd_teacher_cache"
FORMAT_VERSION = 1
DATA_FOLDER = "data"
# examples per parquet file: one CIFAR epoch (50,000) is one file of 10 MB in float16
ROWS_PER_FILE = 50_000


@dataclass(frozen=True)
class CacheRecord:
    """The teacher, the data and the views a cache holds, and how its logits are stored.

    - ``teacher``: the recipe's ``teacher`` value; ``teacher_fingerprint``: ``sha256:`` of its weights and buffers.
    - ``dataset``: the training data's name; ``data_fingerprint``: ``sha256:`` of its decoded uint8 images and labels
      (so ``max_train_samples`` and ``train_val_split`` are covered); ``num_examples``, ``num_classes``.
    - ``seed``: the run's seed; ``augmentation``: the training views' description (``fingerprints.augmentation_of``).
    - ``precision``: the teacher's compute precision when the cache was built (e.g. ``fp32``, ``bf16 autocast``).
    - ``epochs``: how many epochs (0 .. epochs-1) the cache holds; ``topk``: None for every logit, else k;
      ``dtype``: ``float16`` or ``float32``; ``rows_per_file``.
    """

    teacher: str
    teacher_fingerprint: str
    dataset: str
    data_fingerprint: str
    num_examples: int
    num_classes: int
    seed: int
    augmentation: dict[str, Any]
    precision: str
    epochs: int
    topk: int | None
    dtype: str
    rows_per_file: int = ROWS_PER_FILE
    format_version: int = FORMAT_VERSION
    # the teacher's top-1 (%) on the evaluation split, measured when the cache was built
    teacher_top1: float | None = field(default=None, compare=False)

    def identity(self) -> dict[str, Any]:
        """Everything that must agree for two builds to write the same files (all but ``epochs``, ``teacher_top1``)."""
        values = dataclasses.asdict(self)
        values.pop("epochs")
        values.pop("teacher_top1")
        return values

    @property
    def stored_width(self) -> int:
        """Logits stored per example: ``num_classes``, or ``topk`` when it is smaller."""
        return self.num_classes if self.topk is None else min(self.topk, self.num_classes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CacheRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def read_record(folder: Path) -> CacheRecord | None:
    """The record in ``folder``'s dataset card, or None when there is no card or it holds no record."""
    from huggingface_hub import DatasetCard

    card = Path(folder) / "README.md"
    if not card.is_file():
        return None
    values = DatasetCard.load(card).data.to_dict().get(CARD_KEY)
    return CacheRecord.from_dict(values) if isinstance(values, dict) else None


def write_card(folder: Path, record: CacheRecord) -> Path:
    """The dataset card: Hub metadata (the parquet files as the ``train`` split, tags), the record, and a summary."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        tags=["hfkd", "knowledge-distillation", "teacher-cache"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": f"{DATA_FOLDER}/*.parquet"}]}],
        **{CARD_KEY: record.to_dict()},
    )
    stored = "every logit" if record.topk is None else f"the top {record.topk} logits and the log-sum-exp"
    body = (
        f"# Teacher cache: {record.teacher}\n\n"
        f"The outputs of teacher `{record.teacher}` (weights `{record.teacher_fingerprint}`) for every training view "
        f"of `{record.dataset}` ({record.num_examples} examples, data `{record.data_fingerprint}`) in epochs 0 to "
        f"{record.epochs - 1}, seed {record.seed}: {stored}, in {record.dtype}, computed in {record.precision}.\n\n"
        f"Views: `{json.dumps(record.augmentation, sort_keys=True)}`.\n\n"
        "Written by `hfkd cache-teacher`; a recipe trains from it with `teacher_cache: <this folder or repo id>` "
        "(hfkd's logit methods: kd, dkd, dist, logit_std, spherical, deit).\n"
    )
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    target = Path(folder) / "README.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    card.save(str(target))
    return target
