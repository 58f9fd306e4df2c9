"""Per-epoch draws (crops, flips, CRD negatives) reach DataLoader workers, also persistent ones: with
dataloader_persistent_workers every epoch used to repeat epoch 1's draws, because the epoch was set on the main
process's copy of the dataset only. Epochs 1 and 2 must draw exactly what 0 workers draw."""

from __future__ import annotations

import pytest
import torch

from hfkd.config import DistillationConfig
from hfkd.data.collate import collate_image_batch
from hfkd.data.contrast import contrastive_dataset
from hfkd.models import create_model
from hfkd.trainer import DistillationTrainer
from tests.conftest import learnable_datasets


def epochs_of(dataset, num_workers: int, persistent: bool, epochs: int = 2) -> list[list[dict]]:
    """The batches of ``epochs`` epochs, the epoch set on the dataset before each (as the trainer does)."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=16, num_workers=num_workers, persistent_workers=persistent, collate_fn=collate_image_batch,
        prefetch_factor=2 if num_workers else None,
    )
    drawn = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        drawn.append([{k: v.clone() for k, v in batch.items()} for batch in loader])
    return drawn


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for epoch_a, epoch_b in zip(a, b):
        assert len(epoch_a) == len(epoch_b)
        for x, y in zip(epoch_a, epoch_b):
            assert x.keys() == y.keys()
            for key in x:
                assert torch.equal(x[key], y[key]), key


@pytest.mark.parametrize("crd", [False, True])
@pytest.mark.parametrize("workers, persistent", [(2, True), (2, False), (1, True)])
def test_epochs_one_and_two_draw_the_same_in_workers_as_in_the_main_process(crd, workers, persistent):
    train, _ = learnable_datasets(n_train=64, n_eval=8)
    dataset = contrastive_dataset(train, nce_k=8) if crd else train
    reference = epochs_of(dataset, 0, False)
    # the two epochs draw differently (else the comparison below could not tell the epochs apart)
    assert not torch.equal(reference[0][0]["pixel_values"], reference[1][0]["pixel_values"])
    if crd:
        assert not torch.equal(reference[0][0]["contrast_index"], reference[1][0]["contrast_index"])
    assert_same_batches(epochs_of(dataset, workers, persistent), reference)


def test_training_with_persistent_workers_matches_training_without_workers(tmp_path):
    def trained(workers: int, persistent: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        train, _ = learnable_datasets(n_train=64, n_eval=8)
        trainer = DistillationTrainer(
            model=create_model("resnet8", num_classes=4),
            args=DistillationConfig(
                output_dir=str(tmp_path / f"w{workers}"), method="none", num_train_epochs=2,
                per_device_train_batch_size=32, lr_decay_epochs=[], save_strategy="no", eval_strategy="no",
                disable_tqdm=True, report_to=[], dataloader_num_workers=workers,
                dataloader_persistent_workers=persistent, seed=0, data_seed=0,
            ),
            train_dataset=train,
        )
        trainer.train()
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    reference = trained(0, False)
    persistent = trained(2, True)
    assert reference.keys() == persistent.keys()
    for name in reference:
        assert torch.equal(reference[name], persistent[name]), name
