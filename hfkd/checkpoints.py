"""Which Trainer checkpoints are complete, so that a run killed while saving resumes from the last whole one.

Transformers writes a checkpoint's files in a fixed order (weights, optimizer, scheduler, scaler, RNG states) and
``trainer_state.json`` last. A checkpoint whose ``trainer_state.json`` exists and parses was therefore written
completely; a kill during a save leaves a folder without it (or with a truncated one), which this module skips.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .errors import UnreadableFileError
from .readable_files import check_safetensors, check_torch_archive, read_json

logger = logging.getLogger(__name__)
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
TRAINER_STATE = "trainer_state.json"
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def is_complete(checkpoint: str | Path) -> bool:
    """True when the checkpoint's weights and a parseable ``trainer_state.json`` are there."""
    checkpoint = Path(checkpoint)
    state = checkpoint / TRAINER_STATE
    if not state.is_file() or not any((checkpoint / name).exists() for name in _WEIGHTS):
        return False
    try:
        json.loads(state.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def latest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest-step complete checkpoint in ``output_dir``; incomplete newer ones are reported and skipped."""
    found = []
    for path in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        match = _CHECKPOINT.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    for _, path in sorted(found, reverse=True):
        if is_complete(path):
            return path
        logger.warning("%s is incomplete (the run was stopped while saving it); it is skipped", path)
    return None


def check_checkpoint_files(checkpoint: str | Path) -> None:
    """Every file of a checkpoint about to be resumed is whole, and its weights and buffers are finite.

    JSON parses, ``.safetensors`` files hold every byte their header promises, PyTorch files (optimizer, scheduler,
    RNG states) are whole zip archives whose checksums match. Raises ``UnreadableFileError`` naming the first bad
    file, before the run loads or writes anything (transformers would fail mid-resume with the library's error).
    """
    import torch
    from safetensors.torch import load_file

    checkpoint = Path(checkpoint)
    for path in sorted(checkpoint.iterdir()):
        if path.suffix == ".json":
            read_json(path, "checkpoint file")
        elif path.suffix == ".safetensors":
            check_safetensors(path, "checkpoint file")
            for name, tensor in load_file(path).items():
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    raise UnreadableFileError(
                        f"checkpoint file {str(path)!r} holds non-finite values (in {name}); resume from an "
                        f"earlier checkpoint"
                    )
        elif path.suffix in (".pt", ".pth", ".bin"):
            check_torch_archive(path, "checkpoint file")
