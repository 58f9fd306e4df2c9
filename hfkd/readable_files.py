"""Opening the files a user hands hfkd, so that a missing, truncated or wrong file is one sentence naming it.

The libraries that read these files (torch, safetensors, json, PIL) raise their own errors, whose messages name
neither the file nor what the user can do (``KeyError: 101`` for a text file given to ``torch.load``). Each reader
here raises :class:`~hfkd.errors.UnreadableFileError` instead, naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

from .errors import UnreadableFileError


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path when it is a readable regular file; else one sentence naming it."""
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError(f"{what} {str(path)!r} does not exist")
    if not path.is_file():
        raise UnreadableFileError(f"{what} {str(path)!r} is a folder, not a file")
    return path


def read_json(path: str | Path, what: str) -> Any:
    """The JSON value in ``path``; a missing file or invalid JSON (truncated, not UTF-8) is one sentence."""
    path = require_file(path, what)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UnreadableFileError(f"{what} {str(path)!r} is not a UTF-8 text file, so not JSON") from None
    except json.JSONDecodeError as err:
        raise UnreadableFileError(
            f"{what} {str(path)!r} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from None


def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML value in ``path`` (``yaml.safe_load``); a missing, non-UTF-8 or invalid file is one sentence."""
    import yaml

    path = require_file(path, what)
    try:
        return yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UnreadableFileError(f"{what} {str(path)!r} is not a UTF-8 text file, so not YAML") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "it does not parse"
        raise UnreadableFileError(f"{what} {str(path)!r} is not valid YAML ({problem}{where})") from None


def read_text_lines(path: str | Path, what: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file, stripped."""
    path = require_file(path, what)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFileError(f"{what} {str(path)!r} is not a UTF-8 text file") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_torch_file(path: str | Path, what: str, objects_hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain values only, no code from the file runs.

    A file that pickles other Python objects is refused with ``objects_hint`` appended (where to find a file that
    holds weights only); a truncated, corrupt or non-PyTorch file is named as such. Raises ``UnreadableFileError``.
    """
    import torch

    path = require_file(path, what)
    _check_torch_format(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):  # a well-formed pickle that names classes or functions
            raise UnreadableFileError(
                f"{what} {str(path)!r} stores Python objects besides tensors, which hfkd does not load because "
                f"unpickling them could run code{objects_hint}"
            ) from None
        raise UnreadableFileError(f"{what} {str(path)!r} is corrupt: its pickle does not unpickle") from None
    except Exception as err:  # noqa: BLE001  torch raises RuntimeError, KeyError, EOFError ... for a bad file
        raise UnreadableFileError(f"{what} {str(path)!r} is corrupt ({_first_line(err)[:100]})") from None


def _check_torch_format(path: Path, what: str) -> None:
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK"):
        check_torch_archive(path, what)
    elif head[:1] != b"\x80":  # the pickle protocol opcode that starts torch's legacy (pre-1.6) format
        raise UnreadableFileError(
            f"{what} {str(path)!r} is not a PyTorch file: it is neither the zip archive torch.save writes nor a "
            f"legacy pickle"
        )


def check_torch_archive(path: str | Path, what: str) -> None:
    """Whether ``path`` is a whole PyTorch zip archive (as ``torch.save`` writes), without loading its tensors.

    A truncated file has no zip central directory; a replaced one is not a zip or holds no pickle. Its CRCs are
    checked too, so a file damaged in the middle is found. Raises ``UnreadableFileError``.
    """
    path = require_file(path, what)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        with path.open("rb") as handle:
            zipped = handle.read(2) == b"PK"
        problem = "truncated or corrupt: its zip directory is missing" if zipped else "not a PyTorch file (not a zip archive)"
        raise UnreadableFileError(f"{what} {str(path)!r} is {problem}") from None
    if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
        raise UnreadableFileError(f"{what} {str(path)!r} is a zip archive but not a PyTorch file (no data.pkl)")
    if damaged is not None:
        raise UnreadableFileError(f"{what} {str(path)!r} is corrupt: its entry {damaged!r} fails its checksum")


def check_safetensors(path: str | Path, what: str) -> list[str]:
    """The tensor names of a whole ``.safetensors`` file; a truncated or non-safetensors file is one sentence.

    safetensors checks that the header parses and that the file holds every byte the header promises.
    """
    from safetensors import safe_open

    path = require_file(path, what)
    try:
        with safe_open(str(path), framework="pt") as handle:
            return list(handle.keys())
    except Exception as err:  # noqa: BLE001  SafetensorError and OSError
        raise UnreadableFileError(
            f"{what} {str(path)!r} is truncated, corrupt or not a safetensors file ({_first_line(err)})"
        ) from None
