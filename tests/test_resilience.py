"""No silent failure and exact resume: nan/inf losses stop training, a near-chance teacher is flagged, fp16 on a CPU is
refused, bf16 on a CPU matches fp32, and a run killed (mid-epoch or mid-save) resumes to the uninterrupted result."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hfkd import launch
from hfkd.config import DistillationConfig
from hfkd.distillation_model import DistillationModel, LossWeights
from hfkd.errors import IncompatibleSetupError, NonFiniteLossError, RecipeError
from hfkd.methods import METHODS, DistillationMethod, build_method
from hfkd.models import create_model
from hfkd.trainer import DistillationTrainer, example_batch
from tests.conftest import learnable_datasets

REPO_ROOT = Path(__file__).resolve().parents[1]


class BecomesNan(DistillationMethod):
    """A method whose loss is finite until its third call, then nan."""

    name = "nan_after_two_steps"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, student_out, teacher_out, batch):
        self.calls += 1
        value = student_out.logits.float().mean() * 0
        return {"boom": value + (float("nan") if self.calls >= 3 else 0.0)}


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, learnable_data):
    model = DistillationModel(create_model("resnet8", num_classes=4), BecomesNan(), LossWeights(cls=1, div=0, beta=1))
    trainer = DistillationTrainer(
        model=model, teacher=create_model("resnet8", num_classes=4),
        args=DistillationConfig(output_dir=str(tmp_path / "out"), method="kd", num_train_epochs=2,
                                per_device_train_batch_size=32, save_strategy="steps", save_steps=2,
                                eval_strategy="no", disable_tqdm=True),
        train_dataset=learnable_data[0],
    )
    with pytest.raises(NonFiniteLossError) as err:
        trainer.train()
    message = str(err.value)
    assert "the loss term 'boom' became nan or inf at step 3" in message
    assert "checkpoint-2" in message and "\n" not in message
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-2"]


def test_a_near_chance_teacher_is_flagged_before_distillation(tmp_path, learnable_data, caplog, trained_teacher):
    def trainer_with(teacher):
        return DistillationTrainer(
            model=create_model("resnet8", num_classes=4), teacher=teacher,
            args=DistillationConfig(output_dir=str(tmp_path / "out"), method="kd", disable_tqdm=True),
            train_dataset=learnable_data[0], eval_dataset=learnable_data[1],
        )

    constant = create_model("resnet8", num_classes=4)
    with torch.no_grad():  # predicts class 0 for everything: 25 % on 4 balanced classes
        constant.fc.weight.zero_()
        constant.fc.bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    with caplog.at_level(logging.WARNING, logger="hfkd.trainer"):
        assert trainer_with(constant).check_teacher() == pytest.approx(25.0)
    assert "near chance (25.0 % for 4 classes; below 32.5 %" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hfkd.trainer"):
        assert trainer_with(trained_teacher).check_teacher() > 50.0  # trained 3 epochs on the same task
    assert "near chance" not in caplog.text


def test_fp16_on_a_machine_without_a_gpu_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "accelerator_kind", lambda: None)  # a machine without a GPU, whatever this one has
    with pytest.raises(RecipeError, match="fp16 needs a GPU, and this machine has none; use bf16: true"):
        launch.choose_launch({"output_dir": str(tmp_path), "fp16": True})


# the methods whose build accepts a resnet pair: every method but those whose cls / div terms read named student heads
# (ce_head / kd_head: DeiT's two heads, which only a DeiT-with-teacher student has; its bf16 check is in
# tests/test_method_deit.py). The next test pins the left-out set, so no method drops out of the bf16 check unnoticed.
RESNET_METHODS = sorted(name for name, method in METHODS.items() if method.ce_head is None and method.kd_head is None)


def test_only_methods_that_refuse_a_resnet_student_are_left_out():
    left_out = sorted(set(METHODS) - set(RESNET_METHODS))
    assert left_out == ["deit"]
    for method in left_out:
        config = DistillationConfig(output_dir="/tmp/hfkd-left-out", method=method)
        with pytest.raises(IncompatibleSetupError, match="has a single head"):
            build_method(method, create_model("resnet8", num_classes=4), create_model("resnet14", num_classes=4),
                         config, None)


@pytest.mark.parametrize("method", RESNET_METHODS)
def test_bf16_autocast_on_cpu_matches_fp32(method, tmp_path):
    torch.manual_seed(0)
    train, _ = learnable_datasets(n_train=64, n_eval=8)
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet14", num_classes=4).eval()
    config = DistillationConfig(output_dir=str(tmp_path), method=method, per_device_train_batch_size=32,
                                crd_nce_k=16)
    train = METHODS[method].prepare_train_dataset(train, config)
    built = build_method(method, student, teacher, config, example_batch(train, lambda b: b), train_dataset=train)
    defaults = (built.default_cls, built.default_div, built.default_beta)
    model = DistillationModel(student, built, LossWeights(*[float(max(d, 0.5)) for d in defaults])).train()
    batch = train.__getitems__(list(range(32)))
    batch["epoch"] = 1
    values = {}
    for precision in ("fp32", "bf16"):
        state = {k: v.clone() for k, v in model.state_dict().items()}  # the same weights and memory both times
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            with torch.no_grad():
                teacher_out = teacher(batch["pixel_values"], return_features=True)
            out = model(**batch, teacher_outputs=teacher_out)
        model.load_state_dict(state)
        assert out["loss"].dtype == torch.float32
        values[precision] = {"loss": out["loss"].item(), **{k: v.item() for k, v in out["terms"].items()}}
    for name, reference in values["fp32"].items():
        # bf16 keeps 8 bits of mantissa: a relative error of a few 1e-3 per op, a few 1e-2 through a network
        assert values["bf16"][name] == pytest.approx(reference, rel=5e-2, abs=1e-3), name


# ---- exact resume ---------------------------------------------------------------------------------------------

SCRIPT = textwrap.dedent('''
    import hashlib, json, os, random, signal, sys
    import numpy as np
    import torch
    from transformers import TrainerCallback
    from hfkd.config import DistillationConfig
    from hfkd.models import create_model
    from hfkd.trainer import DistillationTrainer
    from tests.conftest import learnable_datasets

    mode, output, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class StepRecorder(TrainerCallback):
        """The training state each step starts from: step count, lr and scheduler count, optimizer momentum, the
        RNG states, the student's weights and the CRD memory."""

        def __init__(self):
            self.steps = []

        def on_step_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
            scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
            buffers = [s["momentum_buffer"] for s in optimizer.state.values() if s.get("momentum_buffer") is not None]
            self.steps.append({
                "step": state.global_step, "lr": scheduler.get_last_lr()[0], "scheduler_count": scheduler.last_epoch,
                "momentum": sum(b.double().abs().sum().item() for b in buffers),
                "torch_rng": hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest(),
                "numpy_rng": hashlib.sha256(np.random.get_state()[1].tobytes()).hexdigest(),
                "python_rng": hashlib.sha256(repr(random.getstate()).encode()).hexdigest(),
                "student": sum(p.double().abs().sum().item() for p in model.student.parameters()),
                "memory": model.method.contrast.memory_v1.double().abs().sum().item(),
            })

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if mode == "kill_after_save" and state.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    class Trainer(DistillationTrainer):
        def _save_rng_state(self, output_dir):
            if mode == "kill_during_save" and self.state.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # weights and optimizer written, RNG and state not yet
            super()._save_rng_state(output_dir)

    torch.manual_seed(0)
    train, evaluation = learnable_datasets(n_train=128, n_eval=64)
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet14", num_classes=4)
    args = DistillationConfig(output_dir=output, method="crd", crd_nce_k=32, num_train_epochs=2,
                              per_device_train_batch_size=32, lr_decay_epochs=[1], save_strategy="steps",
                              save_steps=3, save_total_limit=None, disable_tqdm=True, seed=0)
    trainer = Trainer(model=student, teacher=teacher, args=args, train_dataset=train, eval_dataset=evaluation,
                      callbacks=[KillAfterSave(), recorder := StepRecorder()])
    trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
    weights = {k: v.double().sum().item() for k, v in trainer.model.state_dict().items()}
    evals = [h for h in trainer.state.log_history if "eval_top1" in h]
    print("RESULT" + json.dumps({"evals": evals, "weights": weights, "steps": recorder.steps}))
