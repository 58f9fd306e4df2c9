"""A distilled timm student exports as a timm checkpoint (``timm.models.save_for_hf``'s layout) and loads back the
four ways: timm ``local-dir:``, transformers (``TimmWrapperForImageClassification`` and the pipeline), hfkd's
``create_model`` (as a teacher or a student again), and ``hf-hub:`` after ``hfkd push`` to the local Hub server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, pipeline

from hfkd.config import DistillationConfig
from hfkd.data.transforms import cifar_eval_transform, eval_image_processor, imagenet_eval_transform
from hfkd.export import distillation_record
from hfkd.hub import _usage_for_repo
from hfkd.models import Preprocessing, TimmFeatureClassifier, create_model, provenance_of
from hfkd.models.preprocessing import timm_data_config
from hfkd.trainer import DistillationTrainer
from tests.conftest import MEAN, STD, learnable_datasets, learnable_images
from tests.hub_server import run_hub_client

NAMES = ["a", "b", "c", "d"]
FIXED_INPUT = "torch.linspace(-2, 2, 3 * 32 * 32).reshape(1, 3, 32, 32)"


def fixed_input() -> torch.Tensor:
    return torch.linspace(-2, 2, 3 * 32 * 32).reshape(1, 3, 32, 32)


def make_trainer(method: str, output_dir: Path, student="test_efficientnet", teacher="test_resnet"):
    data = learnable_datasets(n_train=48, n_eval=32)
    args = DistillationConfig(output_dir=str(output_dir), method=method, num_train_epochs=1,
                              per_device_train_batch_size=16, per_device_eval_batch_size=32, lr_decay_epochs=[],
                              learning_rate=0.01, save_strategy="no", disable_tqdm=True, seed=0)
    return DistillationTrainer(
        model=create_model(student, num_classes=4) if isinstance(student, str) else student,
        teacher=create_model(teacher, num_classes=4).eval(), args=args, train_dataset=data[0], eval_dataset=data[1],
        processing_class=eval_image_processor("cifar", 32, MEAN, STD), class_names=NAMES,
    )


def predict(trainer, pixel_values: torch.Tensor) -> torch.Tensor:
    """The trainer's evaluation prediction (the student's logits)."""
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    with torch.no_grad():
        return model(pixel_values=pixel_values)["logits"]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """A test_efficientnet student distilled from test_resnet with KD, exported with its card."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("timm_export")
    trainer = make_trainer("kd", root / "run")
    trainer.train()
    export = root / "export"
    trainer.save_model(str(export))
    trainer.create_model_card(output_dir=str(export))
    images, _ = learnable_images(4, 4, seed=5)
    return {
        "trainer": trainer,
        "export": export,
        "expected": predict(trainer, fixed_input())[0],
        "images": images,
        "image_logits": predict(trainer, cifar_eval_transform(MEAN, STD)(images)),
        "record": distillation_record(trainer.accelerator.unwrap_model(trainer.model), "kd", "test_resnet",
                                      trainer.state.log_history),
    }


def test_export_is_a_timm_checkpoint_with_the_distillation_record(distilled):
    export = distilled["export"]
    assert {p.name for p in export.iterdir()} == {"config.json", "model.safetensors", "README.md",
                                                   "training_curves.png"}
    config = json.loads((export / "config.json").read_text())
    assert "model_type" not in config
    assert config["architecture"] == "test_efficientnet"
    assert config["num_classes"] == 4 and config["label_names"] == NAMES
    student = distilled["trainer"].accelerator.unwrap_model(distilled["trainer"].model).student
    assert config["num_features"] == student.num_features
    assert "num_classes" not in config.get("model_args", {})  # transformers' TimmWrapper passes its own
    cfg = config["pretrained_cfg"]
    # hfkd's evaluation preprocessing: the learnable data's statistics, 32 px, no resize of 32 px images
    assert cfg["mean"] == pytest.approx(MEAN) and cfg["std"] == pytest.approx(STD)
    assert cfg["input_size"] == [3, 32, 32]
    assert (cfg["crop_pct"], cfg["crop_mode"], cfg["interpolation"]) == (1.0, "squash", "bilinear")
    record = config["hfkd_distillation"]
    assert record == json.loads(json.dumps(distilled["record"]))
    eval_top1 = [h["eval_top1"] for h in distilled["trainer"].state.log_history if "eval_top1" in h][-1]
    assert record["method"] == "kd" and record["teacher"] == "test_resnet"
    assert record["results"]["top1_last"] == pytest.approx(eval_top1)
    # timm's own state-dict keys, the exact trained tensors
    weights = load_file(export / "model.safetensors")
    trained = student.model.state_dict()
    assert set(weights) == set(trained) and "conv_stem.weight" in weights
    assert all(torch.equal(weights[k], trained[k]) for k in trained)


