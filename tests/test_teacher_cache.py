"""Teacher caches: a KD run from a full fp32 cache is the online run, step for step; a resumed build writes what an
uninterrupted one writes; top-k caches rebuild FKD's distribution; a cache that does not fit a run is refused in one
sentence before training."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
import yaml

from hfkd.cli import main as hfkd_main
from hfkd.models import create_model
from hfkd.recipe import load_recipe
from hfkd.teacher_cache import build as cache_build
from hfkd.teacher_cache import rebuild_logits, topk_logits
from hfkd.teacher_cache.parts import part_file, read_epoch
from hfkd.teacher_cache.record import read_record
from tests.conftest import write_image_dataset

EPOCHS = 2


@pytest.fixture(scope="module")
def setting(tmp_path_factory) -> Path:
    """64 training / 32 evaluation images of 4 classes, a saved resnet8 teacher, and a 2-epoch KD recipe that logs
    every step (4 steps of 16 per epoch)."""
    root = tmp_path_factory.mktemp("teacher_cache")
    (root / "data").mkdir()
    write_image_dataset(root / "data", splits={"train": 64, "test": 32})
    torch.manual_seed(0)
    (root / "resnet8_vanilla").mkdir()
    teacher = root / "resnet8_vanilla" / "ckpt_epoch_240.pth"
    torch.save({"model": create_model("resnet8", num_classes=4).state_dict()}, teacher)
    recipe = {
        "dataset_name": str(root / "data"), "model_name_or_path": "resnet8", "teacher": str(teacher), "method": "kd",
        "num_train_epochs": EPOCHS, "lr_decay_epochs": [1], "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 32, "save_strategy": "no", "disable_tqdm": True, "logging_strategy": "steps",
        "logging_steps": 1, "seed": 0,
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return root


def cache_teacher(setting: Path, folder: Path, *overrides: str) -> int:
    return hfkd_main(["cache-teacher", str(setting / "recipe.yaml"), "--teacher_cache", str(folder), *overrides])


def train(setting: Path, output: str, *overrides: str) -> int:
    return hfkd_main(["train", str(setting / "recipe.yaml"), "--output_dir", str(setting / output), *overrides])


@pytest.fixture(scope="module")
def full_cache(setting) -> Path:
    folder = setting / "cache-fp32"
    assert cache_teacher(setting, folder, "--teacher_cache_dtype", "float32") == 0
    return folder


@pytest.fixture(scope="module")
def histories(setting, full_cache) -> dict[str, list[dict]]:
    assert train(setting, "online") == 0
    assert train(setting, "cached", "--teacher_cache", str(full_cache)) == 0
    return {name: json.loads((setting / name / "history.json").read_text()) for name in ("online", "cached")}


def test_a_run_from_a_full_fp32_cache_is_the_online_run(histories):
    online, cached = histories["online"], histories["cached"]
    steps = [h for h in online if "loss_kd" in h]
    assert len(steps) == 4 * EPOCHS and len(cached) == len(online)
    for a, b in zip(online, cached):
        for key in [k for k in a if k.startswith("loss_")]:
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=0), (key, a.get("step"))
    evals = [(a["eval_top1"], b["eval_top1"]) for a, b in zip(online, cached) if "eval_top1" in a]
    assert len(evals) == EPOCHS and all(a == b for a, b in evals)
    assert steps[0]["loss_kd"] > 0  # the KD term is really computed from the teacher's logits


def test_the_cache_is_a_datasets_dataset_with_its_card(setting, full_cache):
    loaded = datasets.load_dataset(str(full_cache), split="train")
    assert len(loaded) == EPOCHS * 64
    assert loaded.features["logits"].length == 4 and loaded.features["logits"].feature.dtype == "float32"
    pairs = sorted(zip(loaded["epoch"], loaded["example_index"]))
    assert pairs == [(e, i) for e in range(EPOCHS) for i in range(64)]
    record = read_record(full_cache)
    assert (record.teacher, record.seed, record.epochs, record.topk, record.num_examples) == (
        str(setting / "resnet8_vanilla" / "ckpt_epoch_240.pth"), 0, EPOCHS, None, 64)
    assert record.teacher_fingerprint.startswith("sha256:") and record.data_fingerprint.startswith("sha256:")
    assert record.augmentation["steps"][0] == {"random_crop_flip": {"padding": 4, "seed": 0}}
    # the views differ between epochs, so the cached logits do too
    assert not torch.equal(read_epoch(full_cache, record, 0).logits, read_epoch(full_cache, record, 1).logits)


def test_a_resumed_build_writes_what_an_uninterrupted_build_writes(setting, monkeypatch):
    (run,) = load_recipe(setting / "recipe.yaml", ["--teacher_cache", str(setting / "whole")]).runs
    cache_build.build_teacher_cache(run, rows_per_file=24)  # 3 files per epoch: 24 + 24 + 16 examples

    (run,) = load_recipe(setting / "recipe.yaml", ["--teacher_cache", str(setting / "resumed")]).runs
    original, written = cache_build.write_part, []

    def killed_after_two(path, *args):
        if len(written) == 2:
            path.with_name(f".{path.name}.999.tmp").write_bytes(b"half a file")  # the kill came while writing
            raise KeyboardInterrupt
        original(path, *args)
        written.append(path)

    monkeypatch.setattr(cache_build, "write_part", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        cache_build.build_teacher_cache(run, rows_per_file=24)
    kept = {p: p.stat().st_mtime_ns for p in written}
    monkeypatch.setattr(cache_build, "write_part", original)
    cache_build.build_teacher_cache(run, rows_per_file=24)

    whole = sorted((setting / "whole" / "data").iterdir())
    resumed = sorted((setting / "resumed" / "data").iterdir())
    assert [p.name for p in whole] == [p.name for p in resumed] and len(whole) == 3 * EPOCHS
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(whole, resumed))
    assert {p: p.stat().st_mtime_ns for p in written} == kept  # finished files were kept, not recomputed


def test_topk_rebuild_is_fkds_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]])
    values, indices, lse = topk_logits(logits, 2)
    assert indices.tolist() == [[0, 1]]
    p = torch.softmax(logits, dim=1)[0]
    rebuilt = torch.softmax(rebuild_logits(values, indices, lse, 5), dim=1)[0]
    rest = (1 - p[0] - p[1]) / 3  # the mass outside the top 2, spread evenly over the other 3 classes (FKD)
    expected = torch.stack([p[0], p[1], rest, rest, rest])
    torch.testing.assert_close(rebuilt, expected, rtol=1e-6, atol=0)
    # k = C keeps the logits themselves
    values, indices, lse = topk_logits(logits, 5)
    assert torch.equal(rebuild_logits(values, indices, lse, 5), logits)


def test_a_top_k_cache_trains_from_the_rebuilt_logits(setting, full_cache):
    folder = setting / "cache-top2"
    assert cache_teacher(setting, folder, "--teacher_cache_topk", "2") == 0
    record, full = read_record(folder), read_record(full_cache)
    assert (record.topk, record.dtype, record.stored_width) == (2, "float16", 2)
    index = torch.arange(64)
    for epoch in range(EPOCHS):
        exact = read_epoch(full_cache, full, epoch).rows(index)
        expected = rebuild_logits(*topk_logits(exact, 2), 4)
        torch.testing.assert_close(read_epoch(folder, record, epoch).rows(index), expected, rtol=2e-3, atol=2e-3)
    assert train(setting, "cached-top2", "--teacher_cache", str(folder)) == 0
    history = json.loads((setting / "cached-top2" / "history.json").read_text())
    assert all(h["loss_kd"] >= 0 for h in history if "loss_kd" in h)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--method", "simkd"], "method 'simkd' reads the teacher's features, which a teacher cache does not hold"),
        (["--seed", "1"], "was built for seed 0, but this run has seed 1"),
        (["--num_train_epochs", "3"], "this run trains 3 epochs but teacher_cache"),
        (["--max_train_samples", "32"], "was built on other training data"),
        (["--image_mean", "0.5", "0.5", "0.5", "--image_std", "0.2", "0.2", "0.2"], "holds views augmented as"),
        (["--transform_preset", "imagenet"], "a teacher cache needs the 'cifar' transform preset"),
        (["--teacher", "resnet8"], "holds the outputs of teacher"),
        (["--teacher_cache_topk", "0"], "teacher_cache_topk must be an integer >= 1 (or null for every logit), got 0"),
        (["--teacher_cache_dtype", "bfloat16"], "teacher_cache_dtype 'bfloat16' is not one of 'float16', 'float32'"),
    ],
)
def test_a_cache_that_does_not_fit_the_run_is_refused_in_one_sentence(setting, full_cache, capsys, overrides,
                                                                      message):
    output = setting / "refused"
    assert train(setting, "refused", "--teacher_cache", str(full_cache), *overrides) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("hfkd: error: ") and message in error and error.count("\n") == 0
    assert not output.exists()


def test_a_folder_that_is_not_a_cache_is_refused_and_left_alone(setting, full_cache, capsys):
    foreign = setting / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert train(setting, "refused", "--teacher_cache", str(foreign)) == 2
    assert "holds no teacher cache" in capsys.readouterr().err
    assert cache_teacher(setting, foreign) == 2
    assert "exists and is not a teacher cache" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and (foreign / "notes.txt").read_text() == "mine"
    before = {p: p.read_bytes() for p in full_cache.rglob("*") if p.is_file()}
    assert cache_teacher(setting, full_cache, "--seed", "1", "--teacher_cache_dtype", "float32") == 2
    error = capsys.readouterr().err.strip()
    assert "holds another cache (its augmentation, seed differ from this build's)" in error and error.count("\n") == 0
    assert {p: p.read_bytes() for p in full_cache.rglob("*") if p.is_file()} == before


def test_an_unfinished_cache_is_refused(setting, full_cache, capsys, tmp_path):
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(full_cache, partial)
    part_file(partial, 1, 0).unlink()
    assert train(setting, "refused", "--teacher_cache", str(partial)) == 2
    error = capsys.readouterr().err.strip()
    assert "is unfinished (it lacks epoch-00001-part-00000.parquet); finish it" in error and error.count("\n") == 0


def test_a_cache_pushed_to_the_hub_trains_by_its_repo_id(setting, full_cache, histories, hub_server, tmp_path):
    from tests.hub_server import run_hub_client

    repo = f"{hub_server.user}/resnet8-teacher-cache"
    output = tmp_path / "from-hub"
    code = f"""
        import datasets
        from huggingface_hub import HfApi
        from hfkd.cli import main
        HfApi().create_repo({repo!r}, repo_type="dataset")
        HfApi().upload_folder(repo_id={repo!r}, folder_path={str(full_cache)!r}, repo_type="dataset")
        rows = len(datasets.load_dataset({repo!r}, split="train"))
        code = main(["train", {str(setting / "recipe.yaml")!r}, "--output_dir", {str(output)!r},
                     "--teacher_cache", {repo!r}])
        emit([rows, code])
    """
    assert run_hub_client(hub_server, tmp_path / "home", code) == [EPOCHS * 64, 0]
    from_hub = json.loads((output / "history.json").read_text())
    for a, b in zip(histories["cached"], from_hub):
        assert {k: v for k, v in a.items() if k.startswith("loss_")} == {
            k: v for k, v in b.items() if k.startswith("loss_")}
