"""The "teacher near chance" check is right for any class count and says what it measured: near chance means below
a tenth of the way from chance to 100 % (two times chance, the earlier rule, flagged every binary teacher)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from hfkd.config import DistillationConfig
from hfkd.models import create_model
from hfkd.models.outputs import ClassifierOutput
from hfkd.teacher_check import near_chance_threshold
from hfkd.trainer import DistillationTrainer
from tests.conftest import learnable_datasets


@pytest.mark.parametrize("classes, threshold", [(2, 55.0), (4, 32.5), (10, 19.0), (100, 10.9), (1000, 10.09)])
def test_the_threshold_is_a_tenth_of_the_way_from_chance_to_perfect(classes, threshold):
    assert near_chance_threshold(classes) == pytest.approx(threshold)


class ColourTeacher(nn.Module):
    """Predicts the class whose mean image brightness is nearest (right on learnable images), except for the
    images listed in ``wrong``, which it gets wrong."""

    def __init__(self, class_means: torch.Tensor, wrong: torch.Tensor) -> None:
        super().__init__()
        self.num_classes = len(class_means)
        self.register_buffer("class_means", class_means)
        self.register_buffer("wrong", wrong)

    def forward(self, pixel_values, return_features=False):
        brightness = pixel_values.mean(dim=(1, 2, 3))
        logits = -(brightness[:, None] - self.class_means[None]) ** 2
        flip = (pixel_values[:, None] == self.wrong[None]).flatten(2).all(-1).any(-1)
        logits = torch.where(flip[:, None], logits.flip(-1), logits)
        return ClassifierOutput(logits=logits)


def check(tmp_path, teacher, evaluation, train):
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=2), teacher=teacher,
        args=DistillationConfig(output_dir=str(tmp_path / "out"), method="kd", disable_tqdm=True, report_to=[],
                                per_device_eval_batch_size=50),
        train_dataset=train, eval_dataset=evaluation, class_names=["a", "b"],
    )
    return trainer.check_teacher()


def test_a_99_percent_binary_teacher_is_not_near_chance_and_a_50_percent_one_is(tmp_path, caplog):
    train, evaluation = learnable_datasets(n_train=64, n_eval=100, num_classes=2)
    pixels = torch.stack([evaluation[i]["pixel_values"] for i in range(100)])
    labels = evaluation.labels
    means = torch.stack([pixels[labels == c].mean() for c in range(2)])
    good = ColourTeacher(means, wrong=pixels[:1])  # wrong on 1 of 100
    with caplog.at_level(logging.WARNING, logger="hfkd.teacher_check"):
        assert check(tmp_path, good, evaluation, train) == pytest.approx(99.0)
    assert "near chance" not in caplog.text

    caplog.clear()
    coin = ColourTeacher(means, wrong=pixels[labels == 1])  # always class 0: half right
    with caplog.at_level(logging.WARNING, logger="hfkd.teacher_check"):
        assert check(tmp_path, coin, evaluation, train) == pytest.approx(50.0)
    assert ("the teacher reaches 50.0 % top-1 on 100 evaluation examples, near chance (50.0 % for 2 classes; "
            "below 55.0 %, a tenth of the way from chance to 100 %)") in caplog.text
