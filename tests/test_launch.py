"""Launch settings: the device a run trains on and the speed settings chosen for it (``speed_settings: auto``).

The host is mocked both ways (a CPU with and without native bf16, a GPU with and without it), so these tests say
what they need instead of depending on the machine they run on.
"""

from __future__ import annotations

import json

import pytest
import yaml

from hfkd import launch
from hfkd.config import DistillationConfig
from hfkd.models import create_model
from hfkd.run import main
from hfkd.trainer import DistillationTrainer
from tests.conftest import learnable_datasets, write_image_dataset

AVX2_ONLY = ("AMD EPYC 7B13", frozenset({"avx", "avx2", "fma"}))
AMX = ("Intel(R) Xeon(R) Platinum 8481C", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))


@pytest.fixture()
def cpu_host(monkeypatch):
    """A machine without a GPU whose CPU is chosen by the test."""
    monkeypatch.setattr(launch, "accelerator_kind", lambda: None)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)

    def use(cpu):
        monkeypatch.setattr(launch, "_cpuinfo", lambda: cpu)

    return use


def test_auto_is_fp32_channels_last_without_native_bf16(cpu_host):
    cpu_host(AVX2_ONLY)
    choice = launch.choose_launch({"speed_settings": "auto"})
    assert choice.overrides == {"use_cpu": True, "dataloader_pin_memory": False, "channels_last": True}
    assert not choice.native_bf16
    assert choice.describe({"speed_settings": "auto"}) == (
        "training on cpu (AMD EPYC 7B13): fp32, channels_last (speed_settings auto: bf16 not native: no AMX-BF16 or "
        "AVX512-BF16)")


def test_auto_is_bf16_channels_last_where_bf16_is_native(cpu_host):
    cpu_host(AMX)
    choice = launch.choose_launch({"speed_settings": "auto"})
    assert choice.overrides == {"use_cpu": True, "dataloader_pin_memory": False, "bf16": True, "channels_last": True}
    assert choice.record({"speed_settings": "auto"}) == {
        "device": "cpu", "processor": AMX[0], "native_bf16": True, "speed_settings": "auto",
        "precision": "bf16 autocast", "channels_last": True, "reason": "bf16 native: amx_bf16"}


def test_a_capped_onednn_isa_is_not_native_bf16(cpu_host, monkeypatch):
    cpu_host(AMX)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # what oneDNN itself then runs: no bf16 instructions
    assert "bf16" not in launch.choose_launch({"speed_settings": "auto"}).overrides


def test_explicit_settings_win_and_off_changes_nothing(cpu_host):
    cpu_host(AVX2_ONLY)
    forced = launch.choose_launch({"speed_settings": "auto", "bf16": True})
    assert "bf16" not in forced.overrides and forced.precision({"bf16": True}) == "bf16 autocast"  # bf16: true is bf16
    off = launch.choose_launch({"bf16": True})  # speed_settings defaults to off
    assert off.overrides == {"use_cpu": True, "dataloader_pin_memory": False}
    cpu_host(AMX)
    assert "bf16" not in launch.choose_launch({"speed_settings": "off"}).overrides


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_a_gpu(monkeypatch, native):
    monkeypatch.setattr(launch, "accelerator_kind", lambda: "cuda")
    monkeypatch.setattr(launch, "_accelerator_name", lambda device: "a GPU")
    monkeypatch.setattr(launch, "_device_native_bf16", lambda device: (native, "mocked"))
    choice = launch.choose_launch({"speed_settings": "auto"})
    # channels_last pays on a GPU only with 16-bit tensor cores
    assert choice.overrides == ({"bf16": True, "channels_last": True} if native else {})
    assert choice.device == "cuda"


def test_python_built_arguments_get_the_choice_without_being_changed(cpu_host, tmp_path):
    cpu_host(AMX)
    args = DistillationConfig(output_dir=str(tmp_path), method="none", speed_settings="auto")
    train, evaluation = learnable_datasets(n_train=32, n_eval=16)
    trainer = DistillationTrainer(model=create_model("resnet8", num_classes=4), args=args, train_dataset=train,
                                  eval_dataset=evaluation)
    assert trainer.args.bf16 and trainer.args.channels_last and trainer.args.use_cpu
    assert not args.bf16 and not args.channels_last and not args.use_cpu


def test_a_run_records_the_choice_and_its_recipe_keeps_auto(cpu_host, tmp_path, capsys):
    cpu_host(AVX2_ONLY)
    data = tmp_path / "data"
    data.mkdir()
    write_image_dataset(data, splits={"train": 32, "test": 16})
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "dataset_name": str(data), "output_dir": str(tmp_path / "out"), "model_name_or_path": "resnet8",
        "method": "none", "num_train_epochs": 1, "per_device_train_batch_size": 16, "lr_decay_epochs": [],
        "save_strategy": "no", "disable_tqdm": True, "speed_settings": "auto"}))
    assert main([str(recipe)]) == 0
    printed = capsys.readouterr().out
    assert "hfkd: stage run: training on cpu (AMD EPYC 7B13): fp32, channels_last (speed_settings auto" in printed
    out = tmp_path / "out"
    (row,) = json.loads((out / "results.json").read_text())  # a one-run recipe: its folder holds the stage table
    record = row["launch"]
    assert record["precision"] == "fp32" and record["channels_last"] is True and record["native_bf16"] is False
    written = yaml.safe_load((out / "recipe.yaml").read_text())
    assert written["speed_settings"] == "auto" and written["channels_last"] is False and written["use_cpu"] is False
    assert "| hardware | training on cpu (AMD EPYC 7B13): fp32, channels_last" in (out / "README.md").read_text()


def test_channels_last_only_where_it_was_measured_faster(cpu_host, monkeypatch):
    cpu_host(AVX2_ONLY)
    monkeypatch.setattr(launch.platform, "machine", lambda: "aarch64")  # a CPU no benchmark here has measured
    choice = launch.choose_launch({"speed_settings": "auto"})
    assert "channels_last" not in choice.overrides and "bf16" not in choice.overrides
