"""Which checkpoint a resume takes: the highest-step complete one (numeric order), skipping incomplete ones."""

from __future__ import annotations

import json
import logging

import pytest

from hfkd.checkpoints import is_complete, latest_complete_checkpoint


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
    assert "checkpoint-12 is incomplete" in caplog.text and "checkpoint-20" not in caplog.text


def test_no_complete_checkpoint_is_none(tmp_path):
    checkpoint(tmp_path, 4, weights=None)
    assert latest_complete_checkpoint(tmp_path) is None
    assert latest_complete_checkpoint(tmp_path / "missing") is None
