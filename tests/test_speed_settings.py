"""channels_last reaches every convolution of the run (student, the method's own modules, teacher) and changes no
value; the recipe keys of the speed settings reach the Trainer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hfkd.config import DistillationConfig
from hfkd.models import create_model
from hfkd.trainer import DistillationTrainer
from tests.conftest import learnable_datasets


def _conv_weights(module: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in module.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[-1] > 1]


def _trainer(tmp_path, channels_last: bool) -> DistillationTrainer:
    torch.manual_seed(0)
    train, evaluation = learnable_datasets(n_train=64, n_eval=8)
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet14", num_classes=4).eval()
    # semckd: its per-layer projectors hold 3x3 convolutions of the method's own
    config = DistillationConfig(output_dir=str(tmp_path / str(channels_last)), method="semckd",
                                per_device_train_batch_size=32, channels_last=channels_last)
    return DistillationTrainer(model=student, teacher=teacher, args=config, train_dataset=train,
                               eval_dataset=evaluation)


def test_channels_last_reaches_student_method_modules_and_teacher_and_changes_no_value(tmp_path):
    fast, plain = _trainer(tmp_path, True), _trainer(tmp_path, False)
    method_convs = _conv_weights(fast.model.method)
    assert method_convs, "the method chosen for this test must own 3x3 convolutions"
    for weight in _conv_weights(fast.model) + _conv_weights(fast.teacher):
        assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(plain.model))

    batch = fast.train_dataset.__getitems__(list(range(32)))
    pixels = batch.pop("pixel_values")
    losses = []
    for trainer, x in ((plain, pixels), (fast, pixels.contiguous(memory_format=torch.channels_last))):
        with torch.no_grad():
            teacher_out = trainer.teacher(x, return_features=True)
            losses.append(trainer.model(pixel_values=x, teacher_outputs=teacher_out, epoch=1, **batch)["loss"])
    assert losses[1].item() == pytest.approx(losses[0].item(), rel=1e-5)


def test_evaluation_runs_in_the_training_precision_even_before_training(tmp_path):
    train, evaluation = learnable_datasets(n_train=64, n_eval=64)
    results = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        student, teacher = create_model("resnet8", num_classes=4), create_model("resnet14", num_classes=4).eval()
        seen = []
        first_conv = next(m for m in student.modules() if isinstance(m, nn.Conv2d))
        first_conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
        config = DistillationConfig(output_dir=str(tmp_path / str(bf16)), method="kd", bf16=bf16, use_cpu=True,
                                    per_device_eval_batch_size=32)
        trainer = DistillationTrainer(model=student, teacher=teacher, args=config, train_dataset=train,
                                      eval_dataset=evaluation)
        seen.clear()  # set-up forwards (example batch) are not evaluation
        results[bf16] = trainer.evaluate()
        assert seen and set(seen) == {torch.bfloat16 if bf16 else torch.float32}
    assert results[True]["eval_loss"] == pytest.approx(results[False]["eval_loss"], rel=2e-2)


def test_logged_gradient_norm_is_the_norm_accelerate_computes(tmp_path):
    """The Trainer logs grad_norm every logging step; hfkd computes it with one fused reduction over the optimizer's
    parameters instead of accelerate's clip at max_norm=inf. Both must give the same value for every step."""
    from transformers import Trainer, TrainerCallback

    torch.manual_seed(0)
    train, _ = learnable_datasets(n_train=96, n_eval=8)
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet14", num_classes=4).eval()
    config = DistillationConfig(output_dir=str(tmp_path), method="fitnet", per_device_train_batch_size=32,
                                max_steps=3, logging_steps=1, logging_strategy="steps", save_strategy="no",
                                eval_strategy="no", report_to="none", lr_decay_epochs=[])
    trainer = DistillationTrainer(model=student, teacher=teacher, args=config, train_dataset=train)
    reference = []

    class AccelerateNorm(TrainerCallback):  # runs after the norm is taken and before the optimizer steps
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            reference.append(float(Trainer._get_grad_norm(trainer, trainer.model_wrapped)))

    trainer.add_callback(AccelerateNorm())
    trainer.train()
    logged = [entry["grad_norm"] for entry in trainer.state.log_history if "grad_norm" in entry]
    assert len(logged) == len(reference) == 3
    assert logged == pytest.approx(reference, rel=1e-5)
    assert len(set(logged)) == 3 and min(logged) > 0  # a real norm of each step's gradients


def test_a_channels_last_run_saves_checkpoints_and_resumes_from_them(tmp_path):
    """safetensors stores contiguous tensors only: channels_last convolution weights are made contiguous for a
    checkpoint, and a run resumed from it ends with the uninterrupted run's weights."""
    from safetensors.torch import load_file

    def trainer(name: str) -> DistillationTrainer:
        torch.manual_seed(0)
        train, evaluation = learnable_datasets(n_train=64, n_eval=8)
        student, teacher = create_model("resnet8", num_classes=4), create_model("resnet14", num_classes=4).eval()
        config = DistillationConfig(output_dir=str(tmp_path / name), method="kd", per_device_train_batch_size=32,
                                    channels_last=True, max_steps=2, save_strategy="steps", save_steps=1, save_total_limit=2,
                                    lr_decay_epochs=[], disable_tqdm=True, report_to=[])
        return DistillationTrainer(model=student, teacher=teacher, args=config, train_dataset=train,
                                   eval_dataset=evaluation)

    whole = trainer("whole")
    whole.train()
    saved = load_file(str(tmp_path / "whole" / "checkpoint-2" / "model.safetensors"))
    final = whole.model.state_dict()
    assert saved.keys() == final.keys() and all(torch.equal(saved[k], final[k]) for k in final)
    resumed = trainer("resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "whole" / "checkpoint-1"))
    assert resumed.state.global_step == 2
    assert all(torch.equal(v, final[k]) for k, v in resumed.model.state_dict().items())
