"""hfkd sweep on tiny recipes: the table's contents, resumption that skips finished runs, failed runs shown as failed,
valid PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hfkd.sweep import main as sweep_main
from hfkd.sweep import collect, display_order, results_table
from tests.conftest import write_image_dataset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def recipes(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    write_image_dataset(data, splits={"train": 48, "test": 24})
    folder = tmp_path / "recipes"
    folder.mkdir()
    common = {"dataset_name": str(data), "num_train_epochs": 1, "per_device_train_batch_size": 16,
              "lr_decay_epochs": [], "save_strategy": "no", "disable_tqdm": True}
    (folder / "a_teacher.yaml").write_text(yaml.safe_dump({**common, "model_name_or_path": "resnet14",
                                                            "method": "none", "output_dir": "unused"}))
    (folder / "b_student.yaml").write_text(yaml.safe_dump({**common, "model_name_or_path": "resnet8",
                                                            "method": "none", "output_dir": "unused"}))
    (folder / "c_kd.yaml").write_text(yaml.safe_dump({
        **common, "model_name_or_path": "resnet8", "method": "kd", "output_dir": "unused",
        "teacher": str(tmp_path / "sweep" / "a_teacher" / "seed-0"),
        "reference_top1": 40.0, "reference_source": "a made-up figure for the test",
    }))
    # a run that fails when it loads its teacher (the path does not exist)
    (folder / "d_broken.yaml").write_text(yaml.safe_dump({
        **common, "model_name_or_path": "resnet8", "method": "kd", "output_dir": "unused",
        "teacher": str(tmp_path / "nowhere"),
    }))
    return folder


def test_sweep_table_resumption_failures_and_plots(recipes, tmp_path, capsys):
    output = tmp_path / "sweep"
    args = [str(recipes / "*.yaml"), "--seeds", "0", "1", "--output_dir", str(output), "--single_seed", "a_*"]
    assert sweep_main(args) == 1  # a run failed: the exit code says so, and the sweep went on
    assert not (output / "a_teacher" / "seed-1").exists()  # the teacher runs with the first seed only
    table = (output / "results.md").read_text()
    lines = table.splitlines()
    assert lines[0] == "| method | resnet8 |"
    teacher_row = next(line for line in lines if line.startswith("| teacher resnet14 |"))
    student_row = next(line for line in lines if line.startswith("| b_student |"))
    kd_row = next(line for line in lines if line.startswith("| c_kd |"))
    broken_row = next(line for line in lines if line.startswith("| d_broken |"))
    assert "(2)" in student_row and "(2)" in kd_row  # mean ± std over 2 seeds
    assert "(" not in teacher_row.split("|")[2]  # one seed: the value alone
    assert "[ref 40.00," in kd_row
    assert "failed (2 seeds)" in broken_row

    entries = {e["label"]: e for e in json.loads((output / "results.json").read_text())}
    kd = entries["c_kd"]
    seed_values = [kd["top1"]["0"], kd["top1"]["1"]]
    mean = sum(seed_values) / 2
    assert f"{mean:.2f} ± " in kd_row
    for seed in (0, 1):
        run = json.loads((output / "c_kd" / f"seed-{seed}" / "results.json").read_text())
        assert run[0]["top1_last"] == kd["top1"][str(seed)]
    error = json.loads((output / "d_broken" / "seed-0" / "failed.json").read_text())["error"]
    assert f"model '{tmp_path / 'nowhere'}' is not a CIFAR zoo name" in error

    for name in ("top1_resnet8.png", "top1_resnet14.png", "curves.png"):
        assert (output / name).read_bytes()[:8] == PNG_SIGNATURE, name

    # resuming: finished runs are skipped (their files untouched), the failed one is tried again, and a run
    # interrupted after writing its model (no results.json) starts over with its old files set aside, not deleted
    before = (output / "c_kd" / "seed-0" / "results.json").stat().st_mtime_ns
    interrupted = output / "b_student" / "seed-1"
    (interrupted / "results.json").unlink()
    weights = (interrupted / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert sweep_main(args) == 1
    printed = capsys.readouterr().out
    assert "c_kd seed 0" not in printed and "d_broken seed 0" in printed
    assert (output / "c_kd" / "seed-0" / "results.json").stat().st_mtime_ns == before
    assert f"b_student seed 1 was interrupted earlier; its files are kept in {interrupted}.interrupted-1" in printed
    assert (output / "b_student" / "seed-1.interrupted-1" / "model.safetensors").read_bytes() == weights
    assert (interrupted / "results.json").is_file()


def test_a_bad_recipe_stops_the_sweep_before_any_run(recipes, tmp_path, capsys):
    (recipes / "z_typo.yaml").write_text("model_name_or_pth: resnet8\n")
    assert sweep_main([str(recipes / "*.yaml"), "--output_dir", str(tmp_path / "sweep")]) == 2
    assert "unknown key 'model_name_or_pth'" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_table_rows_follow_the_seed_table_order():
    def entry(label, student, method, top1):
        return {"label": label, "student": student, "method": method, "top1": {"0": top1}, "top5": {}, "failed": {},
                "dirs": {}}

    entries = [entry("a_simkd", "resnet8", "simkd", 60.0), entry("b_dkd", "resnet8", "dkd", 59.0),
               entry("c_kd", "resnet8", "kd", 58.0), entry("d_teacher", "resnet20", "none", 70.0),
               entry("e_alone", "resnet8", "none", 55.0), entry("f_srrl", "resnet8", "srrl", 57.0),
               entry("g_simkd", "resnet8", "simkd", 61.0)]
    table = results_table(entries)
    labels = [line.split("|")[1].strip() for line in table.splitlines()[2:] if line.startswith("| ")]
    assert labels == ["teacher resnet20", "e_alone", "c_kd", "f_srrl", "a_simkd", "g_simkd", "b_dkd"]
    assert "| c_kd | 58.00 |" in table
    # the bar charts use the same order (the teacher, another architecture, has its own chart)
    bars = [e["label"] for e in display_order([e for e in entries if e["student"] == "resnet8"])]
    assert bars == ["e_alone", "c_kd", "f_srrl", "a_simkd", "g_simkd", "b_dkd"]


def test_a_recipe_failing_on_some_seeds_only_is_one_row(tmp_path):
    recipe = tmp_path / "e_semckd.yaml"
    recipe.write_text("method: semckd\n")
    row = {"stage": "e_semckd", "student": "resnet8", "method": "semckd", "teacher": "resnet20", "top1_last": 50.0,
           "top5_last": 90.0, "output_dir": str(tmp_path / "out" / "e_semckd" / "seed-0")}
    for seed, top1 in ((0, 50.0), (1, 54.0)):
        run = tmp_path / "out" / "e_semckd" / f"seed-{seed}"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps([{**row, "top1_last": top1, "output_dir": str(run)}]))
    failed = tmp_path / "out" / "e_semckd" / "seed-2"
    failed.mkdir()
    (failed / "failed.json").write_text(json.dumps({"error": "the loss term 'semckd' became nan or inf at step 98"}))
    entries = collect([recipe], [0, 1, 2], tmp_path / "out")
    assert len(entries) == 1 and entries[0]["top1"] == {0: 50.0, 1: 54.0} and list(entries[0]["failed"]) == [2]
    rows = [line for line in results_table(entries).splitlines() if line.startswith("| e_semckd")]
    assert rows == ["| e_semckd | 52.00 ± 2.83 (2) failed (1 seed) |"]


def test_runs_share_the_device_after_the_shared_teacher(recipes, tmp_path):
    """--runs_per_device 2 on this CPU: the teacher (single seed) finishes first, then two runs train at once, each in
    its own process with half the cores; the throughput record counts every image they trained."""
    from hfkd.sweep import run_sweep, sweep_throughput

    output = tmp_path / "sweep"
    chosen = [recipes / "a_teacher.yaml", recipes / "b_student.yaml", recipes / "c_kd.yaml"]
    records = run_sweep(chosen, [0], output, single_seed=["a_*"], runs_per_device=2)
    assert [(r["recipe"], r["status"]) for r in records] == [
        ("a_teacher", "finished"), ("b_student", "finished"), ("c_kd", "finished")]
    teacher, student, kd = records
    assert teacher["ended"] <= min(student["started"], kd["started"])  # the students read the teacher's export
    assert student["started"] < kd["ended"] and kd["started"] < student["ended"]  # the two overlapped
    for name in ("b_student", "c_kd"):
        resolved = yaml.safe_load((output / name / "seed-0" / "recipe.yaml").read_text())
        assert resolved["cpu_threads"] == 1  # 2 cores shared by 2 runs
    throughput = sweep_throughput(records)
    # 48 training images x 1 epoch per run, three runs
    assert throughput["runs"] == 3 and throughput["images"] == pytest.approx(3 * 48, rel=1e-3)
    assert throughput["aggregate_img_per_s"] == pytest.approx(throughput["images"] / throughput["wall_s"])


def test_logit_runs_of_a_seed_share_one_teacher_cache(recipes, tmp_path):
    """--teacher_cache: after the shared teacher, one cache per seed is built, and every logit run of that seed (kd,
    dkd) trains from it; a run without a teacher (the student alone) does not."""
    from hfkd.sweep import run_sweep
    from hfkd.teacher_cache import read_record

    kd = yaml.safe_load((recipes / "c_kd.yaml").read_text())
    (recipes / "e_dkd.yaml").write_text(yaml.safe_dump({**kd, "method": "dkd"}))
    output = tmp_path / "sweep"
    chosen = [recipes / "a_teacher.yaml", recipes / "b_student.yaml", recipes / "c_kd.yaml", recipes / "e_dkd.yaml"]
    records = run_sweep(chosen, [0, 1], output, single_seed=["a_*"], teacher_cache=True)
    assert [(r["recipe"], r["seed"], r["status"]) for r in records] == [
        ("a_teacher", 0, "finished"), ("teacher cache", 0, "cached"), ("teacher cache", 1, "cached"),
        ("b_student", 0, "finished"), ("b_student", 1, "finished"), ("c_kd", 0, "finished"), ("c_kd", 1, "finished"),
        ("e_dkd", 0, "finished"), ("e_dkd", 1, "finished")]
    for seed in (0, 1):
        caches = {yaml.safe_load((output / name / f"seed-{seed}" / "recipe.yaml").read_text())["teacher_cache"]
                  for name in ("c_kd", "e_dkd")}
        (cache,) = caches
        assert cache.endswith(f"seed-{seed}") and Path(cache).parent.parent.name == "teacher_caches"
        record = read_record(Path(cache))
        assert (record.seed, record.epochs, record.teacher) == (seed, 1, str(output / "a_teacher" / "seed-0"))
        student = yaml.safe_load((output / "b_student" / f"seed-{seed}" / "recipe.yaml").read_text())
        assert student["teacher_cache"] is None
