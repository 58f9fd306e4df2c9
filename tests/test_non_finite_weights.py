"""A checkpoint is only written, and only named as safe, when every parameter and buffer is finite: BatchNorm's
running statistics overflow in the forward pass while the loss still reads finite (--learning_rate 1e6 named
checkpoint-3 as safe although it held infinite running variances, and a resume from it stopped again)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hfkd.errors import NonFiniteLossError
from hfkd.models import create_model
from hfkd.non_finite import NonFiniteLossGuard
from hfkd.run import main
from tests.refusals import files_under, refusal, tiny_recipe


def non_finite(path: Path) -> list[str]:
    return [k for k, v in load_file(path).items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


@pytest.mark.parametrize("where, name", [("buffer", "bn1.running_var"), ("parameter", "layer1.0.conv1.weight")])
def test_the_guard_names_a_non_finite_buffer_or_parameter(tmp_path, where, name):
    model = create_model("resnet8", num_classes=4)
    guard = NonFiniteLossGuard()
    guard.raise_if_weights_non_finite(model, 3, str(tmp_path))  # all finite: no error
    tensor = model.get_parameter(name) if where == "parameter" else model.get_buffer(name)
    with torch.no_grad():
        tensor.view(-1)[0] = float("inf")
    with pytest.raises(NonFiniteLossError) as err:
        guard.raise_if_weights_non_finite(model, 3, str(tmp_path))
    assert str(err.value) == (f"training stopped: the model's {name} became nan or inf by step 3 (the loss was still "
                              f"finite); no checkpoint was written; lower the learning rate or check the data")


def test_a_huge_learning_rate_stops_before_a_checkpoint_holds_infinite_running_statistics(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    code = main([str(recipe), "--learning_rate", "1e6", "--save_strategy", "steps", "--save_steps", "1",
                 "--num_train_epochs", "4", "--save_total_limit", "10"])
    error = refusal(capsys, code)
    named = re.search(r"the last checkpoint, (\S+), is from before it", error)
    assert named and "became nan or inf" in error, error
    checkpoints = sorted((tmp_path / "out").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert checkpoints and str(checkpoints[-1]) == named.group(1)  # the newest one written is the one named
    for checkpoint in checkpoints:  # every checkpoint written, parameters and buffers, is finite
        assert non_finite(checkpoint / "model.safetensors") == []


def test_resuming_from_a_checkpoint_with_infinite_buffers_is_refused(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, save_strategy="epoch")
    assert main([str(recipe)]) == 0
    out = tmp_path / "out"
    weights = out / "checkpoint-2" / "model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if k.endswith("running_var"))
    tensors[name] = torch.full_like(tensors[name], float("inf"))
    save_file(tensors, weights, metadata={"format": "pt"})
    before = files_under(out)
    error = refusal(capsys, main([str(recipe), "--resume_from_checkpoint", "true", "--num_train_epochs", "2"]))
    assert error == (f"hfkd: error: checkpoint file {str(weights)!r} holds non-finite values (in {name}); resume from "
                     f"an earlier checkpoint")
    assert files_under(out) == before
