"""Recipes: YAML files whose keys are the fields of the argument dataclasses, plus command-line overrides.

A recipe is either one run (a flat mapping) or several runs that share keys::

    num_train_epochs: 30          # shared by every stage
    output_dir: outputs/quickstart
    stages:
      teacher: {model_name_or_path: resnet20, method: none}
      kd: {model_name_or_path: resnet8, teacher: "{output_dir}/teacher", method: kd}

Stages run in order; a stage writes to ``{output_dir}/{stage}`` unless it sets its own ``output_dir``, and
``{output_dir}`` inside a stage's string values means the recipe's top-level output directory. Command-line
overrides (``--learning_rate 0.1``) apply to every stage and win over the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from .config import DataArguments, DistillationConfig, ModelArguments
from .errors import RecipeError
from .launch import LaunchChoice, choose_launch
from .recipe_stages import check_stage_name, check_stages

ARGUMENT_CLASSES = (ModelArguments, DataArguments, DistillationConfig)
RESOLVED_RECIPE_NAME = "recipe.yaml"
# never written to a resolved recipe: secrets, and values transformers derives per process
_NOT_WRITTEN = {"hub_token", "local_rank", "push_to_hub_token", "deepspeed_plugin"}


@dataclass
class RunSpec:
    """One training run: its stage name, its recipe values and the three argument objects built from them.

    ``values`` are the run's keys as the recipe (and command line) give them: portable, with no host-derived value.
    The argument objects add what ``launch`` chose for this machine (``launch.overrides``), because transformers binds
    ``TrainingArguments`` to a device when it is constructed.
    """

    name: str
    model_args: ModelArguments
    data_args: DataArguments
    training_args: DistillationConfig
    values: dict[str, Any]
    launch: LaunchChoice


def _argument_parser() -> HfArgumentParser:
    return HfArgumentParser(ARGUMENT_CLASSES, allow_abbrev=False)  # no silent prefix matching of keys


def valid_keys() -> set[str]:
    return {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}


def _check_keys(keys: list[str], where: str) -> None:
    known = valid_keys()
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise RecipeError(f"unknown key {key!r} in {where}{hint}")


def _actions_by_dest(parser: HfArgumentParser) -> dict[str, argparse.Action]:
    # boolean fields with default True also get a `--no_<name>` action with the same dest; keep the positive one
    actions: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.dest != "help" and not any(opt.startswith("--no_") for opt in action.option_strings):
            actions.setdefault(action.dest, action)
    return actions


def _coerce(key: str, value: Any, convert: Any, where: str) -> Any:
    """Convert a recipe or command-line value with the type function of its field's command-line action, so that
    ``5e-4`` (a string to YAML 1.1) becomes a float, the YAML and the command line read a value alike, and a bad
    value is one sentence naming its key. A number for an integer key is kept as a number (``3.5``), for the range
    check (:mod:`hfkd.recipe_ranges`) to say that it must be a whole number."""
    if value is None or not callable(convert) or isinstance(value, (dict, bool)):
        return value
    try:
        if isinstance(value, list):
            return [_convert(convert, v) if isinstance(v, str) else v for v in value]
        if isinstance(value, str) or convert in (float, str):
            return _convert(convert, value)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
        raise RecipeError(f"{where}: key {key!r} cannot take the value {value!r} ({err})") from None
    return value


def _convert(convert: Any, value: Any) -> Any:
    if convert is int and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return float(value)  # '3.5' or '1e3'; a word still fails here, naming itself
    return convert(value)


def _command_line_error(message: str) -> None:
    # argparse would print the usage of every recipe key (over a hundred lines) and exit; one sentence instead
    raise RecipeError(f"the command line: {message}")


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """Parse ``--key value`` overrides; values are converted like the YAML's (:func:`_coerce`), so a bad value or an
    unknown flag is the same one sentence in both places."""
    parser = _argument_parser()
    parser.error = _command_line_error
    converters = {dest: action.type for dest, action in _actions_by_dest(parser).items()}
    for action in parser._actions:
        action.required = False
        action.default = argparse.SUPPRESS
        action.type, action.choices = None, None  # strings here; converted and checked below, as in a recipe file
    namespace, rest = parser.parse_known_args(argv)
    if rest:
        flags = [r for r in rest if r.startswith("-")]
        bad = flags[0].lstrip("-").split("=")[0] if flags else rest[0]
        if flags:
            _check_keys([bad], "the command line")
        raise RecipeError(f"cannot read the command-line argument {bad!r}; write overrides as --key value")
    return {key: _coerce(key, value, converters.get(key), "the command line") for key, value in vars(namespace).items()}


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: PyYAML keeps the last value,
    so a recipe with two stages of one name would silently drop the first."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise RecipeError(f"key {key!r} is given twice in one mapping (lines {seen[key] + 1} and "
                                  f"{key_node.start_mark.line + 1}); give each key once")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"recipe file {str(path)!r} does not exist")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    except RecipeError as err:
        raise RecipeError(f"recipe file {str(path)!r}: {err}") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe file {str(path)!r} is not valid YAML: {err}".replace("\n", " "))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe file {str(path)!r} must hold a mapping of keys to values, not {type(raw).__name__}")
    return raw


def _substitute(value: Any, output_dir: str) -> Any:
    if isinstance(value, str):
        return value.replace("{output_dir}", output_dir)
    if isinstance(value, list):
        return [_substitute(v, output_dir) for v in value]
    return value


def _build_run(name: str, values: dict[str, Any], where: str) -> RunSpec:
    parser = _argument_parser()
    actions = _actions_by_dest(parser)
    values = {k: _coerce(k, v, actions[k].type, where) for k, v in values.items()}
    try:
        launch = choose_launch(values)
        model_args, data_args, training_args = parser.parse_dict({**values, **launch.overrides}, allow_extra_keys=False)
    except RecipeError as err:
        raise RecipeError(f"{where}: {err}") from None
    except (TypeError, ValueError) as err:
        message = str(err).strip().splitlines()[0]
        raise RecipeError(f"{where}: {message}") from None
    return RunSpec(name, model_args, data_args, training_args, values, launch)


@dataclass
class Recipe:
    """A parsed recipe: its runs in order, and the directory its results table goes to."""

    path: Path
    output_dir: str
    runs: list[RunSpec]


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe (one run or several stages) and apply command-line overrides."""
    path = Path(path)
    raw = _load_yaml(path)
    stages = raw.pop("stages", None)
    _check_keys(list(raw), f"recipe {str(path)!r}")
    cli = parse_overrides(overrides or [])

    if stages is None:
        run = _build_run("run", {**raw, **cli}, f"recipe {str(path)!r}")
        return Recipe(path, run.training_args.output_dir, [run])

    if not isinstance(stages, dict) or not stages:
        raise RecipeError(f"'stages' in recipe {str(path)!r} must be a non-empty mapping of stage name to keys")
    root = str(cli.get("output_dir", raw.get("output_dir", DistillationConfig.output_dir)))
    runs = []
    for name, stage in stages.items():
        name = check_stage_name(name, str(path))
        where = f"stage {name!r} of recipe {str(path)!r}"
        stage = stage or {}
        if not isinstance(stage, dict):
            raise RecipeError(f"{where} must be a mapping of keys to values")
        _check_keys(list(stage), where)
        values = {**raw, **stage, **cli}
        values["output_dir"] = stage.get("output_dir", f"{root}/{name}")  # stages stay below the root
        values = {k: _substitute(v, root) for k, v in values.items()}
        runs.append(_build_run(name, values, where))
    check_stages(runs, root, str(path))  # the stages together, before the first one trains
    return Recipe(path, root, runs)


