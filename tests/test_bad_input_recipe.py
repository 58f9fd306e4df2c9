"""Bad recipes and command lines (issue 16, kinds A, G, L, M): one sentence, exit code 2, no traceback, and every file
around the run byte-identical, before any model or data is loaded."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from hfkd.recipe import ARGUMENT_CLASSES, load_recipe
from hfkd.recipe_ranges import RANGES, SEED_MAX
from tests.refusals import refused, snapshot

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE = {"model_name_or_path": "resnet8", "dataset_name": "builtin:cifar10-quickstart"}


@pytest.fixture()
def workspace(tmp_path):
    """A recipe file, an empty output folder and a user's file beside it; the tests compare every file below the
    workspace, so a refusal that wrote anything shows (a folder holding the user's files is refused by the
    output-folder rule first, so it holds none here)."""
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "notes.txt").write_text("mine\n")

    def write(values: dict | str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        text = values if isinstance(values, str) else yaml.safe_dump({**BASE, "output_dir": str(out), **values},
                                                                       sort_keys=False)
        path.write_text(text)
        return path

    return tmp_path, write


# ---- A: every numeric key is range-checked when the recipe is read ------------------------------------------------

def _numeric_fields() -> set[str]:
    names = set()
    for cls in ARGUMENT_CLASSES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kinds = {hints[f.name]} | set(typing.get_args(hints[f.name]))
            kinds |= {a for k in list(kinds) for a in typing.get_args(k)}  # list[float] | None
            if f.init and kinds & {int, float}:
                names.add(f.name)
    return names


def test_every_numeric_field_has_a_range():
    assert _numeric_fields() == set(RANGES)
    assert len(RANGES) >= 50  # hfkd's keys and the Trainer's


@pytest.mark.parametrize(
    "argv_tail, yaml_values, sentence",
    [
        ([], {"per_device_train_batch_size": 3.5}, "per_device_train_batch_size must be an integer >= 1, got 3.5"),
        (["--per_device_train_batch_size", "0"], {}, "per_device_train_batch_size must be an integer >= 1, got 0"),
        (["--per_device_train_batch_size", "-8"], {}, "per_device_train_batch_size must be an integer >= 1, got -8"),
        (["--max_train_samples", "0"], {},
         "max_train_samples must be an integer >= 1 (or null for the whole split), got 0"),
        (["--max_train_samples", "-5"], {},
         "max_train_samples must be an integer >= 1 (or null for the whole split), got -5"),
        (["--learning_rate", "-0.1"], {}, "learning_rate must be >= 0, got -0.1"),
    ],
)
def test_issue_examples_of_numbers_out_of_range(workspace, capsys, argv_tail, yaml_values, sentence):
    folder, write = workspace
    error = refused([write(yaml_values), *argv_tail], folder, capsys)
    assert error == f"recipe '{folder / 'recipe.yaml'}': {sentence}"


def _bad_values(key: str) -> list:
    valid = RANGES[key]
    bad = [True, float("nan")]
    if valid.low is not None:
        bad.append(valid.low if valid.low_open else valid.low - 1)
    if valid.high is not None:
        bad.append(valid.high if valid.high_open else valid.high + 1)
    if valid.integer or valid.steps_or_ratio:
        bad.append((valid.low or 0) + 1.5)
    return [v for v in bad if v not in valid.also]


def _good_values(key: str) -> list:
    valid = RANGES[key]
    low = valid.low if valid.low is not None else 0
    good = [low + 1 if valid.low_open and valid.high is None else low if not valid.low_open else (low + valid.high) / 2]
    if valid.steps_or_ratio or not (valid.integer or valid.high is not None):
        good.append(0.5 if valid.steps_or_ratio else low + 2.5)
    if valid.integer:
        good.append(float(low + 2))  # 3.0 in YAML is the integer 3
    return good + list(valid.also)


# list keys: the range applies to each element; a list as long as the key needs
LIST_LENGTHS = {"image_mean": 3, "image_std": 3, "lr_decay_epochs": 3, "train_crop_scale": 2, "spherical_alphas": 1,
                "spherical_alpha_epochs": 1}


def _as_field(key: str, value):
    return [value] * LIST_LENGTHS[key] if key in LIST_LENGTHS else value


@pytest.mark.parametrize("key", sorted(RANGES))
def test_sweep_every_numeric_key_out_of_range_is_one_sentence(workspace, key):
    """Each value just outside the range (below, above, a fraction for an integer, a boolean, nan) is refused when
    the recipe is read, naming the key, the value and the range; values at the edges of the range are accepted."""
    _, write = workspace
    valid = RANGES[key]
    for value in _bad_values(key):
        path = write({key: _as_field(key, value)})
        with pytest.raises(Exception) as err:
            load_recipe(path)
        message = str(err.value)
        assert type(err.value).__name__ == "RecipeError" and "\n" not in message
        assert f"{key} must be " in message and f"got {_as_field(key, value)!r}" in message, message
        if key != "num_train_epochs":
            assert valid.describe() in message
    if key == "local_rank":
        return  # a rank >= 0 would make this process join a distributed group
    for value in _good_values(key):
        extra = {"max_steps": 5, "eval_strategy": "steps", "save_strategy": "steps", "logging_strategy": "steps"} \
            if key.endswith("_steps") and key != "max_steps" and value < 1 else {}
        if key == "dataloader_prefetch_factor":
            extra = {"dataloader_num_workers": 1}
        (run,) = load_recipe(write({key: _as_field(key, value), **extra})).runs
        args = next(a for a in (run.model_args, run.data_args, run.training_args) if hasattr(a, key))
        stored = getattr(args, key)
        assert stored == _as_field(key, value) or sorted(stored) == sorted(_as_field(key, value))
        if valid.integer:
            assert all(type(v) is int for v in (stored if isinstance(stored, list) else [stored]))


def test_seed_bounds_are_numpy_s(workspace):
    import numpy as np

    _, write = workspace
    np.random.seed(SEED_MAX)  # the largest seed the table allows is one numpy takes
    load_recipe(write({"seed": SEED_MAX}))
    with pytest.raises(ValueError):
        np.random.seed(SEED_MAX + 1)
    with pytest.raises(Exception, match=r"seed must be an integer in \[0, 4294967295\], got 4294967296"):
        load_recipe(write({"seed": SEED_MAX + 1}))


# ---- B (recipe side): a run that would train nothing ---------------------------------------------------------------

@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_zero_or_negative_epochs_are_refused(workspace, capsys, epochs):
    folder, write = workspace
    error = refused([write({}), "--num_train_epochs", epochs], folder, capsys)
    assert error.endswith(f"num_train_epochs must be > 0 (or set max_steps > 0, which overrides it), got "
                          f"{float(epochs)}; the run would train nothing")


def test_max_steps_overrides_epochs_and_must_itself_train(workspace, capsys):
    folder, write = workspace
    (run,) = load_recipe(write({"num_train_epochs": 0, "max_steps": 3})).runs
    assert run.training_args.max_steps == 3
    error = refused([write({}), "--max_steps", "0"], folder, capsys)
    assert error.endswith("max_steps must be -1 or an integer >= 1, got 0")


# ---- L: a type error on the command line is the YAML's sentence ---------------------------------------------------

@pytest.mark.parametrize(
    "key, text, reason",
    [
        ("bf16", "maybe", "Truthy value expected: got maybe but expected one of yes/no, true/false, t/f, y/n, 1/0 "
                          "(case insensitive)."),
        ("learning_rate", "fast", "could not convert string to float: 'fast'"),
        ("seed", "zero", "could not convert string to float: 'zero'"),
    ],
)
def test_command_line_type_errors_say_what_the_yaml_says(workspace, capsys, key, text, reason):
    folder, write = workspace
    from_cli = refused([write({}), f"--{key}", text], folder, capsys)
    from_yaml = refused([write({key: text}, "bad.yaml")], folder, capsys)
    sentence = f"key {key!r} cannot take the value {text!r} ({reason})"
    assert from_cli == f"the command line: {sentence}"
    assert from_yaml == f"recipe '{folder / 'bad.yaml'}': {sentence}"


@pytest.mark.parametrize(
    "argv_tail, sentence",
    [
        (["--per_device_train_batch_size", "3.5"], "per_device_train_batch_size must be an integer >= 1, got 3.5"),
        (["--learning_rate"], "the command line: argument --learning_rate/--learning-rate: expected one argument"),
        (["--lr_decay_epochs", "5", "x"], "key 'lr_decay_epochs' cannot take the value ['5', 'x']"),
        (["--eval_strategy", "sometimes"],
         "sometimes is not a valid IntervalStrategy, please select one of ['no', 'steps', 'epoch']"),
    ],
)
def test_sweep_command_line_mistakes_are_one_sentence(workspace, capsys, argv_tail, sentence):
    folder, write = workspace
    assert sentence in refused([write({}), *argv_tail], folder, capsys)


def test_command_line_values_keep_their_types(workspace):
    _, write = workspace
    (run,) = load_recipe(write({}), ["--bf16", "--per_device_train_batch_size", "4.0", "--lr_decay_epochs", "5", "9",
                                     "--eval_strategy", "steps", "--max_train_samples", "1e2"]).runs
    assert run.training_args.bf16 is True and run.training_args.per_device_train_batch_size == 4
    assert run.training_args.lr_decay_epochs == [5, 9] and run.training_args.eval_strategy.value == "steps"
    assert run.data_args.max_train_samples == 100 and type(run.data_args.max_train_samples) is int


def test_the_user_sees_one_line_not_the_argparse_usage(workspace):
    """In a real process (what the issue measured: 135 lines of usage before the useful one)."""
    folder, write = workspace
    recipe = write({})
    before = snapshot(folder)
    done = subprocess.run([sys.executable, "-m", "hfkd", "train", str(recipe), "--bf16", "maybe"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["hfkd: error: the command line: key 'bf16' cannot take the value 'maybe' "
                                        "(Truthy value expected: got maybe but expected one of yes/no, true/false, "
                                        "t/f, y/n, 1/0 (case insensitive).)"]
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    "argv, line",
    [
        (["sweep", "r.yaml", "--seeds", "a"], "hfkd sweep: error: argument --seeds: invalid int value: 'a'; see hfkd "
                                              "sweep --help"),
        (["convert", "a.pth", "out", "--dataset", "foo"], "hfkd convert: error: argument --dataset: invalid choice: "
                                                          "'foo' (choose from 'cifar100', 'imagenet'); see hfkd convert "
                                                          "--help"),
        (["push"], "hfkd push: error: the following arguments are required: output_dir; see hfkd push --help"),
        (["launch", "--num_processes", "x", "r.yaml"], "hfkd launch: error: argument --num_processes/--num-processes: "
                                                       "invalid int value: 'x'; see hfkd launch --help"),
        (["launch"], "hfkd launch: error: the following arguments are required: RECIPE, --key value; see hfkd launch "
                     "--help"),
    ],
)
def test_sweep_every_hfkd_command_line_mistake_is_one_line(tmp_path, monkeypatch, capsys, argv, line):
    from hfkd.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        cli_main(argv)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines() == [line]
    assert list(tmp_path.iterdir()) == []


# ---- G: duplicate keys anywhere, and the whole recipe checked before its first stage ------------------------------

STAGED = """dataset_name: builtin:cifar10-quickstart
output_dir: {out}
num_train_epochs: 1
stages:
  teacher: {{model_name_or_path: resnet8, method: none}}
  kd: {{model_name_or_path: resnet8, teacher: "{{output_dir}}/teacher", method: kd}}