def test_timm_local_dir_loads_the_student(distilled):
    model = timm.create_model("local-dir:" + str(distilled["export"]), pretrained=True).eval()
    assert model.num_classes == 4
    with torch.no_grad():
        assert torch.allclose(model(fixed_input())[0], distilled["expected"], atol=1e-5)
    data_config = timm.data.resolve_data_config(model=model)
    assert data_config["input_size"] == (3, 32, 32)
    assert tuple(data_config["mean"]) == pytest.approx(MEAN) and tuple(data_config["std"]) == pytest.approx(STD)


def test_transformers_auto_model_and_pipeline_load_the_student(distilled):
    export = str(distilled["export"])
    model = AutoModelForImageClassification.from_pretrained(export).eval()
    assert type(model).__name__ == "TimmWrapperForImageClassification"
    assert model.config.id2label == dict(enumerate(NAMES))
    assert model.config.hfkd_distillation["method"] == "kd"
    with torch.no_grad():
        assert torch.allclose(model(pixel_values=fixed_input()).logits[0], distilled["expected"], atol=1e-5)
    classify = pipeline("image-classification", model=export)
    assert type(classify.image_processor).__name__ == "TimmWrapperImageProcessor"
    # the pipeline preprocesses PIL images as hfkd's evaluation does: same class probabilities
    pictures = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in distilled["images"]]
    expected = distilled["image_logits"].softmax(-1)
    for picture, probabilities in zip(pictures, expected):
        scores = {p["label"]: p["score"] for p in classify(picture, top_k=4)}
        assert set(scores) == set(NAMES)
        assert torch.allclose(torch.tensor([scores[n] for n in NAMES]), probabilities, atol=1e-5)


def test_hfkd_create_model_loads_the_export_as_a_timm_model(distilled):
    export = str(distilled["export"])
    model = create_model(export)
    assert isinstance(model, TimmFeatureClassifier) and not model.training
    provenance = provenance_of(model)
    assert provenance.architecture == "timm:test_efficientnet" and provenance.source == export
    assert provenance.preprocessing == Preprocessing(tuple(MEAN), tuple(STD), 32)
    # how it was made travels with it, so a card distilled from it can quote the teacher's own top-1
    assert provenance.distillation["method"] == "kd"
    assert provenance.distillation["results"]["top1_last"] == distilled["record"]["results"]["top1_last"]
    from hfkd.train import recorded_teacher_accuracy

    top1 = distilled["record"]["results"]["top1_last"]
    assert recorded_teacher_accuracy(model) == (pytest.approx(top1), "last epoch, from its hfkd export")
    with torch.no_grad():
        out = model(fixed_input(), return_features=True)
    assert torch.allclose(out.logits[0], distilled["expected"], atol=1e-5)
    assert torch.allclose(model.classifier(out.feats[-1]), out.logits, atol=1e-6)
    assert create_model(export, num_classes=6).num_classes == 6  # a new head for another dataset
    same = create_model("local-dir:" + export).eval()  # timm's own spelling of the folder
    with torch.no_grad():
        assert torch.allclose(same(fixed_input()).logits[0], distilled["expected"], atol=1e-5)


def test_the_export_is_a_teacher_and_a_simkd_student_again(distilled, tmp_path):
    export = str(distilled["export"])
    # as a teacher: its logits reach the KD term unchanged
    trainer = make_trainer("kd", tmp_path / "kd", student="resnet8", teacher=export)
    with torch.no_grad():
        assert torch.allclose(trainer.teacher(fixed_input()).logits[0], distilled["expected"], atol=1e-5)
    # as a SimKD student: exported as hfkd (projector + teacher head), rebuilt from the recorded timm arguments
    trainer = make_trainer("simkd", tmp_path / "simkd", student=create_model(export))
    trainer.train()
    trainer.save_model(str(tmp_path / "simkd_export"))
    config = json.loads((tmp_path / "simkd_export" / "config.json").read_text())
    assert config["model_type"] == "hfkd" and config["architecture"] == "timm:test_efficientnet"
    assert config["prediction_head"] is not None
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "simkd_export").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(fixed_input()).logits[0], predict(trainer, fixed_input())[0], atol=1e-5)


def test_channels_last_student_exports_contiguous_weights_and_stays_channels_last(tmp_path):
    torch.manual_seed(0)
    trainer = make_trainer("kd", tmp_path / "run")
    trainer.model.to(memory_format=torch.channels_last)
    expected = predict(trainer, fixed_input())
    trainer.save_model(str(tmp_path / "export"))
    model = timm.create_model("local-dir:" + str(tmp_path / "export"), pretrained=True).eval()
    with torch.no_grad():
        assert torch.allclose(model(fixed_input()), expected, atol=1e-5)
    student = trainer.accelerator.unwrap_model(trainer.model).student.model
    assert student.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("preset", ["cifar", "imagenet"])
