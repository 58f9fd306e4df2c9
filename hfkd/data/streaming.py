"""Streaming training data (``streaming: true``): a ``datasets.IterableDataset`` read shard by shard, never
downloaded or prepared as a whole, shuffled with a buffer, split across processes, decoded and augmented in
DataLoader workers.

The order of a process's stream is a function of (seed, epoch, process count): datasets' buffer shuffle seeded with
``seed + epoch`` (``set_epoch``) after ``split_dataset_by_node``. Every DataLoader worker reads the process's whole
(undecoded) stream and decodes only its own batches (batch ``b`` in worker ``b mod workers``), so the batches, and
their order, do not depend on the number of workers. Each view is keyed to (seed, epoch, the example's content key:
the CRC-32 of its encoded image), which also keys Mixup (``index`` of a streamed batch holds these keys).

An epoch is ``floor(N / (processes * batch))`` batches on every process (``N`` from the dataset's split sizes or its
parquet footers), so no process waits for another; a process whose shards run out first restarts its stream. A run
resumed mid-epoch reaches its position by reading, not decoding, the batches it already trained on (the Trainer
then skips those placeholders), and so trains on the same batches as the uninterrupted run.

Evaluation reads the eval split as a stream once and keeps it as a map-style dataset (datasets' cache), so every
evaluation scores the same examples exactly. CRD, which needs dataset indices and the training-set size, is refused.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import datasets
import torch
from datasets.distributed import split_dataset_by_node
from PIL import Image

from ..errors import DataError, RecipeError
from .augmentation import augment_image
from .keyed_random import keyed_hash
from .shared_epoch import SharedEpoch, SharedEpochMixin
from .sources import ClassificationSplits, detect_columns


def check_streaming(data_args) -> None:
    """Raise ``RecipeError`` (one sentence) for streaming keys that cannot work together."""
    if data_args.shuffle_buffer_size < 1:
        raise RecipeError(f"shuffle_buffer_size must be >= 1, got {data_args.shuffle_buffer_size}")
    if not data_args.streaming:
        return
    if data_args.transform_preset == "cifar":
        raise RecipeError("streaming decodes images one at a time (the 'imagenet' preset); the 'cifar' preset needs "
                          "the whole split decoded in memory, so set streaming: false or transform_preset: imagenet")
    if data_args.train_dir is not None or data_args.train_val_split is not None:
        raise RecipeError("streaming reads a dataset_name (Hub id or parquet folder) with its own eval split; "
                          "train_dir and train_val_split need streaming: false")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _num_examples(name: str, config: str | None, split: str) -> int | None:
    """The split's size from the dataset card (Hub datasets), else the row counts in its parquet footers."""
    try:
        builder = datasets.load_dataset_builder(name, config)
    except Exception:  # noqa: BLE001 (datasets raises many types; the streaming load reports the real problem)
        return None
    splits = builder.info.splits or {}
    if split in splits and splits[split].num_examples:
        return int(splits[split].num_examples)
    files = (builder.config.data_files or {}).get(split)
    if files and all(str(f).endswith(".parquet") for f in files):
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(str(f)).metadata.num_rows for f in files)
    return None


def load_streaming_splits(data_args, seed: int = 0) -> ClassificationSplits:
    """The train split as a ``datasets.IterableDataset`` (images left encoded) and the eval split streamed once into
    a map-style dataset; raises ``DataError`` / ``RecipeError`` with one sentence."""
    name = data_args.dataset_name
    if name is None:
        raise RecipeError("streaming: true reads a Hub dataset id or a local folder of parquet shards (dataset_name)")
    try:
        streams = datasets.load_dataset(name, data_args.dataset_config_name, streaming=True)
    except Exception as err:  # datasets raises many types (offline, not found, bad config)
        raise DataError(f"could not stream dataset {name!r}: {_first_line(err)}") from err
    if data_args.train_split not in streams:
        raise DataError(f"dataset {name!r} has no split {data_args.train_split!r}; its splits are {list(streams)}")
    train = streams[data_args.train_split]
    if train.features is None:
        raise DataError(f"dataset {name!r} declares no features, so its image and label columns cannot be found")
    image_column, label_column = detect_columns(
        train.features, data_args.image_column_name, data_args.label_column_name, name)
    label_feature = train.features[label_column]
    if not isinstance(label_feature, datasets.ClassLabel):
        raise DataError(f"streaming needs a ClassLabel column for the class names; {label_column!r} is not one")
    eval_split = data_args.eval_split or next((s for s in ("validation", "test") if s in streams), None)
    if eval_split not in streams:
        raise DataError(f"dataset {name!r} has no split {eval_split!r} to evaluate on; its splits are {list(streams)}")

    num_examples = _num_examples(name, data_args.dataset_config_name, data_args.train_split)
    if data_args.max_train_samples is not None:
        train = train.take(data_args.max_train_samples)
        num_examples = min(data_args.max_train_samples, num_examples or data_args.max_train_samples)
    if num_examples is None:
        raise DataError(
            f"the size of {name!r}'s {data_args.train_split!r} split is unknown (no split sizes on its card, no "
            f"parquet footers), and streaming needs it for the epoch length; set max_train_samples"
        )
    train = train.cast_column(image_column, datasets.Image(decode=False))
    train = train.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)

    evaluation = streams[eval_split]
    if data_args.max_eval_samples is not None:
        evaluation = evaluation.take(data_args.max_eval_samples)
    evaluation = _materialize(evaluation)
    return ClassificationSplits(train, evaluation, image_column, label_column, list(label_feature.names), str(name),
                               data_args.train_split, eval_split, num_train_examples=num_examples)


