"""Every file hfkd opens, damaged, and every path it is given, wrong: one sentence naming the file (or path) and what
is wrong, exit code 2 (1 for a disk that fills up mid-run), no traceback, and every file around it unchanged."""

from __future__ import annotations

import errno
import io
import os
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hfkd.cli import main as hfkd_main
from hfkd.models import create_model
from hfkd.run import main
from tests.conftest import learnable_images
from tests.refusals import files_under, refusal, tiny_recipe

# an unwritable place on any Linux machine, also for root (sysfs refuses new entries)
UNWRITABLE = "/sys/hfkd-test-output"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def random_bytes(path: Path) -> None:
    size = max(path.stat().st_size, 64)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())


def text(path: Path) -> None:
    path.write_text("these are not weights\n")


DAMAGES = {"truncated": truncate, "random bytes": random_bytes, "text": text}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny run with a checkpoint (method none, 1 epoch of 2 steps): its export and checkpoint-2."""
    folder = tmp_path_factory.mktemp("finished")
    recipe = tiny_recipe(folder, save_strategy="epoch")
    assert main([str(recipe)]) == 0
    return recipe, folder / "out"


@pytest.fixture()
def recipe(tmp_path):
    return tiny_recipe(tmp_path)


def reference_pth(folder: Path, name: str = "resnet8_best.pth") -> Path:
    """A RepDistiller-style teacher checkpoint in a folder whose name gives the architecture."""
    path = folder / "resnet8_vanilla" / name
    path.parent.mkdir(parents=True)
    torch.save({"model": create_model("resnet8", num_classes=4).state_dict(), "epoch": 240}, path)
    return path


# ---- teacher .pth files (kind C, and kind I: random bytes in a *_best.pth get no "use the *_best.pth" advice) -------

@pytest.mark.parametrize("damage, expected", [
    ("truncated", "is truncated or corrupt: its zip directory is missing"),
    ("random bytes", "is not a PyTorch file"),
    ("text", "is not a PyTorch file"),
])
def test_a_damaged_teacher_pth_is_named(recipe, tmp_path, capsys, damage, expected):
    pth = reference_pth(tmp_path)
    DAMAGES[damage](pth)
    before = files_under(pth.parent)
    code = main([str(recipe), "--method", "kd", "--teacher", str(pth)])
    error = refusal(capsys, code)
    assert f"reference checkpoint {str(pth)!r} {expected}" in error
    assert "use the *_best.pth" not in error
    assert files_under(pth.parent) == before and not (tmp_path / "out").exists()


def test_a_missing_teacher_pth_is_named(recipe, tmp_path, capsys):
    missing = tmp_path / "resnet8_vanilla" / "resnet8_best.pth"
    error = refusal(capsys, main([str(recipe), "--method", "kd", "--teacher", str(missing)]))
    assert error == f"hfkd: error: reference checkpoint {str(missing)!r} does not exist"


# ---- an export used as a teacher: every file its loader opens, truncated or replaced -------------------------------

EXPORT_FILES = ["config.json", "model.safetensors", "preprocessor_config.json", "results.json", "history.json"]


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
@pytest.mark.parametrize("name", EXPORT_FILES)
def test_every_damaged_file_of_an_export_is_named(finished_run, tmp_path, capsys, name, damage):
    recipe, out = finished_run
    export = tmp_path / "teacher"
    shutil.copytree(out, export, ignore=shutil.ignore_patterns("checkpoint-*"))
    DAMAGES[damage](export / name)
    before = files_under(export)
    code = main([str(recipe), "--method", "kd", "--teacher", str(export), "--output_dir", str(tmp_path / "kd")])
    error = refusal(capsys, code)
    kind = "the model weights" if name.endswith(".safetensors") else "the model file"
    assert f"{kind} {str(export / name)!r} is " in error
    assert files_under(export) == before and not (tmp_path / "kd").exists()


def test_the_export_sweep_covers_every_file_the_loader_reads(finished_run):
    _, out = finished_run
    read = sorted(p.name for p in out.iterdir() if p.suffix in (".json", ".safetensors", ".bin"))
    assert read == sorted(EXPORT_FILES)


# ---- the checkpoint a run resumes: every file, truncated or replaced, and a whole file from another run -------------

CHECKPOINT_FILES = ["model.safetensors", "optimizer.pt", "preprocessor_config.json", "rng_state.pth", "scheduler.pt",
                    "training_args.bin"]


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_every_damaged_file_of_a_resumed_checkpoint_is_named(finished_run, tmp_path, capsys, name, damage):
    recipe, out = finished_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    DAMAGES[damage](copy / "checkpoint-2" / name)
    before = files_under(copy)
    code = main([str(recipe), "--output_dir", str(copy), "--resume_from_checkpoint", "true"])
    error = refusal(capsys, code)
    assert f"checkpoint file {str(copy / 'checkpoint-2' / name)!r} is " in error
    assert files_under(copy) == before


def test_the_checkpoint_sweep_covers_every_file_but_the_state(finished_run):
    _, out = finished_run
    names = sorted(p.name for p in (out / "checkpoint-2").iterdir())
    assert names == sorted([*CHECKPOINT_FILES, "trainer_state.json"])  # a bad state marks an incomplete checkpoint


def test_a_truncated_trainer_state_gives_advice_that_works(finished_run, tmp_path, capsys):
    recipe, out = finished_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    truncate(copy / "checkpoint-2" / "trainer_state.json")
    before = files_under(copy)
    error = refusal(capsys, main([str(recipe), "--output_dir", str(copy), "--resume_from_checkpoint", "true"]))
    assert "holds no complete checkpoint-* folder" in error and "--overwrite_output_dir true" in error
    assert files_under(copy) == before
    assert main([str(recipe), "--output_dir", str(copy), "--overwrite_output_dir", "true"]) == 0  # the advice works


def test_an_optimizer_state_from_another_run_is_named_and_nothing_changes(finished_run, tmp_path, capsys):
    recipe, out = finished_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    other = torch.optim.SGD(create_model("resnet14", num_classes=4).parameters(), lr=0.1, momentum=0.9)
    torch.save(other.state_dict(), copy / "checkpoint-2" / "optimizer.pt")  # whole, but for another model
    before = files_under(copy)
    error = refusal(capsys, main([str(recipe), "--output_dir", str(copy), "--resume_from_checkpoint", "true"]))
    assert f"checkpoint {str(copy / 'checkpoint-2')!r} does not fit this run: its optimizer or scheduler state" in error
    assert files_under(copy) == before  # recipe.yaml included: it is written once the checkpoint has loaded


# ---- dataset images: a corrupt JPEG names its split and row, a decompression bomb is refused before decoding -------

def dataset_with(folder: Path, split: str, row: int, image_bytes: bytes, n: int = 64) -> Path:
    """A parquet dataset of 32-px PNGs (4 classes) whose ``split`` row ``row`` is ``image_bytes``."""
    folder.mkdir(parents=True, exist_ok=True)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=list("abcd"))})
    for seed, (name, count) in enumerate({"train": n, "test": 32}.items()):
        images, labels = learnable_images(count, 4, seed=seed)
        cells = []
        for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            cells.append({"bytes": image_bytes if (name, i) == (split, row) else buffer.getvalue(), "path": None})
        data = datasets.Dataset.from_dict({"img": cells, "label": labels.tolist()}, features=features)
        data.to_parquet(str(folder / f"{name}-00000-of-00001.parquet"))
    return folder


def truncated_jpeg(size: int = 32) -> bytes:
    """A noise JPEG cut to two thirds: its header reads, its pixel data ends early."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()[: 2 * len(buffer.getvalue()) // 3]


