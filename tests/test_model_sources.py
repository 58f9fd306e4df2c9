"""create_model's sources (zoo, timm, transformers directory / config, Hub id) and teacher input adaptation."""

from __future__ import annotations

import pytest
import torch
from transformers import ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification
from transformers import ViTImageProcessor

from hfkd.errors import ModelLoadError
from hfkd.models import (ModelProvenance, Preprocessing, TeacherInputAdapter, adapt_teacher_inputs, attach_provenance,
                         create_model, provenance_of)


def tiny_resnet_dir(tmp_path, num_labels=5, with_weights=True, processor=None):
    folder = tmp_path / "hf_resnet"
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], num_labels=num_labels)
    if with_weights:
        ResNetForImageClassification(config).save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    return folder


def test_every_model_kind_honours_the_contract(tmp_path):
    x = torch.randn(2, 3, 32, 32)
    models = {
        "zoo": create_model("resnet8", num_classes=5),
        "timm": create_model("resnet18", num_classes=5),
        "transformers": create_model(str(tiny_resnet_dir(tmp_path))),
    }
    for kind, model in models.items():
        model.eval()
        out = model(x, return_features=True)
        assert out.logits.shape == (2, 5), kind
        pooled = out.feats[-1]
        assert pooled.dim() == 2 and all(f.dim() == 4 for f in out.feats[:-1]), kind
        # the classifier maps the pooled vector to the logits: the head SimKD / SRRL reuse
        assert torch.allclose(model.classifier(pooled), out.logits, atol=1e-5), kind
        assert model.num_classes == 5 and torch.equal(model(x).logits, out.logits), kind


def test_transformers_feature_list_is_stem_then_stages(tmp_path):
    model = create_model(str(tiny_resnet_dir(tmp_path))).eval()
    shapes = [tuple(f.shape[1:]) for f in model(torch.randn(1, 3, 64, 64), return_features=True).feats]
    assert shapes == [(8, 16, 16), (8, 16, 16), (16, 8, 8), (32, 4, 4), (64, 2, 2), (64,)]


def test_transformers_student_gets_a_new_head_and_config_only_dir_is_random_init(tmp_path):
    student = create_model(str(tiny_resnet_dir(tmp_path, num_labels=5)), num_classes=3)
    assert student.num_classes == 3 and student(torch.randn(1, 3, 32, 32)).logits.shape == (1, 3)
    fresh = create_model(str(tiny_resnet_dir(tmp_path / "b", with_weights=False)), num_classes=7)
    assert fresh.num_classes == 7


def test_vit_features_are_tokens(tmp_path):
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=4)
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    vit = create_model(str(tmp_path / "vit")).eval()
    out = vit(torch.randn(2, 3, 32, 32), return_features=True)
    assert out.feats[1].shape == (2, 17, 32) and out.feats[-1].shape == (2, 32)
    assert torch.allclose(vit.classifier(out.feats[-1]), out.logits, atol=1e-5)


def test_unreachable_hub_id_and_unknown_name_name_where_they_looked(monkeypatch):
    with pytest.raises(ModelLoadError, match="could not read the config of Hub repo 'someone/teacher'"):
        create_model("someone/teacher")
    with pytest.raises(ModelLoadError, match="not a CIFAR zoo name .*did you mean resnet8x4"):
        create_model("resnet8x5")
    with pytest.raises(ModelLoadError, match="has no config.json"):
        create_model(".")


def test_declared_preprocessing_is_read_from_the_image_processor(tmp_path):
    processor = ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    model = create_model(str(tiny_resnet_dir(tmp_path, processor=processor)))
    assert provenance_of(model).preprocessing == Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 64)


def test_teacher_inputs_are_renormalised_and_resized():
    seen = {}

    class Recorder(torch.nn.Module):
        classifier = torch.nn.Identity()
        num_classes = 3

        def forward(self, pixel_values, return_features=False):
            seen["x"] = pixel_values
            return pixel_values

    student = Preprocessing((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 32)
    teacher = Recorder()
    attach_provenance(teacher, ModelProvenance(None, preprocessing=Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 64)))
    adapted = adapt_teacher_inputs(teacher, student)
    assert isinstance(adapted, TeacherInputAdapter)
    pixels = torch.rand(2, 3, 32, 32)  # in [0, 1]
    mean, std = torch.tensor(student.mean).view(1, 3, 1, 1), torch.tensor(student.std).view(1, 3, 1, 1)
    adapted((pixels - mean) / std)
    expected = torch.nn.functional.interpolate((pixels - 0.5) / 0.5, size=(64, 64), mode="bilinear",
                                               align_corners=False, antialias=True)
    assert seen["x"].shape == (2, 3, 64, 64) and torch.allclose(seen["x"], expected, atol=1e-5)
    # a teacher with the student's preprocessing, or none declared, is used as is
    same = Recorder()
    attach_provenance(same, ModelProvenance(None, preprocessing=student))
    assert adapt_teacher_inputs(same, student) is same
    assert adapt_teacher_inputs(Recorder(), student).__class__ is Recorder


def test_import_hfkd_alone_registers_the_export_classes(tmp_path):
    """The README's promise: after `import hfkd` (nothing else), plain from_pretrained loads an hfkd export without
    remote code. In a fresh process with no stdin, a transformers prompt about custom code would fail the load."""
    import subprocess
    import sys
    from pathlib import Path

    from hfkd.models import HfkdConfig, HfkdForImageClassification

    torch.manual_seed(0)
    export = HfkdForImageClassification(HfkdConfig(architecture="resnet8", num_labels=4)).eval()
    export.save_pretrained(tmp_path / "export")
    with torch.no_grad():
        expected = export(torch.ones(1, 3, 32, 32)).logits
    code = (
        "import sys, torch, hfkd\n"
        "from transformers import AutoModelForImageClassification\n"
        f"model = AutoModelForImageClassification.from_pretrained({str(tmp_path / 'export')!r}).eval()\n"
        "print(type(model).__module__, type(model).__name__)\n"
        "print(model(torch.ones(1, 3, 32, 32)).logits.tolist())\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    kind, logits = done.stdout.strip().splitlines()[-2:]
    assert kind == "hfkd.models.modeling_hfkd HfkdForImageClassification"  # hfkd's class, not the shipped copy
    assert torch.allclose(torch.tensor(eval(logits)), expected, atol=1e-6)
