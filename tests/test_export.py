"""export_student's three formats on untrained students, without a training run: what each config.json holds, that
the saved model loads back and predicts what the student predicted, and the refusals (issue 21's mutation run of
``hfkd/export.py``; the training-run versions of these checks are in test_timm_export.py and test_method_simkd.py)."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from torch import nn
from transformers import AutoModelForImageClassification

from hfkd.data.transforms import eval_image_processor
from hfkd.distillation_model import DistillationModel, LossWeights
from hfkd.export import (
    HFKD_FORMAT,
    NATIVE_TIMM,
    NATIVE_TRANSFORMERS,
    _without_num_classes_in_model_args,
    build_export_model,
    distillation_record,
    export_format,
    export_student,
)
from hfkd.models import HfkdForImageClassification, create_model
from hfkd.models.preprocessing import timm_data_config
from hfkd.results import summarize_evaluations
from tests.method_helpers import method_config
from tests.test_model_sources import tiny_resnet_dir

NAMES = ["cat", "dog", "owl"]
RECORD = {"method": "kd", "teacher": "resnet8x4", "results": {}}
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def distillation_model(student: nn.Module, method: str = "kd", side: int = 40) -> DistillationModel:
    """``student`` with ``method`` built from a resnet8x4 teacher on one ``side``-pixel example batch."""
    torch.manual_seed(0)
    teacher = create_model("resnet8x4", num_classes=student.num_classes).eval()
    batch = {"pixel_values": torch.randn(2, 3, side, side)}
    return DistillationModel.build(student, teacher, method_config(method=method), LossWeights(), batch)


def predictions(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(pixels).logits if not isinstance(model, DistillationModel) else (
            model.eval()(pixel_values=pixels)["logits"])


def config_of(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


PIXELS = torch.linspace(-2, 2, 2 * 3 * 40 * 40).reshape(2, 3, 40, 40)


def test_a_zoo_student_exports_as_hfkd_with_its_names_training_side_and_record(tmp_path):
    model = distillation_model(create_model("resnet8", num_classes=3))
    assert (model.image_size, export_format(model)) == (40, HFKD_FORMAT)
    processor = eval_image_processor("cifar", 40, MEAN, STD)
    assert export_student(model, tmp_path / "a", NAMES, processor, RECORD) == tmp_path / "a"
    config = config_of(tmp_path / "a")
    assert (config["model_type"], config["architecture"], config["image_size"]) == ("hfkd", "resnet8", 40)
    assert config["id2label"] == {"0": "cat", "1": "dog", "2": "owl"}
    assert config["label2id"] == {"cat": 0, "dog": 1, "owl": 2}
    assert (config["distillation"], config["prediction_head"]) == (RECORD, None)
    assert json.loads((tmp_path / "a" / "preprocessor_config.json").read_text())["image_mean"] == list(MEAN)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "a")
    assert torch.equal(predictions(reloaded, PIXELS), predictions(model, PIXELS))
    # without names or a processor: the class indices as names, and no preprocessor file
    export_student(model, tmp_path / "b")
    assert config_of(tmp_path / "b")["id2label"] == {"0": "0", "1": "1", "2": "2"}
    assert not (tmp_path / "b" / "preprocessor_config.json").exists()


def test_simkd_exports_its_head_and_a_student_loaded_from_that_export_keeps_it(tmp_path):
    model = distillation_model(create_model("resnet8", num_classes=3), "simkd")
    assert export_format(model) == HFKD_FORMAT
    export_student(model, tmp_path / "simkd", NAMES)
    config = config_of(tmp_path / "simkd")
    assert config["prediction_head"] == model.method.export_head()[0] and config["prediction_head"]["type"] == "simkd"
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "simkd")
    expected = predictions(model, PIXELS)  # the method's prediction: projector + the teacher's classifier
    assert not torch.equal(expected, predictions(model.student, PIXELS))
    assert torch.allclose(predictions(reloaded, PIXELS), expected, atol=1e-5)
    # loaded as a student (no method): still the hfkd format, with the same head
    again = DistillationModel(create_model(str(tmp_path / "simkd")), None, LossWeights())
    assert export_format(again) == HFKD_FORMAT
    export_student(again, tmp_path / "again", NAMES)
    assert config_of(tmp_path / "again")["prediction_head"] == config["prediction_head"]
    reloaded_again = AutoModelForImageClassification.from_pretrained(tmp_path / "again")
    assert torch.allclose(predictions(reloaded_again, PIXELS), expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["timm", "transformers"])
def test_simkd_on_a_timm_or_transformers_student_exports_the_architecture_and_the_head(tmp_path, kind):
    name = "test_efficientnet" if kind == "timm" else str(tiny_resnet_dir(tmp_path))
    model = distillation_model(create_model(name, num_classes=3), "simkd")
    assert export_format(model) == HFKD_FORMAT  # the head needs hfkd's model class
    export_student(model, tmp_path / "simkd", NAMES)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "simkd")
    assert torch.allclose(predictions(reloaded, PIXELS), predictions(model, PIXELS), atol=1e-5)


def test_a_zoo_student_loaded_from_an_export_without_a_head_stays_in_the_hfkd_format(tmp_path):
    model = distillation_model(create_model("resnet8", num_classes=3))
    export_student(model, tmp_path / "first", NAMES)
    again = DistillationModel(create_model(str(tmp_path / "first")), None, LossWeights())
    assert isinstance(again.student, HfkdForImageClassification) and again.student.head is None
    assert export_format(again) == HFKD_FORMAT  # not timm: the wrapped model is a zoo model
    export_student(again, tmp_path / "second", NAMES)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "second")
    assert torch.equal(predictions(reloaded, PIXELS), predictions(model, PIXELS))


def test_a_timm_student_exports_as_a_timm_checkpoint(tmp_path):
    model = distillation_model(create_model("test_efficientnet", num_classes=3))
    assert export_format(model) == NATIVE_TIMM
    export_student(model, tmp_path / "plain", NAMES, distillation=RECORD)
    config = config_of(tmp_path / "plain")
    assert (config["architecture"], config["num_classes"], config["label_names"]) == ("test_efficientnet", 3, NAMES)
    assert config["hfkd_distillation"] == RECORD
    assert "num_classes" not in config.get("model_args", {})  # transformers' TimmWrapper passes it itself
    # no processor: the trained side, squashed, with the architecture's own mean / std
    cfg = config["pretrained_cfg"]
    assert (cfg["input_size"], cfg["crop_pct"], cfg["crop_mode"]) == ([3, 40, 40], 1.0, "squash")
    assert not (tmp_path / "plain" / "preprocessor_config.json").exists()
    # safetensors, not timm's default pickle
    assert {p.name for p in (tmp_path / "plain").iterdir()} == {"config.json", "model.safetensors"}
    loaded = timm.create_model(f"local-dir:{tmp_path / 'plain'}", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(loaded(PIXELS), predictions(model, PIXELS))
    # with a processor: its preprocessing inside pretrained_cfg, and still no processor file beside it
    processor = eval_image_processor("cifar", 40, MEAN, STD)
    export_student(model, tmp_path / "processed", NAMES, processor)
    cfg = config_of(tmp_path / "processed")["pretrained_cfg"]
    expected = timm_data_config(processor)
    assert {key: cfg[key] for key in expected} == {k: list(v) if isinstance(v, tuple) else v for k, v in expected.items()}
    assert not (tmp_path / "processed" / "preprocessor_config.json").exists()


def test_an_hfkd_wrapped_timm_student_without_a_head_exports_as_timm(tmp_path):
    timm_student = create_model("test_efficientnet", num_classes=3)
    wrapped = build_export_model(DistillationModel(timm_student, None, LossWeights()))
    assert isinstance(wrapped, HfkdForImageClassification) and wrapped.head is None
    model = DistillationModel(wrapped, None, LossWeights())
    assert export_format(model) == NATIVE_TIMM
    export_student(model, tmp_path / "timm", NAMES)
    assert config_of(tmp_path / "timm")["architecture"] == "test_efficientnet"


def test_a_transformers_student_exports_as_itself(tmp_path):
    model = distillation_model(create_model(str(tiny_resnet_dir(tmp_path)), num_classes=3))
    assert export_format(model) == NATIVE_TRANSFORMERS
    processor = eval_image_processor("cifar", 40, MEAN, STD)
    export_student(model, tmp_path / "hf", NAMES, processor, RECORD)
    config = config_of(tmp_path / "hf")
    assert (config["model_type"], config["architectures"]) == ("resnet", ["ResNetForImageClassification"])
    assert config["id2label"] == {"0": "cat", "1": "dog", "2": "owl"} and config["label2id"]["owl"] == 2
    assert config["hfkd_distillation"] == RECORD
    assert (tmp_path / "hf" / "preprocessor_config.json").exists()
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "hf")
    assert torch.equal(predictions(reloaded, PIXELS), predictions(model, PIXELS))


@pytest.mark.parametrize("student", ["resnet8", "test_efficientnet", "transformers"])
def test_class_names_that_do_not_match_the_class_count_are_refused_in_every_format(tmp_path, student):
    name = str(tiny_resnet_dir(tmp_path)) if student == "transformers" else student
    model = DistillationModel(create_model(name, num_classes=3), None, LossWeights())
    with pytest.raises(ValueError) as refused:
        export_student(model, tmp_path / "out", ["a", "b"])
    assert str(refused.value) == "2 class names for a model with 3 classes"
    assert not (tmp_path / "out").exists()


def test_a_student_without_a_recorded_architecture_is_refused():
    model = DistillationModel(nn.Linear(4, 3), None, LossWeights())
    with pytest.raises(ValueError) as refused:
        build_export_model(model)
    assert str(refused.value) == (
        "cannot export a Linear: build students with hfkd.models.create_model so that their architecture is recorded"
    )


@pytest.mark.parametrize("written, kept", [
    ({"architecture": "x", "num_classes": 3, "model_args": {"num_classes": 3, "drop_rate": 0.1}},
     {"architecture": "x", "num_classes": 3, "model_args": {"drop_rate": 0.1}}),
    ({"architecture": "x", "num_classes": 3, "model_args": {"num_classes": 3}}, {"architecture": "x", "num_classes": 3}),
    ({"architecture": "x", "num_classes": 3, "model_args": {"drop_rate": 0.1}}, None),
    ({"architecture": "x", "num_classes": 3}, None),
])
def test_num_classes_leaves_timm_model_args_and_nothing_else_changes(tmp_path, written, kept):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(written))
    before = path.read_text()
    _without_num_classes_in_model_args(path)
    if kept is None:
        assert path.read_text() == before  # not rewritten
    else:
        assert json.loads(path.read_text()) == kept


def test_the_distillation_record_holds_the_method_teacher_weights_and_results():
    model = DistillationModel(create_model("resnet8", num_classes=3), None,
                              LossWeights(cls=0.5, div=0.25, beta=3.0, kd_temperature=2.0))
    history = [{"epoch": 1.0, "eval_top1": 40.0, "eval_loss": 1.2, "step": 5},
               {"epoch": 2.0, "eval_top1": 55.5, "eval_loss": 1.0, "step": 10}]
    record = distillation_record(model, "dkd", "resnet32x4", history)
    assert record == {"method": "dkd", "teacher": "resnet32x4", "cls": 0.5, "div": 0.25, "beta": 3.0,
                      "kd_temperature": 2.0, "results": summarize_evaluations(history)}
    assert record["results"]  # the evaluations were summarised, not dropped
