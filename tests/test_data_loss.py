"""Nothing already written is lost: hfkd writes into an empty folder, a folder holding an hfkd run it resumes or
keeps, or (with overwrite_output_dir) an earlier hfkd run, never over a file it did not write, and nothing before
its checks pass. Finished stages of a recipe are kept on a re-run, and every refusal's advice works."""

from __future__ import annotations

import pytest
import yaml

from hfkd.output_folder import RUN_FILES
from hfkd.run import main
from hfkd.trainer import DistillationTrainer
from tests.refusals import files_under, refusal, tiny_recipe

USER_FILES = {"README.md": "# my notes\n", "results.json": '{"mine": 1}\n', "registry.py": "X = 1\n",
              "data.csv": "a,b\n1,2\n"}


@pytest.fixture()
def recipe(tmp_path):
    return tiny_recipe(tmp_path)


def user_folder(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_text(content)
    return folder


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_the_users_own_files_is_never_written_over(recipe, tmp_path, capsys, overwrite):
    out = user_folder(tmp_path / "out", USER_FILES)
    before = files_under(out)
    argv = [str(recipe)] + (["--overwrite_output_dir", "true"] if overwrite else [])
    error = refusal(capsys, main(argv))
    assert error == (f"hfkd: error: output_dir {str(out)!r} holds files hfkd did not write that a run would overwrite "
                     f"(README.md, registry.py, results.json); move them or choose an empty output_dir")
    assert files_under(out) == before


# every concrete name hfkd writes into a run folder (the patterns, instantiated)
WRITTEN_NAMES = sorted({p.replace("*", "1") if p != "*.py" else "modeling_hfkd.py" for p in RUN_FILES})


@pytest.mark.parametrize("name", WRITTEN_NAMES)
def test_no_name_hfkd_writes_is_written_over_in_a_users_folder(recipe, tmp_path, capsys, name):
    out = tmp_path / "out"
    out.mkdir()
    target = out / name
    target.write_text("mine\n") if name not in ("runs",) and not name.startswith("checkpoint-") else target.mkdir()
    before = files_under(out)
    error = refusal(capsys, main([str(recipe), "--overwrite_output_dir", "true"]))
    assert f"holds files hfkd did not write that a run would overwrite ({name})" in error
    assert files_under(out) == before and sorted(p.name for p in out.iterdir()) == [name]


def test_other_files_of_the_user_are_kept_with_overwrite_and_refused_without(recipe, tmp_path, capsys):
    out = user_folder(tmp_path / "out", {"data.csv": "a,b\n1,2\n", "notes.txt": "keep\n"})
    before = files_under(out)
    error = refusal(capsys, main([str(recipe)]))
    assert error == (f"hfkd: error: output_dir {str(out)!r} already holds files hfkd did not write (data.csv, "
                     f"notes.txt); choose an empty output_dir, or pass --overwrite_output_dir true to write next to them")
    assert files_under(out) == before
    assert main([str(recipe), "--overwrite_output_dir", "true"]) == 0  # the advice works, next to the user's files
    assert {k: v for k, v in files_under(out).items() if k in before} == before
    assert (out / "model.safetensors").is_file()


def test_a_recipes_output_folder_with_user_files_is_refused_before_the_first_stage(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    values = yaml.safe_load(recipe.read_text())
    del values["model_name_or_path"], values["method"]
    values["stages"] = {"teacher": {"model_name_or_path": "resnet8", "method": "none"},
                        "kd": {"model_name_or_path": "resnet8", "teacher": "{output_dir}/teacher", "method": "kd"}}
    recipe.write_text(yaml.safe_dump(values, sort_keys=False))
    out = user_folder(tmp_path / "out", {"results.md": "mine\n"})
    before = files_under(out)
    error = refusal(capsys, main([str(recipe)]))
    assert f"the recipe's output_dir {str(out)!r} holds files hfkd did not write" in error and "(results.md)" in error
    assert files_under(out) == before and not (out / "teacher").exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    recipe = tiny_recipe(folder, save_strategy="epoch")
    assert main([str(recipe)]) == 0
    return recipe, folder / "out"


def test_resuming_a_finished_run_with_another_model_is_refused_before_anything_is_written(finished, capsys):
    recipe, out = finished
    before = files_under(out)
    code = main([str(recipe), "--model_name_or_path", "resnet14", "--resume_from_checkpoint", "true"])
    error = refusal(capsys, code)
    assert error == (f"hfkd: error: cannot resume the run in {str(out)!r}: it was trained with model_name_or_path "
                     f"'resnet8', this recipe sets 'resnet14'; use the same model_name_or_path to resume, or another "
                     f"output_dir")
    assert files_under(out) == before  # recipe.yaml included


def test_a_finished_run_is_kept_on_a_rerun_and_another_recipe_gets_advice_that_works(finished, tmp_path, capsys):
    recipe, out = finished
    before = files_under(out)
    assert main([str(recipe)]) == 0
    assert f"hfkd: stage run: finished earlier in {out}, kept" in capsys.readouterr().out
    assert files_under(out) == before
    error = refusal(capsys, main([str(recipe), "--learning_rate", "0.01"]))
    assert error == (f"hfkd: error: output_dir {str(out)!r} already holds a run (checkpoint-2, config.json, "
                     f"model.safetensors); resume it with --resume_from_checkpoint true, pick another output_dir, or "
                     f"pass --overwrite_output_dir true")
    assert files_under(out) == before


def test_a_staged_recipe_killed_in_stage_two_without_checkpoints_keeps_stage_one_on_a_rerun(
        tmp_path, capsys, monkeypatch):
    recipe = tiny_recipe(tmp_path)  # save_strategy: no
    values = yaml.safe_load(recipe.read_text())
    del values["model_name_or_path"], values["method"]
    values["stages"] = {"teacher": {"model_name_or_path": "resnet8", "method": "none"},
                        "kd": {"model_name_or_path": "resnet8", "teacher": "{output_dir}/teacher", "method": "kd"}}
    recipe.write_text(yaml.safe_dump(values, sort_keys=False))
    out = tmp_path / "out"
    original_step = DistillationTrainer.compute_loss

    def killed_in_kd(self, *args, **kwargs):
        if self.args.output_dir.endswith("kd") and self.state.global_step == 1:
            raise KeyboardInterrupt  # the user's Ctrl-C (or a kill) in stage 2's second step
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", killed_in_kd)
    with pytest.raises(KeyboardInterrupt):
        main([str(recipe)])
    monkeypatch.setattr(DistillationTrainer, "compute_loss", original_step)
    assert sorted(p.name for p in (out / "kd").iterdir()) == ["recipe.yaml"]  # killed mid-training
    teacher = files_under(out / "teacher")
    capsys.readouterr()
    assert main([str(recipe)]) == 0  # the same command again: stage 1 kept, stage 2 trained
    printed = capsys.readouterr().out
    assert "hfkd: stage teacher: finished earlier in" in printed and "hfkd: stage kd: " in printed
    assert files_under(out / "teacher") == teacher
    assert (out / "kd" / "model.safetensors").is_file()
    # resume advice is never given where it cannot work (no checkpoint was saved)
    error = refusal(capsys, main([str(recipe), "--learning_rate", "0.01"]))
    assert "already holds a run" in error and "resume" not in error
