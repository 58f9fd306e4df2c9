"""DeiT (Touvron et al., ICML 2021): class head on the labels, distillation head on the teacher, checked against the
paper's equations (2) and (3) written out by hand; a DeiT-with-teacher as student and as teacher; the export."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from transformers import (
    AutoModelForImageClassification,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    pipeline,
)

from hfkd.data.transforms import cifar_eval_transform, eval_image_processor
from hfkd.distillation_model import DistillationModel, LossWeights, resolve_loss_weights
from hfkd.errors import IncompatibleSetupError, RecipeError
from hfkd.export import NATIVE_TRANSFORMERS, export_format
from hfkd.methods import METHODS, build_method
from hfkd.methods.deit import DeiT
from hfkd.methods.kd import KD
from hfkd.models import ClassifierOutput, DeiTFeatureClassifier, create_model, provenance_of
from hfkd.trainer import DistillationTrainer
from tests.conftest import MEAN, STD, learnable_datasets, learnable_images
from tests.method_helpers import (
    LABELS,
    STUDENT,
    TEACHER,
    FixedStudent,
    hand_ce,
    hand_kd,
    make_method,
    method_config,
)

NAMES = ["a", "b", "c", "d"]
# the two heads of a stand-in DeiT student, [3, 4] each (TEACHER and LABELS from method_helpers)
CLS = [[1.0, -0.5, 0.2, 0.4], [0.3, 0.1, 1.2, -1.0], [-1.0, 2.0, 0.5, 0.0]]
DIST = [[0.2, 1.5, -0.3, 0.0], [-0.7, 2.2, 0.4, 0.1], [0.5, 0.5, -2.0, 1.5]]


def deit_config(**overrides) -> DeiTConfig:
    """A tiny DeiT with a distillation token: 32 px, 8 px patches (16 patches + 2 tokens), width 32, one layer."""
    values = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=64, num_labels=4, architectures=["DeiTForImageClassificationWithTeacher"])
    return DeiTConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def deit_folder(tmp_path_factory) -> str:
    """A folder holding only a DeiTConfig config.json that names the with-teacher class (random init on load)."""
    folder = tmp_path_factory.mktemp("deit_config")
    deit_config().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def deit_weights(tmp_path_factory) -> str:
    """A saved DeiTForImageClassificationWithTeacher (seed 3), as a teacher or a student with weights."""
    folder = tmp_path_factory.mktemp("deit_weights")
    torch.manual_seed(3)
    DeiTForImageClassificationWithTeacher(deit_config()).save_pretrained(folder)
    return str(folder)


class TwoHeadStudent(nn.Module):
    """A stand-in DeiT student: fixed class-head and distillation-head logits, each plus its own trainable offset;
    its logits are their mean, as DeiTForImageClassificationWithTeacher's are."""

    head_names = ("cls", "distillation")

    def __init__(self, cls_logits, distillation_logits) -> None:
        super().__init__()
        self.heads = {"cls": torch.tensor(cls_logits), "distillation": torch.tensor(distillation_logits)}
        self.offsets = nn.ParameterDict({name: nn.Parameter(torch.zeros(4)) for name in self.heads})

    def forward(self, pixel_values, return_features=False):
        heads = {name: logits + self.offsets[name] for name, logits in self.heads.items()}
        return ClassifierOutput(logits=(heads["cls"] + heads["distillation"]) / 2, head_logits=heads)


def run_deit(weights: LossWeights, mode: str = "hard"):
    """DistillationModel (training mode) with DeiT on the stand-in student; returns (model, outputs)."""
    model = DistillationModel(TwoHeadStudent(CLS, DIST), DeiT(mode), weights).train()
    out = model(torch.zeros(3, 3, 4, 4), labels=torch.tensor(LABELS),
                teacher_outputs=ClassifierOutput(logits=torch.tensor(TEACHER)))
    return model, out


def mean_of_heads():
    return [[(a + b) / 2 for a, b in zip(c, d)] for c, d in zip(CLS, DIST)]


