"""No process trains on a batch of one example: SRRL's BatchNorm failed on the last batch of 65 examples at batch 64
("Expected more than 1 value per channel when training"). Every method and student is refused before training, in
one sentence with the fix, or trains (dataloader_drop_last, or a batch size that leaves more than one over)."""

from __future__ import annotations

import pytest

from hfkd.config import DistillationConfig
from hfkd.errors import RecipeError
from hfkd.methods import METHODS
from hfkd.models import create_model
from hfkd.run import main
from hfkd.setup_checks import smallest_training_batch
from hfkd.trainer import DistillationTrainer
from tests.conftest import learnable_datasets
from tests.refusals import refusal, tiny_recipe


@pytest.mark.parametrize("examples, batch, world, drop_last, even, smallest", [
    (65, 64, 1, False, True, 1),     # the report: 64 + 1
    (66, 64, 1, False, True, 2),
    (64, 64, 1, False, True, 64),
    (65, 64, 1, True, True, 64),     # the 1 is dropped
    (10, 1, 1, False, True, 1),      # every batch holds one
    (65, 32, 2, False, True, 32),    # accelerate completes the last round from the epoch's start
    (65, 32, 2, False, False, 1),    # without even_batches the last process gets the 65th example alone
    (97, 32, 2, False, False, 1),    # 97 = 64 + 32 + 1: process 0 gets 32, process 1 gets 1
    (80, 32, 2, False, False, 16),   # 80 = 64 + 16
])
def test_the_smallest_batch_a_process_receives(examples, batch, world, drop_last, even, smallest):
    assert smallest_training_batch(examples, batch, world, drop_last, even) == smallest


def config(tmp_path, method: str, **keys) -> DistillationConfig:
    return DistillationConfig(output_dir=str(tmp_path / "out"), method=method, per_device_train_batch_size=64,
                              num_train_epochs=1, save_strategy="no", eval_strategy="no", disable_tqdm=True,
                              report_to=[], crd_nce_k=16, **keys)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_is_refused_before_a_batch_of_one(tmp_path, method):
    train, _ = learnable_datasets(n_train=65, n_eval=8)
    student = create_model("resnet8", num_classes=4)
    teacher = None if method == "none" else create_model("resnet14", num_classes=4)
    with pytest.raises(RecipeError) as err:
        DistillationTrainer(model=student, teacher=teacher, args=config(tmp_path, method), train_dataset=train)
    assert str(err.value) == (
        "the last training batch of each epoch would hold 1 example (65 examples in batches of 64), which BatchNorm "
        "and the relational losses cannot train on; set dataloader_drop_last: true or another per_device_train_batch_size"
    )


@pytest.mark.parametrize("examples, keys", [(65, {"dataloader_drop_last": True}), (66, {})])
def test_srrl_trains_with_the_advice(tmp_path, examples, keys):
    train, _ = learnable_datasets(n_train=examples, n_eval=8)
    trainer = DistillationTrainer(model=create_model("resnet8", num_classes=4),
                                  teacher=create_model("resnet14", num_classes=4).eval(),
                                  args=config(tmp_path, "srrl", **keys), train_dataset=train)
    trainer.train()
    assert trainer.state.global_step == (1 if keys else 2)


def test_the_command_line_refuses_before_anything_is_written(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    error = refusal(capsys, main([str(recipe), "--max_train_samples", "33"]))
    assert "the last training batch of each epoch would hold 1 example (33 examples in batches of 32)" in error
    assert not (tmp_path / "out").exists()
    error = refusal(capsys, main([str(recipe), "--per_device_train_batch_size", "1"]))
    assert error.endswith("per_device_train_batch_size 1 gives batches of one example, which BatchNorm and the "
                          "relational losses cannot train on; use 2 or more")