def bomb_png() -> bytes:
    """A 1-bit PNG of 10000 x 10000 pixels (over PIL's 89.5-million-pixel limit) in about 12 kB."""
    buffer = io.BytesIO()
    Image.new("1", (10000, 10000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("preset", ["cifar", "imagenet"])
@pytest.mark.parametrize("split, row", [("train", 5), ("test", 3)])
def test_a_corrupt_jpeg_names_its_split_and_row(recipe, tmp_path, capsys, preset, split, row):
    data = dataset_with(tmp_path / "bad", split, row, truncated_jpeg())
    before = files_under(data)
    code = main([str(recipe), "--dataset_name", str(data), "--transform_preset", preset,
                 "--per_device_eval_batch_size", "32"])
    error = refusal(capsys, code)
    assert f"the image in row {row} of the {split} split is truncated or corrupt" in error
    assert files_under(data) == before
    if preset == "cifar":  # decoded before training: nothing written
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("preset", ["cifar", "imagenet"])
def test_a_decompression_bomb_is_refused_before_it_is_decoded(recipe, tmp_path, capsys, preset):
    data = dataset_with(tmp_path / "bomb", "train", 7, bomb_png())
    code = main([str(recipe), "--dataset_name", str(data), "--transform_preset", preset])
    error = refusal(capsys, code)
    assert "the image in row 7 of the train split declares more pixels than PIL's decompression-bomb limit" in error


def test_a_bad_image_in_a_dataloader_worker_is_the_same_sentence(recipe, tmp_path, capsys):
    data = dataset_with(tmp_path / "bad", "train", 5, b"not an image")
    code = main([str(recipe), "--dataset_name", str(data), "--transform_preset", "imagenet",
                 "--dataloader_num_workers", "1", "--per_device_train_batch_size", "64"])
    error = refusal(capsys, code)
    assert error.startswith("hfkd: error: the image in row 5 of the train split is not an image PIL can read")


# ---- hfkd convert: a text file, a missing class-names file, an output path that is a file or unwritable ----------

def test_convert_a_text_file(tmp_path, capsys):
    pth = tmp_path / "resnet8_vanilla" / "notes.pth"
    pth.parent.mkdir()
    pth.write_text("hello\n")
    error = refusal(capsys, hfkd_main(["convert", str(pth), str(tmp_path / "export")]))
    assert error == (f"hfkd: error: reference checkpoint {str(pth)!r} is not a PyTorch file: it is neither the zip "
                     f"archive torch.save writes nor a legacy pickle")
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("case", ["class names missing", "class names a folder", "class names not text",
                                  "output is a file", "output unwritable"])
def test_convert_paths(tmp_path, capsys, case):
    pth = reference_pth(tmp_path)
    output = tmp_path / "export"
    argv = ["convert", str(pth), str(output)]
    names = tmp_path / "names.txt"
    if case == "class names missing":
        expected = f"class-names file {str(names)!r} does not exist"
    elif case == "class names a folder":
        names.mkdir()
        expected = f"class-names file {str(names)!r} is a folder, not a file"
    elif case == "class names not text":
        names.write_bytes(b"\xff\xfe\x00\x81" * 8)
        expected = f"class-names file {str(names)!r} is not a UTF-8 text file"
    elif case == "output is a file":
        output.write_text("mine\n")
        expected = f"output folder {str(output)!r} is a file; choose a new folder"
    else:
        output = Path(UNWRITABLE) / "export"
        argv = ["convert", str(pth), str(output)]
        expected = f"output folder {str(output)!r} is not writable"
    if case.startswith("class names"):
        argv += ["--class_names", str(names)]
    before = files_under(tmp_path)
    error = refusal(capsys, hfkd_main(argv))
    assert expected in error
    assert files_under(tmp_path) == before


# ---- paths a recipe names: train_dir, output_dir -------------------------------------------------------------------

@pytest.mark.parametrize("case", ["missing", "a file", "one class", "no classes"])
def test_train_dir(recipe, tmp_path, capsys, case):
    folder = tmp_path / "images"
    if case == "a file":
        folder.write_text("x")
    elif case != "missing":
        folder.mkdir()
        if case == "one class":
            (folder / "cat").mkdir()
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "cat" / "0.png")
    expected = {
        "missing": f"train_dir {str(folder)!r} does not exist",
        "a file": f"train_dir {str(folder)!r} is a file; it must be a folder with one subfolder of images per class",
        "one class": f"train_dir {str(folder)!r} has only the class folder 'cat'; an image folder needs one "
                     f"subfolder of images per class, at least two",
        "no classes": f"train_dir {str(folder)!r} has no class folders",
    }[case]
    error = refusal(capsys, main([str(recipe), "--train_dir", str(folder)]))
    assert expected in error and "label_column_name" not in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["unwritable", "under a file"])