# ---- the loss against the paper's equations ----------------------------------------------------------------------


def test_hard_loss_is_equation_3_on_the_two_heads():
    """L = 1/2 CE(Z_cls, y) + 1/2 CE(Z_dist, y_t), y_t = argmax_c Z_t(c)."""
    _, out = run_deit(LossWeights(cls=0.5, div=0.0, beta=0.5))
    teacher_labels = [row.index(max(row)) for row in TEACHER]
    assert teacher_labels == [0, 1, 1]
    ce, hard = hand_ce(CLS, LABELS), hand_ce(DIST, teacher_labels)
    assert set(out["terms"]) == {"ce", "deit"}
    assert out["terms"]["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out["terms"]["deit"].item() == pytest.approx(hard, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.5 * ce + 0.5 * hard, rel=1e-5)
    # each term read its own head: not the other head, not the mean of both (the model's logits)
    assert ce != pytest.approx(hand_ce(DIST, LABELS), rel=1e-3)
    assert ce != pytest.approx(hand_ce(mean_of_heads(), LABELS), rel=1e-3)
    assert hard != pytest.approx(hand_ce(CLS, teacher_labels), rel=1e-3)
    assert hard != pytest.approx(hand_ce(mean_of_heads(), teacher_labels), rel=1e-3)
    assert torch.allclose(out["logits"], torch.tensor(mean_of_heads()))


def test_soft_loss_is_equation_2_on_the_two_heads():
    """L = (1 - lambda) CE(Z_cls, y) + lambda tau^2 KL(softmax(Z_t / tau) || softmax(Z_dist / tau)), batch mean."""
    _, out = run_deit(LossWeights(cls=0.9, div=0.1, beta=0.0, kd_temperature=3.0), mode="soft")
    ce, kd = hand_ce(CLS, LABELS), hand_kd(DIST, TEACHER, 3.0)
    assert set(out["terms"]) == {"ce", "kd"}
    assert out["terms"]["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out["terms"]["kd"].item() == pytest.approx(kd, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.9 * ce + 0.1 * kd, rel=1e-5)
    assert kd != pytest.approx(hand_kd(CLS, TEACHER, 3.0), rel=1e-3)
    assert kd != pytest.approx(hand_kd(mean_of_heads(), TEACHER, 3.0), rel=1e-3)


def test_each_term_trains_only_its_head():
    """The label term's gradient reaches only the class head, the teacher terms' only the distillation head."""
    for weights, trained in [
        (LossWeights(cls=1.0, div=0.0, beta=0.0), {"cls"}),
        (LossWeights(cls=0.0, div=0.0, beta=1.0), {"distillation"}),
        (LossWeights(cls=0.0, div=1.0, beta=0.0), {"distillation"}),
        (LossWeights(cls=0.5, div=0.0, beta=0.5), {"cls", "distillation"}),
    ]:
        model, out = run_deit(weights)
        out["loss"].backward()
        got = {name for name, offset in model.student.offsets.items() if offset.grad is not None
               and offset.grad.abs().sum() > 0}
        assert got == trained, weights
    assert sum(p.numel() for p in DeiT().parameters()) == 0


def test_prediction_is_the_mean_of_the_two_heads():
    model = DistillationModel(TwoHeadStudent(CLS, DIST), DeiT(), LossWeights(cls=0.5, div=0.0, beta=0.5)).eval()
    assert torch.allclose(model(torch.zeros(3, 3, 4, 4))["logits"], torch.tensor(mean_of_heads()))


# ---- weights and settings ------------------------------------------------------------------------------------------


def test_default_weights_depend_on_the_mode(tmp_path):
    hard = resolve_loss_weights(method_config(tmp_path, method="deit"))
    assert (hard.cls, hard.div, hard.beta, hard.kd_temperature) == (0.5, 0.0, 0.5, 4.0)
    soft = resolve_loss_weights(method_config(tmp_path, method="deit", deit_distillation="soft", kd_temperature=3))
    assert (soft.cls, soft.div, soft.beta, soft.kd_temperature) == (0.9, 0.1, 0.0, 3.0)
    mixed = resolve_loss_weights(method_config(tmp_path, method="deit", deit_distillation="soft", beta=0.2))
    assert (mixed.cls, mixed.div, mixed.beta) == (0.9, 0.1, 0.2)  # set weights win over the mode's
    assert (DeiT.default_cls, DeiT.default_div, DeiT.default_beta) == (0.5, 0.0, 0.5)
    assert (DeiT.ce_head, DeiT.kd_head) == ("cls", "distillation") and METHODS["deit"] is DeiT
    method = build_method("deit", TwoHeadStudent(CLS, DIST), None, method_config(tmp_path, deit_distillation="soft"),
                          None)
    assert isinstance(method, DeiT) and method.mode == "soft"
    with pytest.raises(RecipeError, match="^deit_distillation 'medium' is not one of 'hard', 'soft'$"):
        method_config(tmp_path, method="deit", deit_distillation="medium")


def test_every_other_method_keeps_its_class_defaults(tmp_path):
    for name, method in METHODS.items():
        if name != "deit":
            config = method_config(tmp_path, method=name)
            assert method.default_weights(config) == (method.default_cls, method.default_div, method.default_beta)
            assert method.ce_head is None and method.kd_head is None


def test_bf16_autocast_on_cpu_matches_fp32(deit_weights):
    """Every term (ce, kd, deit) of a real DeiT student is fp32 under bf16 autocast and close to its fp32 value."""
    torch.manual_seed(0)
    student, teacher = create_model(deit_weights), create_model("resnet8", num_classes=4).eval()
    model = DistillationModel(student, DeiT(), LossWeights(cls=0.5, div=0.5, beta=0.5)).train()
    train, _ = learnable_datasets(n_train=32, n_eval=4)
    batch = train.__getitems__(list(range(32)))
    values = {}
    for precision in ("fp32", "bf16"):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            with torch.no_grad():
                teacher_out = teacher(batch["pixel_values"])
            out = model(**batch, teacher_outputs=teacher_out)
        assert out["loss"].dtype == torch.float32 and set(out["terms"]) == {"ce", "kd", "deit"}
        values[precision] = {"loss": out["loss"].item(), **{k: v.item() for k, v in out["terms"].items()}}
    for name, reference in values["fp32"].items():
        assert values["bf16"][name] == pytest.approx(reference, rel=5e-2, abs=1e-3), name


# ---- which models it takes -------------------------------------------------------------------------------------------


def test_create_model_wraps_a_deit_with_teacher(deit_folder, deit_weights):
    pixels = torch.randn(2, 3, 32, 32)
    for source in (deit_folder, deit_weights):
        model = create_model(source, num_classes=4)
        assert isinstance(model, DeiTFeatureClassifier) and model.num_classes == 4
        assert model.classifier is model.model.cls_classifier
        out = model.eval()(pixels, return_features=True)
        raw = model.model(pixel_values=pixels)
        assert torch.equal(out.logits, raw.logits)
        assert torch.equal(out.head_logits["cls"], raw.cls_logits)
        assert torch.equal(out.head_logits["distillation"], raw.distillation_logits)
        # hidden states [B, 2 + 16, 32], then the class-token vector the class head reads
        assert [tuple(f.shape) for f in out.feats] == [(2, 18, 32), (2, 18, 32), (2, 32)]
        assert torch.allclose(model.classifier(out.feats[-1]), raw.cls_logits, atol=1e-6)
        assert not torch.allclose(model.classifier(out.feats[-1]), raw.logits, atol=1e-3)
        assert model(pixels).feats is None and model(pixels).head_logits is not None


def test_a_student_without_the_two_heads_is_refused_in_one_sentence(deit_folder, tmp_path):
    resnet = create_model("resnet8", num_classes=4)
    with pytest.raises(IncompatibleSetupError) as err:
        DistillationTrainer(model=resnet, teacher=create_model("resnet8", num_classes=4).eval(),
                            args=method_config(tmp_path, method="deit"), train_dataset=learnable_datasets(32, 4)[0])
    message = str(err.value)
    assert message.startswith("method 'deit' trains the student's 'cls' and 'distillation' heads, but the student "
                              "'resnet8' has a single head; use a DeiT with a distillation token as the student")
    assert "DeiTForImageClassificationWithTeacher" in message and "\n" not in message
    # a plain DeiT (one head, DeiTForImageClassification) is refused the same way
    plain = tmp_path / "plain"
    deit_config(architectures=["DeiTForImageClassification"]).save_pretrained(plain)
    with pytest.raises(IncompatibleSetupError, match="has a single head"):
        make_method("deit", create_model(str(plain)), resnet)


@pytest.mark.parametrize("method", ["srrl", "simkd"])
def test_head_reusing_methods_refuse_a_deit_teacher_in_one_sentence(method, deit_weights):
    teacher = create_model(deit_weights).eval()
    with pytest.raises(IncompatibleSetupError) as err:
        make_method(method, create_model("resnet8", num_classes=4), teacher)
    message = str(err.value)
    assert message.startswith(f"{method} ") and "\n" not in message


def test_a_deit_with_teacher_teaches_kd_with_its_averaged_logits(deit_weights, tmp_path):
    teacher = create_model(deit_weights).eval()
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        teacher_out = teacher(pixels)
        raw = teacher.model(pixel_values=pixels)
    assert torch.allclose(teacher_out.logits, (raw.cls_logits + raw.distillation_logits) / 2)
    model = DistillationModel(FixedStudent(STUDENT), KD(), LossWeights(cls=0.0, div=1.0)).train()
    out = model(pixels, labels=torch.tensor(LABELS), teacher_outputs=teacher_out)
    assert out["terms"]["kd"].item() == pytest.approx(hand_kd(STUDENT, teacher_out.logits.tolist(), 4.0), rel=1e-5)
    # and trains a resnet8 through the trainer
    train, _ = learnable_datasets(n_train=32, n_eval=4)
    trainer = DistillationTrainer(model=create_model("resnet8", num_classes=4), teacher=teacher,
                                  args=method_config(tmp_path, method="kd", num_train_epochs=1), train_dataset=train)
    trainer.train()
    (log,) = [h for h in trainer.state.log_history if "loss_kd" in h]
    assert torch.isfinite(torch.tensor(log["loss_kd"])) and log["loss_kd"] > 0


# ---- a short run and its export ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def distilled(deit_folder, tmp_path_factory):
    """A DeiT-with-teacher student (from the config folder) distilled with hard DeiT from a resnet8 teacher, for two
    epochs of 64 learnable 32 px images (one log per step), exported with its card."""
    root = tmp_path_factory.mktemp("deit_run")
    torch.manual_seed(0)
    student = create_model(deit_folder, num_classes=4)
    initial = {k: v.clone() for k, v in student.model.state_dict().items()}
    teacher = create_model("resnet8", num_classes=4).eval()
    train, evaluation = learnable_datasets(n_train=64, n_eval=32)
    args = method_config(root, method="deit", learning_rate=0.01, optim="adamw_torch", optim_args=None,
                         per_device_train_batch_size=16, eval_strategy="epoch", logging_strategy="steps",
                         logging_steps=1)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=train,
                                  eval_dataset=evaluation, class_names=NAMES,
                                  processing_class=eval_image_processor("cifar", 32, MEAN, STD))
    trainer.train()
    export = root / "export"
    trainer.save_model(str(export))
    trainer.create_model_card(output_dir=str(export))
    images, _ = learnable_images(4, 4, seed=5)
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    with torch.no_grad():
        image_logits = model(pixel_values=cifar_eval_transform(MEAN, STD)(images))["logits"]
    return {"trainer": trainer, "model": model, "initial": initial, "export": export, "images": images,
            "image_logits": image_logits}


def test_short_run_logs_the_deit_and_ce_terms(distilled):
    trainer = distilled["trainer"]
    model = distilled["model"]
    assert isinstance(model.method, DeiT) and isinstance(model.student, DeiTFeatureClassifier)
    assert (model.weights.cls, model.weights.div, model.weights.beta) == (0.5, 0.0, 0.5)
    logs = [h for h in trainer.state.log_history if "loss_deit" in h]
    assert len(logs) == 8  # 2 epochs of 4 steps
    for log in logs:
        assert set(k for k in log if k.startswith("loss_")) == {"loss_ce", "loss_deit"}
        assert log["loss"] == pytest.approx(0.5 * log["loss_ce"] + 0.5 * log["loss_deit"], rel=1e-4)
    # the distillation head learns the teacher's (fixed) labels: the mean of the second epoch is below the first's
    first, second = (sum(log["loss_deit"] for log in logs[i:i + 4]) / 4 for i in (0, 4))
    assert second < first, [log["loss_deit"] for log in logs]
    evaluations = [h["eval_top1"] for h in trainer.state.log_history if "eval_top1" in h]
    assert len(evaluations) == 2 and all(0 <= top1 <= 100 for top1 in evaluations)


def test_export_is_the_transformers_deit_with_both_heads(distilled):
    export, model = distilled["export"], distilled["model"]
    assert export_format(model) == NATIVE_TRANSFORMERS
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= {
        p.name for p in export.iterdir()}
    config = json.loads((export / "config.json").read_text())
    assert config["model_type"] == "deit" and config["architectures"] == ["DeiTForImageClassificationWithTeacher"]
    record = config["hfkd_distillation"]
    assert (record["method"], record["cls"], record["div"], record["beta"]) == ("deit", 0.5, 0.0, 0.5)

    reloaded = AutoModelForImageClassification.from_pretrained(export).eval()
    assert type(reloaded) is DeiTForImageClassificationWithTeacher
    assert reloaded.config.id2label == dict(enumerate(NAMES))
    pixels = torch.linspace(-2, 2, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values=pixels)["logits"]  # the trainer's evaluation prediction
        got = reloaded(pixel_values=pixels)
    assert torch.allclose(got.logits, expected, atol=1e-5)
    assert got.cls_logits.shape == got.distillation_logits.shape == (2, 4)
    assert torch.allclose(got.logits, (got.cls_logits + got.distillation_logits) / 2, atol=1e-6)
    assert not torch.allclose(got.cls_logits, got.distillation_logits, atol=1e-3)
    # the trained weights, both heads included (the file has transformers' saved key names), and they moved away
    # from the initialisation
    assert {"cls_classifier.weight", "distillation_classifier.weight"} <= set(load_file(export / "model.safetensors"))
    loaded, trained = reloaded.state_dict(), model.student.model.state_dict()
    assert set(loaded) == set(trained) and all(torch.equal(loaded[k], trained[k]) for k in trained)
    for head in ("cls_classifier.weight", "distillation_classifier.weight"):
        assert not torch.equal(loaded[head], distilled["initial"][head])


def test_pipeline_and_create_model_load_the_export(distilled):
    export = str(distilled["export"])
    classify = pipeline("image-classification", model=export)
    assert type(classify.model) is DeiTForImageClassificationWithTeacher
    pictures = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in distilled["images"]]
    for picture, probabilities in zip(pictures, distilled["image_logits"].softmax(-1)):
        scores = {p["label"]: p["score"] for p in classify(picture, top_k=4)}
        assert set(scores) == set(NAMES)
        assert torch.allclose(torch.tensor([scores[n] for n in NAMES]), probabilities, atol=1e-5)
    again = create_model(export)  # as the teacher or the student of a next run
    assert isinstance(again, DeiTFeatureClassifier) and provenance_of(again).distillation["method"] == "deit"


def test_card_names_the_method_and_the_architecture(distilled):
    card = ModelCard.load(distilled["export"] / "README.md")
    assert "deit" in card.text and "https://arxiv.org/abs/2012.12877" in card.text
    assert "transformers deit" in card.text
    assert "custom_code" not in (card.data.tags or [])
