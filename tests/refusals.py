"""Asserting a refusal: ``hfkd train`` exits with code 2 and one sentence, no traceback, and changes no file."""

from __future__ import annotations

from pathlib import Path

from hfkd.train import main


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list, folder: Path, capsys) -> str:
    """Run ``hfkd train argv`` in this process: exit code 2, one line on stderr, no traceback, no file under
    ``folder`` changed; returns the sentence."""
    before = snapshot(folder)
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    error = captured.err
    assert error.startswith("hfkd: error: ") and error.endswith("\n") and error.count("\n") == 1, error
    assert "Traceback" not in error + captured.out
    assert snapshot(folder) == before
    return error.strip().removeprefix("hfkd: error: ")
