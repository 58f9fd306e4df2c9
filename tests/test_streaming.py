"""streaming: true on local imagenet-1k-schema parquet shards: the split read lazily, two processes reading disjoint
examples, batches independent of the worker count, epochs reshuffled, a run stopped mid-epoch and resumed training
on the batches of the uninterrupted one (without decoding the skipped ones), and the refusals."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import TrainerCallback

from hfkd.config import DataArguments, DistillationConfig
from hfkd.data import prepare_datasets
from hfkd.data.streaming import StreamingImageDataset, streaming_dataloader
from hfkd.errors import IncompatibleSetupError, RecipeError
from hfkd.models import Preprocessing, create_model
from hfkd.trainer import DistillationTrainer

SHARDS, PER_SHARD, NUM_CLASSES = 4, 10, 3
SMALL = Preprocessing((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 16)  # train at 16 px: the test is about the data path


def write_imagenet_shards(folder, shards=SHARDS, per_shard=PER_SHARD, n_val=6) -> str:
    """imagenet-1k's parquet layout: ``data/{split}-0000k-of-0000n.parquet``, ``image`` {bytes, path} JPEGs of
    varying sizes (some grayscale) and a ``label`` ClassLabel."""
    rng = np.random.default_rng(0)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(
        names=[f"n{i:08d}" for i in range(NUM_CLASSES)])})
    (folder / "data").mkdir(parents=True)
    serial = 0
    for split, counts in (("train", [per_shard] * shards), ("validation", [n_val])):
        for k, count in enumerate(counts):
            images, labels = [], []
            for _ in range(count):
                h, w = int(rng.integers(36, 60)), int(rng.integers(36, 60))
                gray = serial % 5 == 4
                array = rng.integers(0, 255, (h, w) if gray else (h, w, 3), dtype=np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(array).save(buffer, format="JPEG", quality=90)
                images.append({"bytes": buffer.getvalue(), "path": f"{split}_{serial}.JPEG"})
                labels.append(serial % NUM_CLASSES)
                serial += 1
            table = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
            table.to_parquet(str(folder / "data" / f"{split}-{k:05d}-of-{len(counts):05d}.parquet"))
    return str(folder)


@pytest.fixture(autouse=True)
def _short_arrow_shutdown(monkeypatch):
    """datasets waits 5 s for pyarrow's reader threads at the end of every pass over parquet shards (negligible per
    ImageNet epoch, most of the time of these tiny ones); a short wait keeps its purpose."""
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0.05)


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory):
    return write_imagenet_shards(tmp_path_factory.mktemp("imagenet_shards"))


def streamed(shards_dir, **values):
    args = DataArguments(dataset_name=shards_dir, streaming=True, shuffle_buffer_size=8, **values)
    return prepare_datasets(args, model_preprocessing=SMALL, seed=1)


def run_args(tmp_path, **values):
    return DistillationConfig(**{
        "output_dir": str(tmp_path), "method": "none", "per_device_train_batch_size": 4, "num_train_epochs": 2,
        "lr_decay_epochs": [], "save_strategy": "no", "eval_strategy": "no", "report_to": [], "use_cpu": True,
        "disable_tqdm": True, "dataloader_num_workers": 0, "seed": 0, **values})


def epoch_batches(dataset: StreamingImageDataset, epoch: int, workers: int = 0):
    dataset.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
    return list(loader)


def test_the_stream_has_the_split_size_classes_and_the_eval_split(shards_dir):
    data = streamed(shards_dir)
    assert isinstance(data.train_dataset, StreamingImageDataset) and data.train_dataset.num_examples == 40
    assert data.label_names == ["n00000000", "n00000001", "n00000002"] and data.preset == "imagenet"
    assert len(data.eval_dataset) == 6
    assert data.eval_dataset[4]["pixel_values"].shape == (3, 16, 16)  # a grayscale JPEG, as RGB


def test_two_processes_read_disjoint_examples_and_together_the_split(shards_dir):
    keys = []
    for rank in (0, 1):
        train = streamed(shards_dir).train_dataset.for_process(batch_size=4, rank=rank, world_size=2)
        assert len(train) == 5  # floor(40 / (2 * 4)) batches on every process
        batches = epoch_batches(train, 0)
        assert [b["pixel_values"].shape for b in batches] == [(4, 3, 16, 16)] * 5
        keys.append({int(k) for b in batches for k in b["index"]})
    assert not keys[0] & keys[1] and len(keys[0] | keys[1]) == 40


def test_batches_do_not_depend_on_the_worker_count_and_epochs_reshuffle(shards_dir):
    train = streamed(shards_dir, auto_augment="rand-m9-mstd0.5-inc1").train_dataset.for_process(4, 0, 1)
    alone, three = epoch_batches(train, 0, workers=0), epoch_batches(train, 0, workers=2)
    assert len(alone) == len(three) == 10
    for a, b in zip(alone, three):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["pixel_values"], b["pixel_values"])
    following = epoch_batches(train, 1)
    order = [int(k) for b in alone for k in b["index"]]
    assert sorted(order) == sorted(int(k) for b in following for k in b["index"])  # every example once an epoch
    assert order != [int(k) for b in following for k in b["index"]]


def recording_trainer(tmp_path, data, stop_at=None, **values):
    seen = []

    class Trainer(DistillationTrainer):
        def compute_loss(self, model, inputs, **kwargs):
            seen.append(inputs["index"].tolist())
            return super().compute_loss(model, inputs, **kwargs)

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if stop_at is not None and state.global_step == stop_at:
                control.should_training_stop = True

    torch.manual_seed(0)
    trainer = Trainer(model=create_model("resnet8", num_classes=NUM_CLASSES), args=run_args(tmp_path, **values),
                      train_dataset=data.train_dataset, eval_dataset=data.eval_dataset, callbacks=[Stop()])
    return trainer, seen


def test_a_run_stopped_mid_epoch_resumes_on_the_uninterrupted_batches(tmp_path, shards_dir):
    data = streamed(shards_dir, mixup_alpha=0.5)
    whole, whole_seen = recording_trainer(tmp_path / "whole", data)
    whole.train()
    assert whole.state.global_step == 20 and len(whole_seen) == 20

    stopped, first = recording_trainer(tmp_path / "cut", streamed(shards_dir, mixup_alpha=0.5), stop_at=13,
                                       save_strategy="steps", save_steps=13)
    stopped.train()
    data = streamed(shards_dir, mixup_alpha=0.5)
    resumed, second = recording_trainer(tmp_path / "cut", data)
    decoded = []
    decode = data.train_dataset._decode
    data.train_dataset._decode = lambda rows: decoded.append(1) or decode(rows)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-13"))
    assert first + second == whole_seen  # epoch 2 resumed at its 4th batch: the same examples in the same order
    assert len(decoded) == 7  # the 3 batches of epoch 2 already trained on were read, not decoded
    for name, value in whole.model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[name].float(), value.float(), atol=1e-6), name


def test_crd_and_the_cifar_preset_are_refused_with_streaming(tmp_path, shards_dir):
    data = streamed(shards_dir)
    with pytest.raises(IncompatibleSetupError, match="method 'crd' needs example indices and the training-set size"):
        DistillationTrainer(model=create_model("resnet8", num_classes=3), teacher=create_model("resnet8", num_classes=3),
                            args=run_args(tmp_path, method="crd"), train_dataset=data.train_dataset,
                            eval_dataset=data.eval_dataset)
    with pytest.raises(RecipeError, match="streaming decodes images one at a time"):
        DataArguments(dataset_name=shards_dir, streaming=True, transform_preset="cifar")


def test_the_trainer_loads_the_stream_for_its_process(tmp_path, shards_dir):
    data = streamed(shards_dir)
    trainer = DistillationTrainer(model=create_model("resnet8", num_classes=3), args=run_args(tmp_path),
                                  train_dataset=data.train_dataset, eval_dataset=data.eval_dataset)
    loader = trainer.get_train_dataloader()
    assert len(loader) == 10 and streaming_dataloader is not None
    assert next(iter(loader))["pixel_values"].shape == (4, 3, 16, 16)