def test_an_output_dir_that_cannot_be_written(recipe, tmp_path, capsys, case):
    output = Path(UNWRITABLE) / "run" if case == "unwritable" else tmp_path / "a-file" / "run"
    if case == "under a file":
        (tmp_path / "a-file").write_text("mine\n")
    before = files_under(tmp_path)
    error = refusal(capsys, main([str(recipe), "--output_dir", str(output)]))
    expected = "is not writable" if case == "unwritable" else f"{str(tmp_path / 'a-file')!r} is a file, not a folder"
    assert f"output_dir {str(output)!r}" in error and expected in error
    assert files_under(tmp_path) == before


def test_a_disk_that_fills_up_while_saving_stops_in_one_sentence_and_keeps_the_last_checkpoint(
        recipe, tmp_path, capsys, monkeypatch):
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if str(f).endswith(os.path.join("checkpoint-2", "optimizer.pt")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "out"
    code = main([str(recipe), "--save_strategy", "steps", "--save_steps", "1"])
    error = refusal(capsys, code, expected_code=1)
    assert error == (f"hfkd: error: training stopped: No space left on device: "
                     f"{str(out / 'checkpoint-2' / 'optimizer.pt')!r}; the last complete checkpoint, "
                     f"{out / 'checkpoint-1'}, is kept; resume from it with --resume_from_checkpoint true once the "
                     f"disk has room")
    monkeypatch.setattr(torch, "save", real_save)
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()  # the last checkpoint is whole
    assert not (out / "checkpoint-2" / "trainer_state.json").exists()
    assert main([str(recipe), "--save_strategy", "steps", "--save_steps", "1", "--resume_from_checkpoint", "true"]) == 0
    assert (out / "model.safetensors").is_file()


# ---- hfkd push and hfkd sweep read a finished run's files ---------------------------------------------------------

@pytest.mark.parametrize("name, damage, expected", [
    ("recipe.yaml", "yaml", "the run's recipe {path!r} is not valid YAML"),
    ("config.json", "truncated", "the model file {path!r} is not valid JSON"),
    ("model.safetensors", "truncated", "the model weights {path!r} is truncated, corrupt or not a safetensors file"),
    ("results.json", "random bytes", "the model file {path!r} is not a UTF-8 text file"),
])
def test_push_names_a_damaged_file_and_uploads_nothing(finished_run, tmp_path, capsys, name, damage, expected):
    _, out = finished_run
    run = tmp_path / "run"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("checkpoint-*"))
    if damage == "yaml":
        (run / name).write_text("output_dir: [unclosed\n")
    else:
        DAMAGES[damage](run / name)
    before = files_under(run)
    error = refusal(capsys, hfkd_main(["push", str(run)]))
    assert expected.format(path=str(run / name)) in error
    assert files_under(run) == before


def test_sweep_report_names_a_damaged_results_file(tmp_path, capsys):
    from hfkd.sweep import main as sweep_main
    from hfkd.sweep.runner import RESULTS, run_folder

    recipe = tiny_recipe(tmp_path)
    results = run_folder(tmp_path / "sweep", recipe, 0) / RESULTS
    results.parent.mkdir(parents=True)
    results.write_text('[{"stage": "run", "top1_last": ')
    before = files_under(tmp_path / "sweep")
    error = refusal(capsys, sweep_main([str(recipe), "--seeds", "0", "--output_dir", str(tmp_path / "sweep"),
                                        "--report_only"]))
    assert f"sweep results file {str(results)!r} is not valid JSON" in error
    assert files_under(tmp_path / "sweep") == before
