"""Every method trains, evaluates and exports with a zoo pair, a timm pair and a transformers pair (tiny models,
random init, offline); map-based methods refuse a token-feature (ViT) teacher before training. A method that trains
separate student heads (DeiT's class and distillation heads) runs with a tiny DeiT-with-teacher student instead."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForImageClassification, ResNetConfig, ResNetForImageClassification
from transformers import DeiTConfig, ViTConfig, ViTForImageClassification

from hfkd.config import DistillationConfig
from hfkd.errors import IncompatibleSetupError
from hfkd.methods import METHODS
from hfkd.models import create_model
from hfkd.trainer import DistillationTrainer
from tests.conftest import learnable_datasets

NUM_CLASSES = 4
# methods whose loss reads stage maps [C, H, W] of both models (a ViT gives token sequences instead)
MAP_METHODS = {"fitnet", "at", "sp", "vid", "nst", "semckd", "simkd"}
# methods whose cls / div terms read named student heads (ce_head / kd_head): only a DeiT-with-teacher student has
# them (other students are refused, tests/test_method_deit.py), so these run with the deit_student below and each
# family's teacher; every other method keeps the family's student
HEAD_METHODS = {name for name, method in METHODS.items() if method.ce_head is not None or method.kd_head is not None}


def transformers_resnet(folder, widths, seed):
    torch.manual_seed(seed)
    config = ResNetConfig(embedding_size=widths[0], hidden_sizes=widths, depths=[1, 1, 1, 1], num_labels=NUM_CLASSES)
    ResNetForImageClassification(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """(student source, teacher source) per model family; transformers models are saved to folders."""
    root = tmp_path_factory.mktemp("hf_models")
    return {
        "zoo": ("resnet8", "resnet14"),
        "timm": ("test_efficientnet", "test_resnet"),
        "transformers": (transformers_resnet(root / "student", [8, 8, 16, 16], 1),
                         transformers_resnet(root / "teacher", [8, 16, 32, 64], 2)),
    }


@pytest.fixture(scope="module")
def deit_student(tmp_path_factory):
    """A config-only folder of a tiny DeiT with a distillation token (random init when loaded)."""
    folder = tmp_path_factory.mktemp("deit_student")
    DeiTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64, num_labels=NUM_CLASSES,
               architectures=["DeiTForImageClassificationWithTeacher"]).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def data():
    return learnable_datasets(n_train=48, n_eval=32, num_classes=NUM_CLASSES)


def run_method(method, student, teacher, data, output_dir):
    args = DistillationConfig(
        output_dir=str(output_dir), method=method, num_train_epochs=1, per_device_train_batch_size=16,
        per_device_eval_batch_size=32, lr_decay_epochs=[], learning_rate=0.01, save_strategy="no",
        disable_tqdm=True, seed=0,
    )
    return DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=data[0],
                               eval_dataset=data[1], class_names=["a", "b", "c", "d"])


@pytest.mark.parametrize("family", ["zoo", "timm", "transformers"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains_evaluates_and_exports(method, family, pairs, deit_student, data, tmp_path):
    torch.manual_seed(0)
    student_source, teacher_source = pairs[family]
    if method in HEAD_METHODS:
        student_source = deit_student
    student = create_model(student_source, num_classes=NUM_CLASSES)
    teacher = create_model(teacher_source, num_classes=NUM_CLASSES).eval()
    trainer = run_method(method, student, teacher, data, tmp_path / "out")
    trainer.train()

    history = trainer.state.log_history
    (train_log,) = [h for h in history if "loss" in h]
    terms = {k for k in train_log if k.startswith("loss_")}
    assert terms and all(math.isfinite(train_log[k]) for k in terms | {"loss"}), train_log
    (eval_log,) = [h for h in history if "eval_top1" in h]

    export = tmp_path / "export"
    trainer.save_model(str(export))
    reloaded = AutoModelForImageClassification.from_pretrained(export).eval()
    assert reloaded.config.id2label[3] == "d"
    batch = data[1].__getitems__(list(range(32)))
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    with torch.no_grad():
        expected = model(pixel_values=batch["pixel_values"])["logits"]  # the trainer's evaluation prediction
        got = reloaded(pixel_values=batch["pixel_values"]).logits
    assert torch.allclose(got, expected, atol=1e-5)
    # the logged metrics are those of the exported model's predictions on the 32 evaluation images
    top1 = (got.argmax(-1) == batch["labels"]).float().mean().item() * 100
    assert top1 == pytest.approx(eval_log["eval_top1"])
    assert F.cross_entropy(got, batch["labels"]).item() == pytest.approx(eval_log["eval_loss"], rel=1e-4)


@pytest.fixture(scope="module")
def vit_teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=NUM_CLASSES)
    torch.manual_seed(3)
    ViTForImageClassification(config).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_token_feature_teacher(method, vit_teacher, deit_student, data, tmp_path):
    student = create_model(deit_student if method in HEAD_METHODS else "resnet8", num_classes=NUM_CLASSES)
    teacher = create_model(vit_teacher).eval()
    if method in MAP_METHODS:
        with pytest.raises(IncompatibleSetupError) as err:
            run_method(method, student, teacher, data, tmp_path / "out")
        message = str(err.value)
        assert method in message and "\n" not in message
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    else:
        trainer = run_method(method, student, teacher, data, tmp_path / "out")
        trainer.train()
        assert math.isfinite(trainer.state.log_history[0]["loss"])
