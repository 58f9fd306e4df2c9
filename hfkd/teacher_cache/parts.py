"""The parquet files of a teacher cache: their names, their columns, writing one and reading an epoch back.

::

    data/epoch-00000-part-00000.parquet      rows of epoch 0, example indices [0, rows_per_file)
    data/epoch-00000-part-00001.parquet      ... [rows_per_file, 2 * rows_per_file), and so on

Every file holds ``example_index`` (int64) and ``epoch`` (int32, 0-based), sorted by example index, and either
``logits`` (all C of them) or ``topk_indices`` (int32), ``topk_logits`` and ``logsumexp`` (float32: the log-sum-exp of
all C logits, which fixes the mass outside the top k; ``topk``). A file is the unit of work, of resumption and of
data-parallel sharding: which process writes it, and when, does not change its content. It is written under a
temporary name and renamed, so a killed build leaves only whole files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .record import DATA_FOLDER, CacheRecord
from .topk import rebuild_logits, topk_logits


def parts_per_epoch(record: CacheRecord) -> int:
    return -(-record.num_examples // record.rows_per_file)


def part_file(folder: Path, epoch: int, part: int) -> Path:
    """The file of ``epoch`` (0-based) holding example indices ``part_range(record, part)``."""
    return Path(folder) / DATA_FOLDER / f"epoch-{epoch:05d}-part-{part:05d}.parquet"


def part_range(record: CacheRecord, part: int) -> range:
    start = part * record.rows_per_file
    return range(start, min(start + record.rows_per_file, record.num_examples))


def missing_parts(folder: Path, record: CacheRecord, epochs: int) -> list[tuple[int, int]]:
    """The (epoch, part) files of epochs ``0 .. epochs-1`` that ``folder`` does not hold yet, in order."""
    return [(epoch, part) for epoch in range(epochs) for part in range(parts_per_epoch(record))
            if not part_file(folder, epoch, part).is_file()]


def features(record: CacheRecord):
    """The ``datasets.Features`` of a part (stored in its parquet schema, so ``load_dataset`` restores them)."""
    import datasets

    value = datasets.Value(record.dtype)
    columns = {"example_index": datasets.Value("int64"), "epoch": datasets.Value("int32")}
    if record.topk is None:
        columns["logits"] = datasets.Sequence(value, length=record.num_classes)
    else:
        width = record.stored_width
        columns["topk_indices"] = datasets.Sequence(datasets.Value("int32"), length=width)
        columns["topk_logits"] = datasets.Sequence(value, length=width)
        columns["logsumexp"] = datasets.Value("float32")
    return datasets.Features(columns)


def _fixed_list(values: np.ndarray):
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def write_part(path: Path, record: CacheRecord, epoch: int, index: torch.Tensor, logits: torch.Tensor) -> None:
    """Write the rows of example indices ``index`` ``[n]`` (sorted) of ``epoch`` from fp32 ``logits [n, C]``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dtype = np.float16 if record.dtype == "float16" else np.float32
    columns = {"example_index": pa.array(index.numpy().astype(np.int64)),
               "epoch": pa.array(np.full(len(index), epoch, dtype=np.int32))}
    if record.topk is None:
        columns["logits"] = _fixed_list(logits.numpy().astype(dtype))
    else:
        values, indices, lse = topk_logits(logits, record.topk)
        columns["topk_indices"] = _fixed_list(indices.numpy().astype(np.int32))
        columns["topk_logits"] = _fixed_list(values.numpy().astype(dtype))
        columns["logsumexp"] = pa.array(lse.numpy().astype(np.float32))
    table = pa.Table.from_pydict(columns, schema=features(record).arrow_schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, path)


@dataclass
class EpochLogits:
    """One epoch of a cache in memory, rows in example-index order: ``logits [N, C]`` (stored dtype), or
    ``topk_logits [N, k]``, ``topk_indices [N, k]`` and ``logsumexp [N]``."""

    num_classes: int
    logits: torch.Tensor | None = None
    topk_logits: torch.Tensor | None = None
    topk_indices: torch.Tensor | None = None
    logsumexp: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """fp32 teacher logits ``[B, C]`` of the example indices ``index [B]`` (top-k rebuilt, ``topk``)."""
        index = index.to("cpu", torch.int64)
        if self.logits is not None:
            return self.logits[index].float()
        return rebuild_logits(self.topk_logits[index], self.topk_indices[index], self.logsumexp[index],
                              self.num_classes)


def _column(table, name: str, width: int | None) -> torch.Tensor:
    column = table.column(name).combine_chunks()
    values = column.flatten().to_numpy() if width is not None else column.to_numpy()
    values = torch.from_numpy(np.array(values))
    return values.view(-1, width) if width is not None else values


def read_epoch(folder: Path, record: CacheRecord, epoch: int) -> EpochLogits:
    """Every part of ``epoch``; raises ``ValueError`` when a part's rows are not its example range of that epoch."""
    import pyarrow.parquet as pq

    tables = []
    for part in range(parts_per_epoch(record)):
        table = pq.read_table(part_file(folder, epoch, part))
        expected = part_range(record, part)
        index = table.column("example_index").to_numpy()
        epochs = table.column("epoch").to_numpy()
        if len(index) != len(expected) or (index != np.arange(expected.start, expected.stop)).any() or (
                epochs != epoch).any():
            raise ValueError(f"{part_file(folder, epoch, part)} does not hold epoch {epoch}, examples {expected}")
        tables.append(table)
    import pyarrow as pa

    table = pa.concat_tables(tables)
    width = record.stored_width
    if record.topk is None:
        return EpochLogits(record.num_classes, logits=_column(table, "logits", record.num_classes))
    return EpochLogits(record.num_classes, topk_logits=_column(table, "topk_logits", width),
                       topk_indices=_column(table, "topk_indices", width).long(),
                       logsumexp=_column(table, "logsumexp", None))
