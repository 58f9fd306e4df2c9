"""``hfkd train --help [WORD]``: every recipe key, hfkd's own first, then the ``transformers.TrainingArguments`` ones.

Rendered from the argument dataclasses themselves (name, type, default, ``metadata["help"]``), so the list cannot
drift from what a recipe accepts. transformers' ``HfArgumentParser`` help is not used: it formats help texts with
``%`` interpolation, which the texts that quote percentages would break.
"""

from __future__ import annotations

import dataclasses
import textwrap

from transformers import TrainingArguments

from .config import DataArguments, DistillationConfig, ModelArguments

USAGE = """usage: hfkd train RECIPE.yaml [--key value ...]
       hfkd launch [ACCELERATE OPTIONS] RECIPE.yaml [--key value ...] (the same, under accelerate's launcher)
       hfkd train --help [WORD]                                         (only the keys whose name or help has WORD)

Train every stage of a recipe. A recipe is a YAML file of the keys below; --key value on the command line wins
over the file. Each stage writes its export, model card, recipe.yaml and results.json to its output_dir."""


def _default(f: dataclasses.Field, owner: type) -> str:
    value = getattr(owner, f.name, dataclasses.MISSING) if f.default is dataclasses.MISSING else f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    if value is dataclasses.MISSING:
        return "required"
    return repr(getattr(value, "value", value))


def _entry(f: dataclasses.Field, owner: type) -> str:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    text = " ".join(str(f.metadata.get("help", "")).split())
    head = f"  --{f.name} ({kind}, default {_default(f, owner)})"
    body = textwrap.fill(text, width=116, initial_indent="      ", subsequent_indent="      ") if text else ""
    return head + ("\n" + body if body else "")


def key_groups() -> list[tuple[str, list[tuple[dataclasses.Field, type]]]]:
    """(title, [(field, dataclass)]) groups: the model, data and distillation keys hfkd defines, then the Trainer's."""
    trainer_names = {f.name for f in dataclasses.fields(TrainingArguments)}
    own = [f for f in dataclasses.fields(DistillationConfig) if f.init and f.name not in trainer_names]
    trainer = [f for f in dataclasses.fields(DistillationConfig) if f.init and f.name in trainer_names]
    return [
        ("Model keys (ModelArguments)", [(f, ModelArguments) for f in dataclasses.fields(ModelArguments)]),
        ("Data keys (DataArguments)", [(f, DataArguments) for f in dataclasses.fields(DataArguments)]),
        ("Distillation keys (DistillationConfig, hfkd's own)", [(f, DistillationConfig) for f in own]),
        ("Trainer keys (transformers.TrainingArguments, with hfkd's defaults where they differ)",
         [(f, DistillationConfig) for f in trainer]),
    ]


def recipe_help(word: str | None = None) -> str:
    """The usage and every recipe key (or only those whose name or help text contains ``word``, case-insensitive)."""
    sections = [USAGE]
    for title, fields in key_groups():
        entries = [_entry(f, owner) for f, owner in fields
                   if word is None or word.lower() in (f.name + " " + str(f.metadata.get("help", ""))).lower()]
        if entries:
            sections.append(f"{title}:\n" + "\n".join(entries))
    if word is not None and len(sections) == 1:
        sections.append(f"no key's name or help mentions {word!r}")
    return "\n\n".join(sections)
