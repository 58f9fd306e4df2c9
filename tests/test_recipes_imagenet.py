"""The shipped ImageNet recipes run end to end (streaming, their augmentation, method and schedule keys) on tiny
imagenet-1k-schema parquet shards, with tiny stand-ins for their Hub models; and each states its reference figure."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch

from hfkd.models import create_model
from hfkd.recipe import load_recipe
from hfkd.train import main
from tests.test_method_deit import deit_config
from tests.test_streaming import write_imagenet_shards

IMAGENET = Path(__file__).resolve().parents[1] / "recipes" / "imagenet"
RECIPES = {
    "resnet50-resnet18/simkd.yaml": "resnet8",
    "resnet34-resnet18/spherical.yaml": "resnet8",
    "bit_r152x2-bit_r50x1/function_matching.yaml": "resnet8",
    "regnety160-deit_tiny/deit.yaml": "DEIT",
}


@pytest.fixture(autouse=True)
def _short_arrow_shutdown(monkeypatch):
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0.05)  # see tests/test_streaming.py


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory):
    return write_imagenet_shards(tmp_path_factory.mktemp("imagenet_shards"))


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> str:
    """A 3-class resnet8 as a reference checkpoint (the architecture read from its folder name)."""
    folder = tmp_path_factory.mktemp("teachers") / "resnet8_vanilla"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save({"model": create_model("resnet8", num_classes=3).state_dict()}, folder / "resnet8_best.pth")
    return str(folder / "resnet8_best.pth")


@pytest.fixture(scope="module")
def tiny_deit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_deit")
    deit_config(num_labels=3).save_pretrained(folder)
    return str(folder)


def test_every_imagenet_recipe_is_tested_and_names_hub_teachers():
    shipped = {p.relative_to(IMAGENET).as_posix() for p in IMAGENET.rglob("*.yaml")}
    assert shipped == set(RECIPES)
    for name in RECIPES:
        run = load_recipe(IMAGENET / name).runs[0]
        assert run.model_args.teacher.startswith("timm/") and run.data_args.streaming
        assert run.data_args.dataset_name == "ILSVRC/imagenet-1k"
        if run.training_args.reference_top1 is not None:
            assert run.training_args.reference_source


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_runs_end_to_end_on_tiny_shards(name, shards_dir, tiny_teacher, tiny_deit, tmp_path, capsys):
    student = tiny_deit if RECIPES[name] == "DEIT" else RECIPES[name]
    out = tmp_path / "run"
    code = main([str(IMAGENET / name), "--dataset_name", shards_dir, "--output_dir", str(out),
                 "--model_name_or_path", student, "--teacher", tiny_teacher,
                 "--num_train_epochs", "1", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "6",
                 "--dataloader_num_workers", "0", "--image_size", "32", "--speed_settings", "off",
                 "--shuffle_buffer_size", "16", "--report_to", "none"])
    assert code == 0, capsys.readouterr().err
    (results,) = json.loads((out / "results.json").read_text())
    assert results["method"] == load_recipe(IMAGENET / name).runs[0].training_args.method
    assert 0 <= results["top1_last"] <= 100
    history = json.loads((out / "history.json").read_text())
    assert sum(1 for row in history if "loss" in row) == 1 and all(
        row["loss"] == row["loss"] for row in history if "loss" in row)  # one epoch logged, finite
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