"""


def test_two_stages_with_one_name_are_refused(workspace, capsys):
    folder, write = workspace
    text = STAGED.format(out=folder / "out") + "  teacher:\n    model_name_or_path: resnet20\n    method: none\n"
    error = refused([write(text)], folder, capsys)
    assert error == (f"recipe file '{folder / 'recipe.yaml'}': key 'teacher' is given twice in one mapping (lines 5 "
                     f"and 7); give each key once")


@pytest.mark.parametrize(
    "text, key, lines",
    [
        ("model_name_or_path: resnet8\ndataset_name: builtin:cifar10-quickstart\nmodel_name_or_path: resnet20\n",
         "model_name_or_path", (1, 3)),
        ("dataset_name: builtin:cifar10-quickstart\nstages:\n  a:\n    model_name_or_path: resnet8\n    method: none\n"
         "    method: kd\n", "method", (5, 6)),
        ("dataset_name: x\nstages: {a: {model_name_or_path: resnet8, method: none, method: kd}}\n", "method", (2, 2)),
        ("model_name_or_path: resnet8\ndataset_name: x\nimage_mean: [0.5, 0.5, 0.5]\nimage_mean: [0.4, 0.4, 0.4]\n",
         "image_mean", (3, 4)),
        ("stages:\n  a: {}\nstages:\n  b: {}\n", "stages", (1, 3)),
    ],
)
def test_sweep_duplicate_keys_in_every_mapping(workspace, capsys, text, key, lines):
    folder, write = workspace
    error = refused([write(text)], folder, capsys)
    assert error.endswith(f"key {key!r} is given twice in one mapping (lines {lines[0]} and {lines[1]}); give each "
                          f"key once")


@pytest.mark.parametrize(
    "stages, sentence",
    [
        # a stage that reads a later stage's folder
        ({"kd": {"model_name_or_path": "resnet8", "teacher": "{output_dir}/teacher", "method": "kd"},
          "teacher": {"model_name_or_path": "resnet8", "method": "none"}},
         "stage 'kd' of recipe '{recipe}' reads teacher '{out}/teacher', which is written by stage 'teacher', which "
         "comes after it; a stage can read only the folders of the stages before it"),
        # a stage that reads its own folder
        ({"kd": {"model_name_or_path": "{output_dir}/kd", "teacher": "resnet8", "method": "kd"}},
         "stage 'kd' of recipe '{recipe}' reads model_name_or_path '{out}/kd', which is written by itself; a stage "
         "can read only the folders of the stages before it"),
        # a misspelt stage folder
        ({"teacher": {"model_name_or_path": "resnet8", "method": "none"},
          "kd": {"model_name_or_path": "resnet8", "teacher": "{output_dir}/teachr", "method": "kd"}},
         "stage 'kd' of recipe '{recipe}' reads teacher '{out}/teachr', which does not exist and which no stage "
         "writes (the stages are 'teacher', 'kd'); name an earlier stage's folder"),
        # the second stage has no teacher
        ({"teacher": {"model_name_or_path": "resnet8", "method": "none"}, "kd": {"model_name_or_path": "resnet8"}},
         "stage 'kd' of recipe '{recipe}': method 'kd' needs a teacher; set 'teacher' in the recipe"),
        # two stages write one folder
        ({"a": {"model_name_or_path": "resnet8", "method": "none", "output_dir": "{output_dir}/same"},
          "b": {"model_name_or_path": "resnet8", "method": "none", "output_dir": "{output_dir}/same"}},
         "stages 'a' and 'b' of recipe '{recipe}' both write to '{out}/same'; give each stage its own output_dir"),
        # a bad value in the last stage
        ({"teacher": {"model_name_or_path": "resnet8", "method": "none"},
          "kd": {"model_name_or_path": "resnet8", "teacher": "{output_dir}/teacher", "kd_temperature": 0}},
         "stage 'kd' of recipe '{recipe}': kd_temperature must be > 0, got 0.0"),
        # stage names that cannot be folders
        ({"..": {"model_name_or_path": "resnet8", "method": "none"}},
         "stage name '..' in recipe '{recipe}' cannot be a folder name; name stages with letters, digits, '-' or '_' "
         "(e.g. teacher, kd)"),
        ({"a/b": {"model_name_or_path": "resnet8", "method": "none"}},
         "stage name 'a/b' in recipe '{recipe}' cannot be a folder name; name stages with letters, digits, '-' or "
         "'_' (e.g. teacher, kd)"),
    ],
)
def test_sweep_whole_recipe_is_checked_before_the_first_stage(workspace, capsys, stages, sentence):
    folder, write = workspace
    out = folder / "out"
    recipe = write({"stages": stages, "num_train_epochs": 1, "model_name_or_path": None})
    error = refused([recipe], folder, capsys)
    assert error == sentence.format(recipe=recipe, out=out)
    assert not (out / "teacher").exists() and not (out / "a").exists()  # nothing trained


# ---- M: the launcher's path ends with hfkd's sentence -------------------------------------------------------------

def hfkd_launch(*arguments, cwd: Path) -> subprocess.CompletedProcess:
    """``hfkd launch`` with accelerate's one-process launcher (the one whose CalledProcessError the issue saw)."""
    command = [sys.executable, "-m", "hfkd", "launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", *map(str, arguments)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def test_launch_refuses_a_bad_recipe_before_any_process_starts(workspace):
    folder, write = workspace
    recipe = write({})
    before = snapshot(folder)
    done = hfkd_launch(recipe, "--per_device_train_batch_size", "0", cwd=folder)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"hfkd: error: recipe '{recipe}': per_device_train_batch_size must be an "
                                        f"integer >= 1, got 0"]
    assert snapshot(folder) == before


def test_launch_ends_with_the_sentence_of_the_training_process(workspace):
    """A bad input only the training process can see (the dataset): its sentence is the last line, with its exit
    code, and no CalledProcessError traceback from accelerate follows it."""
    folder, write = workspace
    recipe = write({"dataset_name": str(folder / "no_such_data"), "method": "none"})
    before = snapshot(folder)
    done = hfkd_launch(recipe, cwd=folder)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("hfkd: error: ") and str(folder / "no_such_data") in lines[-1]
    assert "Traceback" not in done.stderr and "CalledProcessError" not in done.stderr
    assert snapshot(folder) == before
