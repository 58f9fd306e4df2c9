"""DistillationTrainer: the frozen teacher, the reference optimizer and schedule, logging, export."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, TrainerCallback

from hfkd.config import DistillationConfig
from hfkd.errors import IncompatibleSetupError, RecipeError
from hfkd.models import create_model
from hfkd.results import summarize_evaluations
from hfkd.schedule import EpochMilestoneLR, milestone_factor
from hfkd.trainer import DistillationTrainer


def config(tmp_path, **overrides) -> DistillationConfig:
    values = dict(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        lr_decay_epochs=[1],
        learning_rate=0.05,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    values.update(overrides)
    return DistillationConfig(**values)


# ---- schedule -----------------------------------------------------------------------------------------------


def test_milestone_rule_is_epoch_greater_than_milestone():
    milestones = [150, 180, 210]
    assert milestone_factor(1, milestones, 0.1) == 1.0
    assert milestone_factor(150, milestones, 0.1) == 1.0  # epoch 150 still uses the initial lr
    assert milestone_factor(151, milestones, 0.1) == pytest.approx(0.1)
    assert milestone_factor(181, milestones, 0.1) == pytest.approx(0.01)
    assert milestone_factor(211, milestones, 0.1) == pytest.approx(0.001)
    assert milestone_factor(240, milestones, 0.1) == pytest.approx(0.001)


def test_epoch_milestone_scheduler_is_constant_within_epochs():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.05)
    scheduler = EpochMilestoneLR(optimizer, steps_per_epoch=3, milestones=[2, 3], rate=0.1)
    seen = []
    for _ in range(12):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.05] * 6 + [0.005] * 3 + [0.0005] * 3  # epochs 1-2, 3, 4
    assert seen == pytest.approx(expected)


def test_epoch_milestone_scheduler_needs_its_epoch_length_before_the_first_step():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.05)
    scheduler = EpochMilestoneLR(optimizer, milestones=[1], rate=0.1)
    with pytest.raises(RuntimeError, match="^EpochMilestoneLR stepped before its steps_per_epoch was set$"):
        scheduler.step()
    with pytest.raises(ValueError, match="^steps_per_epoch must be >= 1$"):
        scheduler.set_steps_per_epoch(0)
    scheduler.set_steps_per_epoch(1)  # one update per epoch: epoch 2 starts at the next step
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.005)


def test_milestone_epoch_length_reaches_the_scheduler_through_accelerates_wrapper():
    from types import SimpleNamespace

    from accelerate.scheduler import AcceleratedScheduler

    from hfkd.schedule import EpochLength

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    args = SimpleNamespace(gradient_accumulation_steps=2)
    for wrap in (False, True):
        scheduler = EpochMilestoneLR(optimizer, milestones=[1], rate=0.1)
        given = AcceleratedScheduler(scheduler, optimizer) if wrap else scheduler
        EpochLength().on_train_begin(args, None, None, lr_scheduler=given, train_dataloader=[0] * 7)
        assert scheduler.steps_per_epoch == 4  # ceil(7 batches / 2 accumulated)
    EpochLength().on_train_begin(args, None, None, lr_scheduler=scheduler, train_dataloader=[])
    assert scheduler.steps_per_epoch == 1  # an empty loader still gives a valid epoch length
    not_sized = iter([0] * 7)
    message = "^lr_decay_epochs needs a training set with a known length; use lr_scheduler_type$"
    for loader in (None, not_sized):
        with pytest.raises(RecipeError, match=message):
            EpochLength().on_train_begin(args, None, None, lr_scheduler=scheduler, train_dataloader=loader)


class RecordLr(TrainerCallback):
    def __init__(self):
        self.by_epoch: dict[int, set[float]] = {}

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        epoch = int(state.epoch or 0) + 1
        self.by_epoch.setdefault(epoch, set()).add(round(optimizer.param_groups[0]["lr"], 10))


def test_trainer_applies_milestones_per_epoch(tmp_path, learnable_data):
    recorder = RecordLr()
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=4),
        args=config(tmp_path, method="none", num_train_epochs=3, lr_decay_epochs=[1, 2], eval_strategy="no"),
        train_dataset=learnable_data[0],
        callbacks=[recorder],
    )
    trainer.train()
    assert recorder.by_epoch == {1: {0.05}, 2: {0.005}, 3: {0.0005}}


# ---- optimizer and teacher -----------------------------------------------------------------------------------


def test_sgd_with_momentum_and_decay_on_every_parameter(tmp_path, learnable_data):
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=4),
        args=config(tmp_path, method="none", eval_strategy="no"),
        train_dataset=learnable_data[0],
    )
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.SGD)
    decayed = [g for g in optimizer.param_groups if g["params"]]
    assert len(decayed) == 1 and decayed[0]["weight_decay"] == 5e-4
    assert decayed[0]["momentum"] == 0.9 and decayed[0]["nesterov"] is False
    n_params = sum(1 for _ in trainer.model.parameters())
    assert len(decayed[0]["params"]) == n_params  # BN weights and biases decay too


def test_transformers_decay_convention_is_available(tmp_path, learnable_data):
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=4),
        args=config(tmp_path, method="none", decay_norm_and_bias=False, eval_strategy="no"),
        train_dataset=learnable_data[0],
    )
    groups = {g["weight_decay"]: len(g["params"]) for g in trainer.create_optimizer().param_groups}
    assert groups[0.0] > 0 and groups[5e-4] > 0


def test_teacher_is_frozen_and_never_trained_or_saved(tmp_path, learnable_data):
    teacher = create_model("resnet8", num_classes=4)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=4),
        teacher=teacher,
        args=config(tmp_path, method="kd", num_train_epochs=1, save_strategy="epoch"),
        train_dataset=learnable_data[0],
        eval_dataset=learnable_data[1],
    )
    trainer.train()
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    # weights and BN running statistics untouched
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in teacher.parameters()}
    (checkpoint,) = (tmp_path / "out").glob("checkpoint-*")
    keys = load_file(checkpoint / "model.safetensors").keys()
    assert keys and all(k.startswith("student.") for k in keys)


def test_teacher_runs_only_in_training_steps(tmp_path, learnable_data):
    teacher = create_model("resnet8", num_classes=4)
    phase, calls = {"now": "check"}, []

    class Phase(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            phase["now"] = "train"

    teacher.register_forward_hook(lambda module, args, output: calls.append(phase["now"]))
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=4),
        teacher=teacher,
        args=config(tmp_path, method="kd", num_train_epochs=1),
        train_dataset=learnable_data[0],
        eval_dataset=learnable_data[1],
        callbacks=[Phase()],
    )
    trainer.train()
    steps = len(learnable_data[0]) // 32
    # before training: one example checks the teacher takes the input size, then one pass over the 128 evaluation
    # images (batch 64) measures it
    assert calls.count("check") == 3 and trainer.teacher_top1 is not None
    # then one call per training step, none during the per-epoch evaluation
    assert calls.count("train") == steps
    trainer.evaluate()
    assert calls.count("train") == steps


def test_class_count_mismatch_is_one_sentence(tmp_path, learnable_data):
    with pytest.raises(IncompatibleSetupError, match="the teacher predicts 10 classes but the student 4"):
        DistillationTrainer(
            model=create_model("resnet8", num_classes=4),
            teacher=create_model("resnet8", num_classes=10),
            args=config(tmp_path, method="kd"),
            train_dataset=learnable_data[0],
        )


def test_method_without_teacher_and_all_zero_weights_are_errors(tmp_path, learnable_data):
    with pytest.raises(RecipeError, match="method 'kd' needs a teacher"):
        DistillationTrainer(model=create_model("resnet8", num_classes=4), args=config(tmp_path, method="kd"),
                            train_dataset=learnable_data[0])
    with pytest.raises(RecipeError, match="nothing would be trained"):
        DistillationTrainer(model=create_model("resnet8", num_classes=4), args=config(tmp_path, method="none", cls=0),
                            train_dataset=learnable_data[0])


# ---- end to end ---------------------------------------------------------------------------------------------


def test_kd_run_learns_logs_terms_and_exports(tmp_path, learnable_data, trained_teacher):
    teacher = trained_teacher
    torch.manual_seed(1)
    student = create_model("resnet8", num_classes=4)
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=config(tmp_path, method="kd", num_train_epochs=3, lr_decay_epochs=[2]),
        train_dataset=learnable_data[0],
        eval_dataset=learnable_data[1],
        class_names=["w", "x", "y", "z"],
    )
    trainer.train()
    history = trainer.state.log_history
    train_logs = [h for h in history if "loss" in h]
    eval_logs = [h for h in history if "eval_top1" in h]
    assert len(train_logs) == 3 and len(eval_logs) == 3  # per-epoch logging and evaluation
    assert train_logs[-1]["loss"] < train_logs[0]["loss"]
    for log in train_logs:
        assert log["loss"] == pytest.approx(log["loss_ce"] + log["loss_kd"], rel=1e-4)
    assert all({"eval_top1", "eval_top5", "eval_top1_best"} <= set(h) for h in eval_logs)
    summary = summarize_evaluations(history)
    assert summary["top1_last"] == eval_logs[-1]["eval_top1"]
    assert summary["top1_best"] == max(h["eval_top1"] for h in eval_logs)
    assert summary["top1_last"] > 50.0  # 4 classes: chance is 25 %

    export = tmp_path / "export"
    trainer.save_model(str(export))
    assert {p.name for p in export.iterdir()} >= {"config.json", "model.safetensors"}
    assert not list(export.glob("*.bin")) and not list(export.glob("optimizer*"))
    reloaded = AutoModelForImageClassification.from_pretrained(export).eval()
    assert reloaded.config.id2label == {0: "w", 1: "x", 2: "y", 3: "z"}
    assert reloaded.config.distillation["method"] == "kd"
    assert reloaded.config.distillation["results"]["top1_last"] == summary["top1_last"]
    batch = learnable_data[1].__getitems__(list(range(32)))["pixel_values"]
    student.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(batch).logits, student(batch).logits, atol=1e-6)
    # the reloaded model reproduces the trainer's final top-1 on the eval set
    eval_batch = learnable_data[1].__getitems__(list(range(len(learnable_data[1]))))
    with torch.no_grad():
        predictions = reloaded(eval_batch["pixel_values"]).logits.argmax(-1)
    top1 = (predictions == eval_batch["labels"]).float().mean().item() * 100
    assert top1 == pytest.approx(summary["top1_last"], abs=1e-6)
    assert json.loads((export / "config.json").read_text())["model_type"] == "hfkd"


# ---- milestones as fractions of the run, and milestones the run never reaches ---------------------------------------


def test_fractional_milestones_keep_the_reference_shape():
    from hfkd.schedule import milestone_epochs

    assert milestone_epochs([0.625, 0.75, 0.875], 240) == [150, 180, 210]  # the reference's own schedule
    assert milestone_epochs([0.625, 0.75, 0.875], 8) == [5, 6, 7]
    assert milestone_epochs([150, 180, 210], 30) == [150, 180, 210]  # epochs stay epochs
    assert milestone_epochs([1], 8) == [1] and milestone_epochs([1.5, 3], 8) == [1.5, 3]  # 1 is an epoch, not 100 %
    (half,) = milestone_epochs([0.3], 5)
    assert half == 1.5 and isinstance(half, float)  # a fraction landing between epochs is kept, not truncated


def test_trainer_applies_fractional_milestones_per_epoch(tmp_path, learnable_data):
    recorder = RecordLr()
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=4),
        args=config(tmp_path, method="none", num_train_epochs=3, lr_decay_epochs=[1 / 3, 2 / 3], eval_strategy="no"),
        train_dataset=learnable_data[0],
        callbacks=[recorder],
    )
    trainer.train()
    # 1/3 and 2/3 of 3 epochs are epochs 1 and 2: the same schedule as lr_decay_epochs [1, 2]
    assert recorder.by_epoch == {1: {0.05}, 2: {0.005}, 3: {0.0005}}


def test_milestones_past_the_run_warn_once_and_the_card_states_the_schedule_that_ran(tmp_path, learnable_data, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        trainer = DistillationTrainer(
            model=create_model("resnet8", num_classes=4),
            args=config(tmp_path, method="none", num_train_epochs=1, lr_decay_epochs=[150, 180, 210]),
            train_dataset=learnable_data[0], eval_dataset=learnable_data[1],
        )
    warnings = [r.getMessage() for r in caplog.records if "lr_decay_epochs" in r.getMessage()]
    assert warnings == ["lr_decay_epochs [150, 180, 210] lie at or past the run's last epoch (1), so the learning rate "
                        "never decays there; give them as fractions of the run to keep the reference's shape, e.g. "
                        "[0.625, 0.75, 0.875]"]
    trainer.train()
    trainer.create_model_card()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "lr 0.05 constant (its milestones lay past the last epoch)" in card and "after epochs 150" not in card


def test_mixed_or_negative_milestones_are_one_sentence(tmp_path):
    with pytest.raises(RecipeError, match=r"lr_decay_epochs \[0.5, 150.0\] mixes fractions of the run"):
        config(tmp_path, lr_decay_epochs=[150, 0.5])
    with pytest.raises(RecipeError, match="lr_decay_epochs must be > 0"):
        config(tmp_path, lr_decay_epochs=[-1, 5])


# ---- logging integrations ------------------------------------------------------------------------------------------


def test_tensorboard_gets_every_loss_term_top1_top5_and_the_lr_per_epoch(tmp_path, learnable_data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    teacher = create_model("resnet8", num_classes=4)
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=4), teacher=teacher,
        args=config(tmp_path, method="kd", num_train_epochs=2, lr_decay_epochs=[1], report_to="tensorboard"),
        train_dataset=learnable_data[0], eval_dataset=learnable_data[1],
    )
    trainer.train()
    (events,) = (tmp_path / "out").rglob("events.out.tfevents.*")  # under output_dir/runs/, transformers' default
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    scalars = {tag: [e.value for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
    history = trainer.state.log_history
    for tag, key in (("train/loss_ce", "loss_ce"), ("train/loss_kd", "loss_kd"), ("eval/top1", "eval_top1"),
                     ("eval/top5", "eval_top5"), ("train/learning_rate", "learning_rate")):
        logged = [entry[key] for entry in history if key in entry]
        assert len(logged) == 2 and scalars[tag] == pytest.approx(logged, rel=1e-6), tag
    assert scalars["train/learning_rate"] == pytest.approx([0.05, 0.005])  # one value per epoch, x0.1 after epoch 1


def test_a_missing_logging_integration_is_one_sentence(tmp_path, learnable_data, monkeypatch):
    import hfkd.setup_checks as setup_checks

    real = setup_checks.importlib.util.find_spec
    monkeypatch.setattr(setup_checks.importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    with pytest.raises(RecipeError) as err:
        DistillationTrainer(model=create_model("resnet8", num_classes=4),
                            args=config(tmp_path, method="none", report_to=["mlflow"]),
                            train_dataset=learnable_data[0])
    assert str(err.value) == ("report_to mlflow needs the mlflow package, which is not installed; pip install "
                              "'hfkd[mlflow]' (or drop mlflow from report_to)")


@pytest.mark.parametrize("torch_compile", [True, False])
def test_each_compiled_step_starts_a_new_cuda_graph_generation(tmp_path, learnable_data, monkeypatch, torch_compile):
    # Under torch_compile_mode "reduce-overhead" (CUDA graphs) a step that does not mark its start reads outputs the
    # previous replay overwrote: on an H200 KD failed at its second compiled step (BENCHMARKS.md, GPU check).
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=4), teacher=create_model("resnet8", num_classes=4),
        args=config(tmp_path, method="kd", torch_compile=torch_compile, use_cpu=True),
        train_dataset=learnable_data[0], eval_dataset=learnable_data[1])
    model = trainer.model.train()  # the uncompiled model: what is checked is the call, not a compilation
    batch = next(iter(trainer.get_train_dataloader()))
    for _ in range(3):
        trainer.compute_loss(model, batch)
    assert len(marks) == (3 if torch_compile else 0)
