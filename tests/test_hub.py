"""The Hub, end to end against the local Hub-compatible server (tests/hub_server.py), with the real clients:
push during and after training, reload and card from the server, teachers from the server, refused pushes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, ResNetConfig, ResNetForImageClassification, pipeline

from hfkd.config import DistillationConfig
from hfkd.convert import convert_reference_checkpoint
from hfkd.errors import RecipeError
from hfkd.models import create_model
from hfkd.trainer import DistillationTrainer
from tests.conftest import learnable_datasets, write_image_dataset
from tests.hub_server import hub_env, run_hub_client

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXED_INPUT = "torch.linspace(-2, 2, 3 * 32 * 32).reshape(1, 3, 32, 32)"


def fixed_input() -> torch.Tensor:
    return torch.linspace(-2, 2, 3 * 32 * 32).reshape(1, 3, 32, 32)


def tiny_recipe(tmp_path, **extra) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    write_image_dataset(data, splits={"train": 64, "test": 32})
    recipe = {
        "dataset_name": str(data), "output_dir": str(tmp_path / "runs"), "num_train_epochs": 2,
        "per_device_train_batch_size": 32, "lr_decay_epochs": [1], "disable_tqdm": True, "save_strategy": "no",
        "stages": {
            "teacher": {"model_name_or_path": "resnet8", "method": "none"},
            "run": {"model_name_or_path": "resnet8", "teacher": "{output_dir}/teacher", "method": "kd", **extra},
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_push_during_and_after_training_round_trips(hub_server, tmp_path):
    recipe = tiny_recipe(tmp_path, push_to_hub=True, hub_model_id=f"{hub_server.user}/resnet8-kd",
                         hub_strategy="checkpoint", save_strategy="epoch")
    code = f"from hfkd.run import main\nemit(main([{str(recipe)!r}]))"
    assert run_hub_client(hub_server, tmp_path / "home", code) == 0
    run = tmp_path / "runs" / "run"
    repo = f"{hub_server.user}/resnet8-kd"

    files = hub_server.repo_files(repo)
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "modeling_hfkd.py",
            "training_curves.png", "recipe.yaml", "results.json"} <= set(files)
    assert any(name.startswith("last-checkpoint/") for name in files)  # hub_strategy checkpoint
    assert not any(name.startswith("checkpoint-") for name in files)
    assert "hub_token" not in files["recipe.yaml"].decode() and hub_server.token not in str(files.keys())
    for name, content in files.items():  # no token in any pushed text file
        assert hub_server.token.encode() not in content, name
    # pushes during training (one per epoch, export + checkpoint) and the final one
    assert len(hub_server.commits(repo)) >= 4
    exported = tmp_path / "pushed.safetensors"
    exported.write_bytes(files["model.safetensors"])
    assert all(key.startswith("model.") for key in load_file(exported))  # the export, not the training state

    results = json.loads((run / "results.json").read_text())
    check = f"""
        import torch
        from huggingface_hub import ModelCard
        from transformers import AutoModelForImageClassification, pipeline
        model = AutoModelForImageClassification.from_pretrained({repo!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            logits = model({FIXED_INPUT}).logits[0].tolist()
        card = ModelCard.load({repo!r})
        metrics = {{r.metric_name: r.metric_value for r in card.data.eval_results}}
        classify = pipeline("image-classification", model={repo!r}, trust_remote_code=True)
        labels = [p["label"] for p in classify(__import__("PIL.Image").Image.new("RGB", (32, 32)))]
        emit({{"logits": logits, "metrics": metrics, "base_model": card.data.base_model, "labels": labels,
              "library": card.data.library_name}})
    """
    pulled = run_hub_client(hub_server, tmp_path / "fresh", check)
    local = AutoModelForImageClassification.from_pretrained(run).eval()
    with torch.no_grad():
        expected = local(fixed_input()).logits[0]
    assert torch.allclose(torch.tensor(pulled["logits"]), expected, atol=1e-5)
    assert pulled["metrics"]["Top-1 accuracy (last epoch)"] == pytest.approx(results["top1_last"], abs=1e-4)
    assert pulled["metrics"]["Top-5 accuracy (last epoch)"] == pytest.approx(results["top5_last"], abs=1e-4)
    assert pulled["library"] == "transformers"
    assert set(pulled["labels"]) <= {f"class_{i}" for i in range(4)}  # labels by name


def test_teachers_load_from_the_hub_in_every_form(hub_server, tmp_path):
    # an hfkd export, a timm model and a transformers model, saved locally and uploaded to the server
    data = learnable_datasets(n_train=32, n_eval=16)
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=4),
        args=DistillationConfig(output_dir=str(tmp_path / "hfkd_teacher"), method="none", num_train_epochs=1,
                                per_device_train_batch_size=16, save_strategy="no", disable_tqdm=True),
        train_dataset=data[0], eval_dataset=data[1],
    )
    trainer.train()
    trainer.save_model()
    import timm

    timm_model = timm.create_model("test_resnet", num_classes=4)
    timm.models.save_for_hf(timm_model, str(tmp_path / "timm_teacher"))
    torch.manual_seed(0)
    ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                                              num_labels=4)).save_pretrained(tmp_path / "hf_teacher")
    expected = {}
    for name, source in (("hfkd", str(tmp_path / "hfkd_teacher")), ("timm", None), ("hf", str(tmp_path / "hf_teacher"))):
        model = timm_model.eval() if source is None else create_model(source).eval()
        with torch.no_grad():
            out = model(fixed_input())
        expected[name] = (out.logits if hasattr(out, "logits") else out)[0]

    user = hub_server.user
    code = f"""
        import torch
        from huggingface_hub import HfApi
        import hfkd
        from hfkd.models import create_model
        api = HfApi()
        for name, folder in (("hfkd", {str(tmp_path / 'hfkd_teacher')!r}), ("timm", {str(tmp_path / 'timm_teacher')!r}),
                             ("hf", {str(tmp_path / 'hf_teacher')!r})):
            api.create_repo("{user}/teacher-" + name, exist_ok=True)
            api.upload_folder(repo_id="{user}/teacher-" + name, folder_path=folder)
        out = {{}}
        for name, source in (("hfkd", "{user}/teacher-hfkd"), ("timm", "hf-hub:{user}/teacher-timm"),
                             ("hf", "{user}/teacher-hf")):
            teacher = create_model(source).eval()
            with torch.no_grad():
                result = teacher({FIXED_INPUT}, return_features=True)
            out[name] = {{"logits": result.logits[0].tolist(), "classes": teacher.num_classes,
                          "kind": type(teacher).__name__}}
        emit(out)
    """
    loaded = run_hub_client(hub_server, tmp_path / "home", code)
    assert {k: v["kind"] for k, v in loaded.items()} == {
        "hfkd": "HfkdForImageClassification", "timm": "TimmFeatureClassifier", "hf": "TransformersFeatureClassifier"}
    for name, values in loaded.items():
        assert values["classes"] == 4
        assert torch.allclose(torch.tensor(values["logits"]), expected[name], atol=1e-5), name


@pytest.fixture()
def finished_run(tmp_path):
    data = learnable_datasets(n_train=32, n_eval=16)
    output = tmp_path / "finished"
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=4),
        args=DistillationConfig(output_dir=str(output), method="none", num_train_epochs=1,
                                per_device_train_batch_size=16, disable_tqdm=True),
        train_dataset=data[0], eval_dataset=data[1],
    )
    trainer.train()
    trainer.save_model()
    trainer.create_model_card()
    return output


def run_cli(server, home, *args) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, **hub_env(server, home)}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run([sys.executable, "-m", "hfkd.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=str(home))


@pytest.mark.parametrize("failure", ["refused", "unreachable"])
def test_failed_push_keeps_files_and_says_how_to_retry(hub_server, finished_run, tmp_path, failure):
    before = tree_bytes(finished_run)
    (tmp_path / "home").mkdir()
    if failure == "refused":
        hub_server.set_refusing(True)
    else:
        hub_server.stop()
    done = run_cli(hub_server, tmp_path / "home", "push", str(finished_run), "--hub_model_id", "hfkd-tester/x")
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("hfkd: error: pushing") and "every local file is unchanged" in error
    assert error.endswith(f"retry with: hfkd push {finished_run} --hub_model_id hfkd-tester/x")
    assert tree_bytes(finished_run) == before


def test_push_command_uploads_a_finished_run(hub_server, finished_run, tmp_path):
    (tmp_path / "home").mkdir()
    done = run_cli(hub_server, tmp_path / "home", "push", str(finished_run), "--hub_model_id", "hfkd-tester/later")
    assert done.returncode == 0, done.stderr
    files = hub_server.repo_files("hfkd-tester/later")
    assert files["model.safetensors"] == (finished_run / "model.safetensors").read_bytes()
    assert 'model="hfkd-tester/later"' in files["README.md"].decode()  # usage points at the repo
    assert not any(name.startswith("checkpoint-") for name in files)


def test_refused_repo_creation_stops_before_training(hub_server, tmp_path):
    recipe = tiny_recipe(tmp_path, push_to_hub=True, hub_model_id=f"{hub_server.user}/never")
    values = yaml.safe_load(recipe.read_text())
    del values["stages"]["teacher"]  # the refused stage alone: no teacher stage to train first
    values["stages"]["run"].pop("teacher")
    values["stages"]["run"]["method"] = "none"
    recipe.write_text(yaml.safe_dump(values, sort_keys=False))
    hub_server.set_refusing(True)
    code = f"from hfkd.run import main\nemit(main([{str(recipe)!r}]))"
    assert run_hub_client(hub_server, tmp_path / "home", code) == 2
    run = tmp_path / "runs" / "run"
    assert not (run / "model.safetensors").exists() and not list(run.glob("checkpoint-*"))


def test_convert_reference_checkpoint(tmp_path):
    folder = tmp_path / "resnet8x4_vanilla"
    folder.mkdir()
    original = create_model("resnet8x4").eval()
    torch.save({"epoch": 240, "model": original.state_dict(), "best_acc": torch.tensor(73.5)}, folder / "best.pth")
    output = convert_reference_checkpoint(folder / "best.pth", tmp_path / "export")
    reloaded = AutoModelForImageClassification.from_pretrained(output).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(fixed_input()).logits, original(fixed_input()).logits, atol=1e-6)
    card = (output / "README.md").read_text()
    assert "73.50" in card and "resnet8x4" in card
    processor = json.loads((output / "preprocessor_config.json").read_text())
    assert processor["image_mean"] == [0.5071, 0.4867, 0.4408]  # the references' CIFAR-100 statistics
    classify = pipeline("image-classification", model=str(output))
    assert len(classify(__import__("PIL.Image").Image.new("RGB", (32, 32)), top_k=3)) == 3
    with pytest.raises(RecipeError, match="is not empty"):
        convert_reference_checkpoint(folder / "best.pth", output)