''')


def run_script(tmp_path, mode, output, kill_at=0):
    script = tmp_path / "resume_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, str(script), mode, str(output), str(kill_at)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=str(tmp_path))


def result_of(done):
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    return json.loads(line[len("RESULT"):])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    return result_of(run_script(folder, "full", folder / "out"))


@pytest.mark.parametrize("kill, resumes_at", [("kill_after_save", 6), ("kill_during_save", 3)])
def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, kill, resumes_at):
    output = tmp_path / "out"
    # 4 steps per epoch; killed at step 6 (mid-epoch 2) after its save or while saving. Both leave checkpoint-3 and
    # checkpoint-6: after the save both are complete and the run must resume from the newer one; during the save
    # checkpoint-6 is incomplete and the run must resume from checkpoint-3
    done = run_script(tmp_path, kill, output, 6)
    assert done.returncode == -9  # SIGKILL
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    complete = (output / "checkpoint-6" / "trainer_state.json").exists()
    assert complete == (kill == "kill_after_save")  # during the save it looks started, but is not complete
    resumed = result_of(run_script(tmp_path, "resume", output))
    # the resumed run STARTS at the checkpoint's step, in the state the uninterrupted run had there: a run that
    # ignored the checkpoint (retraining from step 0) or took the oldest one would start elsewhere
    assert resumed["steps"][0]["step"] == resumes_at
    assert [s["step"] for s in resumed["steps"]] == list(range(resumes_at, 8))
    for got, expected in zip(resumed["steps"], uninterrupted["steps"][resumes_at:]):
        for key in ("step", "scheduler_count", "torch_rng", "numpy_rng", "python_rng"):
            assert got[key] == expected[key], (got["step"], key)
        for key in ("lr", "momentum", "student", "memory"):
            assert got[key] == pytest.approx(expected[key], rel=1e-6), (got["step"], key)
    assert [e["eval_top1"] for e in resumed["evals"]] == [e["eval_top1"] for e in uninterrupted["evals"]]
    assert [e["eval_loss"] for e in resumed["evals"]] == pytest.approx(
        [e["eval_loss"] for e in uninterrupted["evals"]], rel=1e-6)
    assert resumed["weights"].keys() == uninterrupted["weights"].keys()
    for name, value in uninterrupted["weights"].items():  # student, CRD embeddings and memory
        assert resumed["weights"][name] == pytest.approx(value, rel=1e-6, abs=1e-6), name
