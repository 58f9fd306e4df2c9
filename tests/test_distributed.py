"""Data parallelism: two CPU processes under `accelerate launch` (gloo) train what one process with the doubled
batch trains, for KD, CRD and KD from a teacher cache: same evaluation metrics (every example counted once) and the
same CRD memory; two processes write the teacher cache one process writes.

`accelerate launch --cpu --num_processes 2` starts a single process in accelerate 1.15 (its CPU launcher needs an
MPI hostfile for more); the torchrun-based launcher (`--multi_gpu`) on a machine without a GPU starts two processes,
which hfkd's launch settings (use_cpu on a GPU-less machine) join into a gloo process group.

The models are BatchNorm-free (tiny ViTs): with BatchNorm, N processes normalise over their own B examples and one
process over N*B, so the two runs differ by construction. Augmentation and CRD's negatives are keyed on
(seed, epoch, index), so they are the same whichever process draws them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, ViTConfig

from hfkd.cli import main as cli_main
from tests.conftest import learnable_images, write_image_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH = 8  # per process in the 2-process run; the single process gets 2 * BATCH


def vit_config(folder: Path, hidden: int) -> str:
    ViTConfig(image_size=32, patch_size=8, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=2 * hidden, num_labels=4).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    data = root / "data"
    data.mkdir()
    # 64 training images = 4 global batches of 16; 37 evaluation images: the last batch is partial on both ranks
    write_image_dataset(data, splits={"train": 64, "test": 37})
    values = {
        "dataset_name": str(data), "num_train_epochs": 2, "lr_decay_epochs": [1], "learning_rate": 0.05,
        "per_device_eval_batch_size": 8, "save_strategy": "epoch", "disable_tqdm": True, "seed": 0,
        "teacher": vit_config(root / "teacher", 32), "model_name_or_path": vit_config(root / "student", 16),
        "crd_nce_k": 20, "crd_feat_dim": 8,
        "stages": {"kd": {"method": "kd"}, "crd": {"method": "crd"},
                   "kd_cached": {"method": "kd", "teacher_cache": str(root / "cache")}},
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    # the kd_cached stage trains from the teacher's logits cached by one process, in fp32
    assert cli_main(["cache-teacher", str(path), "--teacher_cache_dtype", "float32"]) == 0
    return path


def launch(recipe: Path, output_dir: Path, processes: int) -> None:
    accelerate_launch([str(REPO_ROOT / "hfkd" / "run.py"), str(recipe), "--output_dir", str(output_dir),
                       "--per_device_train_batch_size", str(BATCH * (2 // processes))], processes, output_dir.parent)


def accelerate_launch(arguments: list[str], processes: int, cwd: Path) -> None:
    launcher = ["--multi_gpu"] if processes > 1 else ["--cpu"]
    command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=str(cwd))
    assert done.returncode == 0, done.stderr[-6000:]


@pytest.fixture(scope="module")
def runs(recipe):
    outputs = {}
    for processes in (1, 2):
        output = recipe.parent / f"out_{processes}"
        launch(recipe, output, processes)
        outputs[processes] = output
    return outputs


def history(stage_dir: Path) -> list[dict]:
    (checkpoint,) = sorted(stage_dir.glob("checkpoint-*"))
    return json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]


@pytest.mark.parametrize("stage", ["kd", "crd", "kd_cached"])
def test_two_processes_match_one_process_with_the_doubled_batch(runs, stage):
    one, two = history(runs[1] / stage), history(runs[2] / stage)
    evals_one = [h for h in one if "eval_top1" in h]
    evals_two = [h for h in two if "eval_top1" in h]
    assert len(evals_one) == len(evals_two) == 2
    for a, b in zip(evals_one, evals_two):
        assert a["eval_top1"] == b["eval_top1"] and a["eval_top5"] == b["eval_top5"]
        assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-4)
    train_one = [h for h in one if "loss" in h]
    train_two = [h for h in two if "loss" in h]
    for a, b in zip(train_one, train_two):
        for key in [k for k in a if k.startswith("loss")]:
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
    # the same number of optimizer steps: the global batch is 16 in both runs
    assert one[-1]["step"] == two[-1]["step"] == 8


def test_evaluation_counts_every_example_once(runs):
    # the 37 evaluation images (the test split write_image_dataset wrote, seed 1), through the exported student
    images, labels = learnable_images(37, 4, seed=1)
    for processes in (1, 2):
        export = runs[processes] / "kd"
        processor = json.loads((export / "preprocessor_config.json").read_text())
        mean = torch.tensor(processor["image_mean"]).view(1, 3, 1, 1)
        std = torch.tensor(processor["image_std"]).view(1, 3, 1, 1)
        model = AutoModelForImageClassification.from_pretrained(export).eval()
        with torch.no_grad():
            logits = model(pixel_values=(images.float() / 255 - mean) / std).logits
        correct = int((logits.argmax(-1) == labels).sum())
        results = json.loads((export / "results.json").read_text())
        # counted over exactly 37 examples: the 3 duplicates padding the 2-process shards (40 = 2 x 20) are dropped
        assert results["top1_last"] == pytest.approx(100 * correct / 37)
        last = [h for h in history(export) if "eval_loss" in h][-1]
        assert last["eval_loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-4)


def test_crd_memory_is_the_same(runs):
    memories = []
    for processes in (1, 2):
        (checkpoint,) = sorted((runs[processes] / "crd").glob("checkpoint-*"))
        state = load_file(checkpoint / "model.safetensors")
        memories.append({k: v for k, v in state.items() if "contrast" in k})
    assert set(memories[0]) == {"method.contrast.memory_v1", "method.contrast.memory_v2", "method.contrast.z_v1",
                                "method.contrast.z_v2"}
    for key in memories[0]:
        assert torch.allclose(memories[0][key], memories[1][key], atol=1e-5), key
    # every row was written (64 examples, 2 epochs), so all rows are unit vectors
    assert torch.allclose(memories[1]["method.contrast.memory_v1"].norm(dim=1), torch.ones(64), atol=1e-5)


def test_a_cached_run_trains_what_the_online_run_trains(runs):
    online, cached = history(runs[1] / "kd"), history(runs[1] / "kd_cached")
    assert len(online) == len(cached)
    for a, b in zip(online, cached):
        for key in [k for k in a if k.startswith(("loss_", "eval_top"))]:
            assert b[key] == pytest.approx(a[key], rel=1e-5), key


def test_two_processes_write_the_cache_one_process_writes(recipe):
    two = recipe.parent / "cache_two_processes"
    accelerate_launch(["-m", "hfkd", "cache-teacher", str(recipe), "--teacher_cache", str(two),
                       "--teacher_cache_dtype", "float32"], 2, recipe.parent)
    one = sorted((recipe.parent / "cache" / "data").iterdir())
    assert [p.name for p in sorted((two / "data").iterdir())] == [p.name for p in one] and len(one) == 2
    for file in one:
        a, b = pq.read_table(file), pq.read_table(two / "data" / file.name)
        assert a.column("example_index").equals(b.column("example_index")) and a.column("epoch").equals(b.column("epoch"))
        torch.testing.assert_close(torch.tensor(a.column("logits").to_pylist()),
                                   torch.tensor(b.column("logits").to_pylist()), rtol=1e-6, atol=1e-6)