def resolved_recipe(run: RunSpec, loss_weights=None) -> dict[str, Any]:
    """Every field of the run's three argument objects, as a flat recipe that ``load_recipe`` reads back.

    Values the launch chose for this machine are written as the recipe gave them (or their defaults), so the file
    re-runs unchanged elsewhere; ``loss_weights`` (a resolved ``LossWeights``) fills in ``cls``, ``div`` and ``beta``.
    """
    weights = {} if loss_weights is None else {"cls": loss_weights.cls, "div": loss_weights.div,
                                               "beta": loss_weights.beta}
    resolved: dict[str, Any] = {}
    for args in (run.model_args, run.data_args, run.training_args):
        for f in dataclasses.fields(args):
            if not f.init or f.name in _NOT_WRITTEN:
                continue
            value = getattr(args, f.name)
            if f.name in run.launch.overrides:
                value = run.values.get(f.name, _default(f))
            value = weights.get(f.name, value)
            if isinstance(value, enum.Enum):
                value = value.value
            if isinstance(value, (list, tuple)):
                value = [v.value if isinstance(v, enum.Enum) else v for v in value]
            if value is not None and not isinstance(value, (str, int, float, bool, list, dict)):
                continue  # objects built by transformers (plugins, configs); their source keys are kept
            resolved[f.name] = value
    return resolved


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def write_resolved_recipe(run: RunSpec, output_dir: str | Path | None = None, loss_weights=None) -> Path:
    """Write the fully resolved, portable recipe next to the run's outputs (``recipe.yaml``)."""
    output_dir = Path(output_dir or run.training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / RESOLVED_RECIPE_NAME
    target.write_text(yaml.safe_dump(resolved_recipe(run, loss_weights), sort_keys=True))
    return target