def test_timm_preprocessing_is_hfkd_evaluation(preset):
    """The pretrained_cfg written for each preset makes transformers' timm image processor compute exactly the
    tensors of hfkd's evaluation transform."""
    from transformers import TimmWrapperImageProcessor

    size = 32 if preset == "cifar" else 224
    data_config = timm_data_config(eval_image_processor(preset, size, MEAN, STD))
    assert data_config["interpolation"] == "bilinear"
    assert data_config["crop_pct"] == pytest.approx(1.0 if preset == "cifar" else 224 / 256)
    processor = TimmWrapperImageProcessor(pretrained_cfg=data_config)
    if preset == "cifar":
        images, _ = learnable_images(2, 4, seed=3)
        expected = cifar_eval_transform(MEAN, STD)(images)
        pictures = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images]
    else:
        generator = torch.Generator().manual_seed(0)
        pictures = [Image.fromarray(torch.randint(0, 256, (260, 300, 3), generator=generator, dtype=torch.uint8)
                                    .numpy())]
        expected = torch.stack([imagenet_eval_transform(MEAN, STD, size)(p) for p in pictures])
    got = processor(pictures)["pixel_values"]
    assert got.shape == expected.shape == (len(pictures), 3, size, size)
    assert torch.allclose(got, expected, atol=1e-5)


def test_card_names_timm_and_its_usage(distilled):
    export = distilled["export"]
    card = ModelCard.load(export / "README.md")
    assert card.data.library_name == "timm" and "custom_code" not in card.data.tags
    assert f'timm.create_model("local-dir:{export}", pretrained=True)' in card.text
    assert f'pipeline("image-classification", model="{export}")' in card.text
    pushed = _usage_for_repo(card.content, "someone/student")
    assert 'timm.create_model("hf-hub:someone/student", pretrained=True)' in pushed
    assert 'pipeline("image-classification", model="someone/student")' in pushed and str(export) not in pushed


def test_hub_round_trip_of_a_timm_export(hub_server, distilled, tmp_path):
    repo = f"{hub_server.user}/test-efficientnet-kd"
    code = f"""
        import torch, timm
        from huggingface_hub import ModelCard
        from transformers import AutoModelForImageClassification, pipeline
        from hfkd.hub import push_run
        from hfkd.models import create_model, provenance_of
        push_run({str(distilled["export"])!r}, {repo!r})
        out = {{}}
        model = timm.create_model("hf-hub:{repo}", pretrained=True).eval()
        hf_model = AutoModelForImageClassification.from_pretrained({repo!r}).eval()
        hfkd_model = create_model({repo!r})
        with torch.no_grad():
            out["timm"] = model({FIXED_INPUT})[0].tolist()
            out["transformers"] = hf_model(pixel_values={FIXED_INPUT}).logits[0].tolist()
            out["hfkd"] = hfkd_model({FIXED_INPUT}).logits[0].tolist()
        out["num_classes"] = model.num_classes
        out["hfkd_kind"] = type(hfkd_model).__name__
        out["hfkd_architecture"] = provenance_of(hfkd_model).architecture
        classify = pipeline("image-classification", model={repo!r})
        out["processor"] = type(classify.image_processor).__name__
        out["labels"] = sorted(p["label"] for p in classify(__import__("PIL.Image").Image.new("RGB", (32, 32))))
        card = ModelCard.load({repo!r})
        out["library"], out["card"] = card.data.library_name, card.text
        emit(out)
    """
    pulled = run_hub_client(hub_server, tmp_path / "home", code)
    assert set(hub_server.repo_files(repo)) - {".gitattributes"} == {"config.json", "model.safetensors", "README.md",
                                                                     "training_curves.png"}
    for way in ("timm", "transformers", "hfkd"):
        assert torch.allclose(torch.tensor(pulled[way]), distilled["expected"], atol=1e-5), way
    assert pulled["num_classes"] == 4 and pulled["labels"] == NAMES
    assert (pulled["hfkd_kind"], pulled["hfkd_architecture"]) == ("TimmFeatureClassifier", "timm:test_efficientnet")
    assert pulled["processor"] == "TimmWrapperImageProcessor"  # from the pretrained_cfg, as locally
    assert pulled["library"] == "timm"
    assert f'timm.create_model("hf-hub:{repo}", pretrained=True)' in pulled["card"]
    assert f'pipeline("image-classification", model="{repo}")' in pulled["card"]