def _rows(stream: datasets.IterableDataset) -> Iterator[dict]:
    yield from stream


def _materialize(stream: datasets.IterableDataset) -> datasets.Dataset:
    """A streamed split as a map-style dataset, written once to datasets' cache (the main process first)."""
    from accelerate import PartialState

    with PartialState().main_process_first():
        return datasets.Dataset.from_generator(_rows, gen_kwargs={"stream": stream}, features=stream.features)


def content_keys(images: list[dict]) -> torch.Tensor:
    """Each encoded image's CRC-32 (int64 ``[B]``): a stable identity for a streamed example, whatever its position."""
    return torch.tensor([zlib.crc32(image["bytes"]) if image.get("bytes") is not None
                         else zlib.crc32(str(image["path"]).encode()) for image in images], dtype=torch.int64)


def _open(image: dict) -> Image.Image:
    return Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") is not None else image["path"])


class StreamingImageDataset(SharedEpochMixin, torch.utils.data.IterableDataset):
    """Batches ``{"pixel_values" [B, 3, S, S], "labels" [B] int64, "index" [B] int64 content keys}`` of a stream.

    ``for_process(batch_size, rank, world_size)`` sets the batch size and this process's part (datasets'
    ``split_dataset_by_node``); the trainer calls it. ``len()`` is the number of batches in an epoch.
    """

    def __init__(
        self, stream: datasets.IterableDataset, num_examples: int, image_column: str, label_column: str,
        transform: Callable, seed: int = 0,
    ) -> None:
        self.stream = stream
        self.num_examples = num_examples
        self.image_column = image_column
        self.label_column = label_column
        self.transform = transform
        self.seed = seed
        self._epoch = SharedEpoch(0)  # read by DataLoader workers too, also persistent ones (``shared_epoch``)
        self.batch_size = 1
        self.rank, self.world_size = 0, 1
        self.process_stream = stream
        self.skip = (0, 0)  # (epoch, batches) a resumed run yields undecoded

    def for_process(self, batch_size: int, rank: int, world_size: int) -> StreamingImageDataset:
        if self.num_examples < batch_size * world_size:
            raise DataError(
                f"the streamed training split has {self.num_examples} examples, fewer than one batch of "
                f"{batch_size} for each of {world_size} processes"
            )
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.process_stream = split_dataset_by_node(self.stream, rank, world_size)
        return self

    def resume_from(self, checkpoint: str, args) -> None:
        """Before a run resumes from ``checkpoint``: in the epoch it resumes, yield the batches already trained on as
        empty placeholders, which the Trainer skips (``skip_first_batches``) without their being decoded. The
        position is the Trainer's own (its ``global_step``, steps per epoch and gradient accumulation)."""
        import json
        from pathlib import Path

        if args.ignore_data_skip:  # the Trainer will not skip: every batch must be real
            return
        global_step = json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"]
        batches = self.num_examples // (args.world_size * args.per_device_train_batch_size)
        accumulation = args.gradient_accumulation_steps
        steps_per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)
        self.skip = (global_step // steps_per_epoch, (global_step % steps_per_epoch) * accumulation)

    def __len__(self) -> int:
        return self.num_examples // (self.world_size * self.batch_size)

    def _raw_batches(self) -> Iterator[dict[str, list]]:
        """This process's rows in batches, ``len(self)`` of them; the stream restarts if it runs out first."""
        produced = 0
        while produced < len(self):
            self.process_stream.set_epoch(self.epoch)
            yielded = 0
            for rows in self.process_stream.iter(batch_size=self.batch_size, drop_last_batch=True):
                yield rows
                produced, yielded = produced + 1, yielded + 1
                if produced == len(self):
                    return
            if not yielded:
                raise DataError(f"process {self.rank} got no full batch of {self.batch_size} from its stream")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = torch.utils.data.get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        skip = self.skip[1] if self.skip[0] == self.epoch else 0
        for b, rows in enumerate(self._raw_batches()):
            if b % workers != worker_id:
                continue
            yield {} if b < skip else self._decode(rows)

    def _decode(self, rows: dict[str, list]) -> dict[str, torch.Tensor]:
        images = rows[self.image_column]
        index = content_keys(images)
        keys = keyed_hash(self.seed, self.epoch, index).tolist()
        pixels = []
        for image, key in zip(images, keys):
            with _open(image) as picture:
                pixels.append(augment_image(picture, self.transform, key))
        labels = torch.as_tensor(rows[self.label_column], dtype=torch.int64)
        return {"pixel_values": torch.stack(pixels), "labels": labels, "index": index}

    def first_batch(self, size: int = 2) -> dict[str, torch.Tensor]:
        """The stream's first ``size`` examples, transformed as in training (for sizing the method's modules)."""
        rows = next(self.stream.iter(batch_size=size))
        return self._decode(rows)


def streaming_dataloader(dataset: StreamingImageDataset, args) -> torch.utils.data.DataLoader:
    """The training DataLoader of a streamed dataset: batches come already made (``batch_size=None``), this process's
    part of the stream, ``dataloader_num_workers`` workers (not persistent: each epoch's workers get the epoch)."""
    dataset.for_process(args.per_device_train_batch_size, args.process_index, args.world_size)
    workers = args.dataloader_num_workers
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=workers, pin_memory=args.dataloader_pin_memory,
        prefetch_factor=args.dataloader_prefetch_factor if workers else None,
    )
