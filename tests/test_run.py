"""The entry point: a recipe's stages run in order, write exports and results, and bad input is one sentence."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from transformers import AutoModelForImageClassification

from hfkd.run import main
from tests.conftest import write_image_dataset


@pytest.fixture()
def tiny_recipe(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_image_dataset(data, splits={"train": 96, "test": 48})
    recipe = {
        "dataset_name": str(data),
        "output_dir": str(tmp_path / "out"),
        "num_train_epochs": 2,
        "lr_decay_epochs": [1],
        "per_device_train_batch_size": 32,
        "save_strategy": "no",
        "disable_tqdm": True,
        "stages": {
            "teacher": {"model_name_or_path": "resnet8", "method": "none"},
            "kd": {"model_name_or_path": "resnet8", "teacher": "{output_dir}/teacher", "method": "kd"},
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))  # stages run in file order
    return path, tmp_path / "out"


def test_stages_run_in_order_and_write_exports(tiny_recipe, capsys):
    recipe, out = tiny_recipe
    assert main([str(recipe)]) == 0
    printed = capsys.readouterr().out
    assert "| teacher | resnet8 | - | none |" in printed and "| kd | resnet8 |" in printed
    rows = json.loads((out / "results.json").read_text())
    assert [r["stage"] for r in rows] == ["teacher", "kd"]
    assert all(r["evaluations"] == 2 and 0 <= r["top1_last"] <= 100 for r in rows)
    assert (out / "results.md").read_text().startswith("| stage |")
    for stage in ("teacher", "kd"):
        folder = out / stage
        assert {"config.json", "model.safetensors", "preprocessor_config.json", "recipe.yaml", "results.json"} <= {
            p.name for p in folder.iterdir()
        }
        model = AutoModelForImageClassification.from_pretrained(folder)
        assert model(torch.zeros(1, 3, 32, 32)).logits.shape == (1, 4)
    resolved = yaml.safe_load((out / "kd" / "recipe.yaml").read_text())
    assert resolved["teacher"] == str(out / "teacher") and resolved["output_dir"] == str(out / "kd")


def test_existing_outputs_are_never_overwritten_silently(tiny_recipe, capsys):
    recipe, out = tiny_recipe
    assert main([str(recipe), "--num_train_epochs", "1"]) == 0
    before = {p: p.read_bytes() for p in (out / "teacher").iterdir()}
    capsys.readouterr()
    # the same recipe again: its finished stages are kept, not trained again
    assert main([str(recipe), "--num_train_epochs", "1"]) == 0
    assert "hfkd: stage teacher: finished earlier in" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in (out / "teacher").iterdir()} == before
    # another recipe into the same folders: refused, with advice that works (no checkpoint, so no resume advice)
    assert main([str(recipe), "--num_train_epochs", "2"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "already holds a run" in error and "--overwrite_output_dir true" in error
    assert "resume" not in error
    assert {p: p.read_bytes() for p in (out / "teacher").iterdir()} == before


@pytest.mark.parametrize(
    "override, message",
    [
        (["--learing_rate", "0.1"], "unknown key 'learing_rate' in the command line; did you mean 'learning_rate'"),
        (["--method", "nope"], "method 'nope' is unknown"),
        (["--model_name_or_path", "resnet9"], "model 'resnet9' is not a CIFAR zoo name (did you mean"),
        (["--dataset_name", "/does/not/exist"], "could not load dataset '/does/not/exist'"),
    ],
)
def test_bad_input_is_one_sentence_before_training(tiny_recipe, capsys, override, message):
    recipe, out = tiny_recipe
    assert main([str(recipe), *override]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("hfkd: error: ") and message in error
    assert error.count("\n") == 0
    assert not (out / "teacher" / "model.safetensors").exists()


def test_teacher_with_other_class_count(tiny_recipe, tmp_path, capsys):
    recipe, out = tiny_recipe
    ten_class = tmp_path / "ten"
    ten_class.mkdir()
    write_image_dataset(ten_class, num_classes=10, splits={"train": 40, "test": 20})
    assert main([str(recipe), "--dataset_name", str(ten_class), "--output_dir", str(tmp_path / "o10")]) == 0
    capsys.readouterr()
    code = main([str(recipe), "--output_dir", str(tmp_path / "o4"), "--teacher", str(tmp_path / "o10" / "teacher")])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert f"the teacher '{tmp_path / 'o10' / 'teacher'}' predicts 10 classes but dataset" in error
    assert error.endswith("has 4") and error.count("\n") == 0


def test_set_up_checks_run_once_per_stage_before_training(tiny_recipe, monkeypatch):
    """Every stage passes the recipe-level checks (output folder, resume target, teacher named) and the model checks
    (teacher present, class counts) exactly once, and both before its first training step."""
    import hfkd.setup_checks as setup_checks
    import hfkd.trainer as trainer_module
    import hfkd.train as train_module

    recipe, out = tiny_recipe
    calls = []
    for module, name in ((train_module, "check_run_target"), (trainer_module, "check_models")):
        original = getattr(module, name)

        def recording(*args, _original=original, _name=name, **kwargs):
            calls.append((_name, (out / "teacher" / "model.safetensors").exists(),
                          (out / "kd" / "model.safetensors").exists()))
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, recording)
    assert setup_checks.check_models is not trainer_module.check_models  # the trainer's reference is the patched one
    assert main([str(recipe)]) == 0
    assert calls == [
        ("check_run_target", False, False), ("check_models", False, False),  # teacher stage, before it trained
        ("check_run_target", True, False), ("check_models", True, False),  # kd stage, before it trained
    ]


def test_a_staged_teacher_is_shown_once_on_the_card(tiny_recipe, capsys):
    recipe, out = tiny_recipe
    assert main([str(recipe)]) == 0
    teacher = json.loads((out / "teacher" / "results.json").read_text())
    card = (out / "kd" / "README.md").read_text()
    results = card.split("## Results", 1)[1].split("\n\n", 2)[1]  # the results table
    rows = [line for line in results.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert len(rows) == 2 and rows[0].startswith("| this model (kd) |")
    assert rows[1].startswith("| teacher: resnet8 (none) |")  # the teacher's own stage, with its full results
    assert f"| {teacher['top1_last']:.2f} |" in rows[1]
    # the header names the teacher's accuracy from its export, once
    assert card.count(f"{teacher['top1_last']:.2f} % top-1, last epoch, from its hfkd export") == 1


def test_help_lists_every_recipe_key_hfkd_first_and_filters(capsys):
    import dataclasses

    from hfkd.config import DataArguments, DistillationConfig, ModelArguments

    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for cls in (ModelArguments, DataArguments, DistillationConfig):
        for f in dataclasses.fields(cls):
            if f.init:
                assert f"  --{f.name} (" in text, f.name
    # hfkd's own keys come before the Trainer's, and a help text with a percent sign renders
    assert text.index("Distillation keys") < text.index("  --method (") < text.index("Trainer keys") < text.index(
        "  --learning_rate (")
    assert "A published top-1 (%)" in text and "default 0.05" in text
    assert main(["--help", "temperature"]) == 0
    filtered = capsys.readouterr().out
    assert "  --kd_temperature (" in filtered and "  --learning_rate (" not in filtered


def test_card_metadata_license_metric_types_and_tags(tiny_recipe, capsys):
    from huggingface_hub import ModelCard

    recipe, out = tiny_recipe
    assert main([str(recipe), "--license", "apache-2.0"]) == 0
    for stage, method in (("teacher", "none"), ("kd", "kd")):
        data = ModelCard.load(out / stage / "README.md").data
        assert data.license == "apache-2.0"
        types = {r.metric_name: r.metric_type for r in data.eval_results}
        assert types == {"Top-1 accuracy (last epoch)": "accuracy", "Top-5 accuracy (last epoch)": "top_5_accuracy"}
        assert "none" not in data.tags and (method in data.tags) == (method != "none")
