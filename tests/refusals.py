"""Helpers for tests of refused inputs: run a command in-process, expect one sentence and an exit code, and compare
every file around it byte for byte."""

from __future__ import annotations

from pathlib import Path

import datasets
import yaml

from hfkd.train import main
from tests.conftest import write_image_dataset


def files_under(*folders: Path) -> dict[str, bytes]:
    """Every file below ``folders`` (path -> bytes); a missing folder contributes nothing."""
    found = {}
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            found[str(folder)] = folder.read_bytes()
        elif folder.is_dir():
            found.update({str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()})
    return found


def refusal(capsys, code: int, expected_code: int = 2) -> str:
    """The one line a refused command printed on stderr (asserting exit code, prefix and a single line)."""
    captured = capsys.readouterr()
    assert code == expected_code, captured.err[-3000:]
    error = captured.err.strip()
    assert error.startswith("hfkd: error: "), error[-3000:]
    assert error.count("\n") == 0 and "Traceback" not in error, error
    return error


def tiny_recipe(folder: Path, **keys) -> Path:
    """A one-run recipe (resnet8, 64 + 32 images of 4 classes, 1 epoch of 2 steps) in ``folder``; ``keys`` override."""
    data = folder / "data"
    datasets.disable_progress_bars()  # as hfkd's commands do: stderr holds only what the command under test says
    if not data.is_dir():
        data.mkdir(parents=True)
        write_image_dataset(data, splits={"train": 64, "test": 32})
    recipe = {
        "dataset_name": str(data),
        "output_dir": str(folder / "out"),
        "model_name_or_path": "resnet8",
        "method": "none",
        "num_train_epochs": 1,
        "lr_decay_epochs": [],
        "per_device_train_batch_size": 32,
        "save_strategy": "no",
        "disable_tqdm": True,
        **keys,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (path relative to it -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list, folder: Path, capsys) -> str:
    """Run ``hfkd train argv`` in this process: exit code 2, one line on stderr, no traceback, no file under
    ``folder`` changed; returns the sentence."""
    before = snapshot(folder)
    capsys.readouterr()  # what came before (datasets' progress bars while a test wrote its data) is not the command's
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    error = captured.err
    assert error.startswith("hfkd: error: ") and error.endswith("\n") and error.count("\n") == 1, error
    assert "Traceback" not in error + captured.out
    assert snapshot(folder) == before
    return error.strip().removeprefix("hfkd: error: ")
