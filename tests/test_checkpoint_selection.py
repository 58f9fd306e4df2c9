"""Which checkpoint a resume takes: the highest-step complete one (numeric order), skipping incomplete ones."""

from __future__ import annotations

import json
import logging

import pytest

import torch
from safetensors.torch import save_file

from hfkd.checkpoints import check_checkpoint_files, is_complete, latest_complete_checkpoint
from hfkd.errors import UnreadableFileError


def checkpoint(root, step: int, weights: str | None = "model.safetensors", state: bytes | None = b"{}"):
    """A checkpoint folder with the given weights file and ``trainer_state.json`` text (None: not written)."""
    folder = root / f"checkpoint-{step}"
    folder.mkdir()
    if weights:
        (folder / weights).write_bytes(b"weights")
    if state is not None:
        (folder / "trainer_state.json").write_bytes(state)
    return folder


@pytest.mark.parametrize("weights", ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"])
def test_a_checkpoint_is_complete_with_weights_and_a_parseable_state(tmp_path, weights):
    assert is_complete(checkpoint(tmp_path, 1, weights=weights, state=json.dumps({"global_step": 1}).encode()))


@pytest.mark.parametrize("weights, state", [(None, b"{}"), ("model.safetensors", None),
                                            ("model.safetensors", b'{"global_step": '),  # truncated by a kill
                                            ("model.safetensors", b'{"global_step": \xff}')])  # not UTF-8
def test_a_checkpoint_without_weights_or_a_whole_state_is_incomplete(tmp_path, weights, state):
    assert not is_complete(checkpoint(tmp_path, 1, weights=weights, state=state))


def test_the_newest_complete_checkpoint_is_taken_in_numeric_order(tmp_path, caplog):
    for step in (3, 9, 10):
        checkpoint(tmp_path, step)
    checkpoint(tmp_path, 12, state=None)  # killed while saving
    (tmp_path / "checkpoint-20").write_text("a file, not a checkpoint folder")
    (tmp_path / "checkpoint-final").mkdir()  # not a step number
    with caplog.at_level(logging.WARNING, logger="hfkd.checkpoints"):
        assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"  # not 9 (string order), not 3
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'checkpoint-12'} is incomplete (the run was stopped while saving it); it is skipped"]


def test_no_complete_checkpoint_is_none(tmp_path):
    checkpoint(tmp_path, 4, weights=None)
    assert latest_complete_checkpoint(tmp_path) is None
    assert latest_complete_checkpoint(tmp_path / "missing") is None


def whole_checkpoint(folder):
    """The files a resume reads, written the way the Trainer writes them: JSON, safetensors and torch archives."""
    folder.mkdir()
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    save_file({"w": torch.ones(2, 2), "steps": torch.tensor([3])}, str(folder / "model.safetensors"))
    for name in ("optimizer.pt", "rng_state.pth", "scaler.bin"):
        torch.save({"state": torch.zeros(3)}, folder / name)
    (folder / "notes.txt").write_text("not read by a resume")
    return folder


def test_a_whole_checkpoint_passes_the_file_check(tmp_path):
    check_checkpoint_files(whole_checkpoint(tmp_path / "checkpoint-3"))  # raises nothing


@pytest.mark.parametrize("name", ["trainer_state.json", "model.safetensors", "optimizer.pt", "rng_state.pth",
                                  "scaler.bin"])
def test_each_truncated_checkpoint_file_is_named(tmp_path, name):
    folder = whole_checkpoint(tmp_path / "checkpoint-3")
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFileError) as error:
        check_checkpoint_files(folder)
    # the sentence names what the file is to the user and where it is (the readable_files helpers say what is wrong)
    assert str(error.value).startswith(f"checkpoint file {str(folder / name)!r} is ")


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_checkpoint_weights_are_named_with_their_tensor(tmp_path, value):
    folder = whole_checkpoint(tmp_path / "checkpoint-3")
    weights = torch.ones(2, 2)
    weights[1, 0] = value
    save_file({"steps": torch.tensor([3]), "bn.running_var": weights}, str(folder / "model.safetensors"))
    with pytest.raises(UnreadableFileError) as error:
        check_checkpoint_files(folder)
    assert str(error.value) == (f"checkpoint file {str(folder / 'model.safetensors')!r} holds non-finite values (in "
                                f"bn.running_var); resume from an earlier checkpoint")
