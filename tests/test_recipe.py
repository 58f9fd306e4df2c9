"""Recipes: YAML + command-line overrides -> the three argument dataclasses; bad keys are one clear error."""

from __future__ import annotations

import pytest
import yaml

from hfkd.errors import RecipeError
from hfkd.recipe import load_recipe, resolved_recipe, write_resolved_recipe


def write(tmp_path, text: str, name: str = "recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = "model_name_or_path: resnet8\ndataset_name: builtin:cifar10-quickstart\n"


def test_single_run_fields_and_reference_defaults(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE + "teacher: t.pth\nmethod: kd\n"))
    (run,) = recipe.runs
    assert run.model_args.model_name_or_path == "resnet8"
    assert run.model_args.teacher == "t.pth"
    assert run.data_args.dataset_name == "builtin:cifar10-quickstart"
    args = run.training_args
    # the reference CIFAR recipe (spec 4.1) is the default
    assert (args.learning_rate, args.weight_decay, args.num_train_epochs) == (0.05, 5e-4, 240)
    assert args.per_device_train_batch_size == 64
    assert args.optim == "sgd" and args.optim_args == "momentum=0.9"
    assert args.lr_decay_epochs == [150, 180, 210] and args.lr_decay_rate == 0.1
    assert (args.cls, args.div, args.beta, args.kd_temperature) == (None, None, None, 4.0)  # method defaults
    assert args.eval_strategy.value == "epoch"


def test_cli_overrides_win_and_are_typed(tmp_path):
    path = write(tmp_path, BASE + "learning_rate: 0.05\n")
    (run,) = load_recipe(path, ["--learning_rate", "0.1", "--lr_decay_epochs", "5", "9", "--bf16", "false"]).runs
    assert run.training_args.learning_rate == 0.1
    assert run.training_args.lr_decay_epochs == [5, 9]
    assert run.training_args.bf16 is False


def test_yaml_scientific_notation_is_a_float(tmp_path):
    # YAML 1.1 reads `5e-4` as a string; the recipe must still give a float
    (run,) = load_recipe(write(tmp_path, BASE + "weight_decay: 5e-4\nlearning_rate: 1e-1\n")).runs
    assert run.training_args.weight_decay == pytest.approx(5e-4)
    assert run.training_args.learning_rate == pytest.approx(0.1)


def test_unknown_key_names_the_key_and_closest(tmp_path):
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, BASE + "learing_rate: 0.1\n"))
    message = str(err.value)
    assert "'learing_rate'" in message and "'learning_rate'" in message
    assert "\n" not in message


def test_unknown_cli_flag(tmp_path):
    with pytest.raises(RecipeError, match="unknown key 'kd_temp' in the command line; did you mean 'kd_temperature'"):
        load_recipe(write(tmp_path, BASE), ["--kd_temp", "2"])


def test_bad_value_names_the_key(tmp_path):
    with pytest.raises(RecipeError, match="key 'learning_rate' cannot take the value 'fast'"):
        load_recipe(write(tmp_path, BASE + "learning_rate: fast\n"))


def test_unknown_method_lists_valid_ones(tmp_path):
    with pytest.raises(RecipeError, match="method 'kdd' is unknown; choose one of none, .*kd"):
        load_recipe(write(tmp_path, BASE + "method: kdd\n"))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="must hold a mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))


def test_stages_share_keys_and_substitute_output_dir(tmp_path):
    text = (
        "dataset_name: builtin:cifar10-quickstart\noutput_dir: out/q\nnum_train_epochs: 3\n"
        "stages:\n"
        "  teacher: {model_name_or_path: resnet20, method: none}\n"
        "  kd: {model_name_or_path: resnet8, teacher: '{output_dir}/teacher', method: kd, num_train_epochs: 2}\n"
    )
    recipe = load_recipe(write(tmp_path, text))
    teacher, kd = recipe.runs
    assert recipe.output_dir == "out/q"
    assert [r.name for r in recipe.runs] == ["teacher", "kd"]
    assert teacher.training_args.output_dir == "out/q/teacher" and kd.training_args.output_dir == "out/q/kd"
    assert kd.model_args.teacher == "out/q/teacher"
    assert teacher.training_args.num_train_epochs == 3 and kd.training_args.num_train_epochs == 2
    # a command-line output_dir moves the root, and stages stay below it
    recipe = load_recipe(write(tmp_path, text), ["--output_dir", "elsewhere"])
    assert recipe.runs[1].model_args.teacher == "elsewhere/teacher"
    assert recipe.runs[1].training_args.output_dir == "elsewhere/kd"


def test_unknown_key_inside_a_stage(tmp_path):
    text = BASE + "stages:\n  a: {methd: kd}\n"
    with pytest.raises(RecipeError, match="unknown key 'methd' in stage 'a'.*did you mean 'method'"):
        load_recipe(write(tmp_path, text))


def test_resolved_recipe_round_trips(tmp_path):
    (run,) = load_recipe(write(tmp_path, BASE + "teacher: t.pth\nlearning_rate: 0.2\n")).runs
    path = write_resolved_recipe(run, tmp_path / "out")
    written = yaml.safe_load(path.read_text())
    assert written["learning_rate"] == 0.2 and written["method"] == "kd" and written["teacher"] == "t.pth"
    assert "hub_token" not in written
    (again,) = load_recipe(path).runs
    assert resolved_recipe(again) == resolved_recipe(run)


def test_the_resolved_recipe_is_portable_across_machines(tmp_path, monkeypatch):
    """A machine without a GPU trains with use_cpu and no pinned memory, but the recipe it writes does not say so:
    re-run on a GPU machine, it must not train on the CPU."""
    from hfkd import launch
    from hfkd.distillation_model import resolve_loss_weights

    monkeypatch.setattr(launch, "accelerator_kind", lambda: None)  # this run: a machine without a GPU
    (run,) = load_recipe(write(tmp_path, BASE + "teacher: t.pth\nmethod: simkd\nbf16: true\n")).runs
    assert run.training_args.use_cpu is True and run.training_args.dataloader_pin_memory is False
    assert run.launch.overrides == {"use_cpu": True, "dataloader_pin_memory": False}
    written = yaml.safe_load(write_resolved_recipe(run, tmp_path / "out", resolve_loss_weights(run.training_args))
                             .read_text())
    assert written["use_cpu"] is False and written["dataloader_pin_memory"] is True  # the defaults, not this host
    assert written["bf16"] is True  # what the recipe asked for is kept
    assert (written["cls"], written["div"], written["beta"]) == (0.0, 0.0, 1.0)  # SimKD's weights, resolved once
    assert run.training_args.cls is None  # ... and not written back into the arguments
    # on a machine with a GPU the same file launches without any CPU setting
    monkeypatch.setattr(launch, "accelerator_kind", lambda: "cuda")
    monkeypatch.setattr(launch, "_device_native_bf16", lambda device: (True, "the GPU computes bf16"))
    monkeypatch.setattr(launch, "_accelerator_name", lambda device: "a GPU")
    assert launch.choose_launch(written).overrides == {}
