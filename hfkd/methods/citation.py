"""The paper behind a method, for model cards (link and BibTeX)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    """Title, authors (``"First Last and First Last"``), venue, year and a link."""

    title: str
    authors: str
    venue: str
    year: int
    url: str

    def bibtex(self) -> str:
        """A BibTeX entry; arXiv-only papers are ``@article`` with the arXiv number as journal."""
        surname = self.authors.split(" and ")[0].split()[-1].lower()
        word = re.sub(r"[^a-z]", "", self.title.split()[0].lower())
        key = f"{surname}{self.year}{word}"
        kind, where = ("article", "journal") if self.venue.startswith("arXiv") else ("inproceedings", "booktitle")
        return (
            f"@{kind}{{{key},\n  title = {{{self.title}}},\n  author = {{{self.authors}}},\n"
            f"  {where} = {{{self.venue}}},\n  year = {{{self.year}}},\n  url = {{{self.url}}}\n}}"
        )
