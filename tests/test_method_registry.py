"""The method interface: the registry's names and refusals, the base class's neutral defaults, and the BibTeX entry
model cards cite (issue 21's mutation run of ``hfkd/methods/``)."""

from __future__ import annotations

import pytest
import torch

from hfkd.errors import RecipeError
from hfkd.methods import METHODS, NO_DISTILLATION, DistillationMethod, build_method, known_method_names
from hfkd.methods.base import Paper
from hfkd.methods.crd import CRD
from hfkd.methods.kd import KD
from hfkd.methods.registry import register_method
from hfkd.models.outputs import ClassifierOutput

# the methods of the mission statement, one file each
EXPECTED = ["at", "cc", "crd", "deit", "dist", "dkd", "fitnet", "kd", "logit_std", "nst", "pkt", "rkd", "semckd",
            "simkd", "sp", "spherical", "srrl", "vid"]


def test_every_method_is_registered_under_its_own_name():
    assert sorted(METHODS) == EXPECTED
    assert all(cls.name == name for name, cls in METHODS.items())
    assert known_method_names() == ["none", *EXPECTED]


@pytest.mark.parametrize("name", ["", "kd", NO_DISTILLATION])
def test_a_missing_duplicate_or_reserved_name_is_refused_and_nothing_is_registered(name):
    before = dict(METHODS)
    cls = type("Clash", (DistillationMethod,), {"name": name})
    with pytest.raises(ValueError) as refused:
        register_method(cls)
    assert str(refused.value) == f"method class Clash has a missing or duplicate name {name!r}"
    assert METHODS == before


def test_registering_returns_the_class_under_its_name():
    cls = type("Fresh", (DistillationMethod,), {"name": "fresh_for_test"})
    try:
        assert register_method(cls) is cls and METHODS["fresh_for_test"] is cls
    finally:
        del METHODS["fresh_for_test"]


def test_an_unknown_method_is_refused_with_the_known_names():
    with pytest.raises(RecipeError) as refused:
        build_method("kdd", torch.nn.Linear(1, 1), None, None, None)
    assert str(refused.value) == f"method 'kdd' is unknown; choose one of {', '.join(['none', *EXPECTED])}"
    assert build_method(NO_DISTILLATION, torch.nn.Linear(1, 1), None, None, None) is None


def test_the_base_class_changes_nothing():
    method = DistillationMethod.build(None, None, None, None)
    assert type(method) is DistillationMethod
    logits, teacher = torch.randn(2, 3), torch.randn(2, 3)
    out = ClassifierOutput(logits=logits, feats=[])
    assert method(out, out, {}) == {} and method.predict(out) is logits
    assert method.ce_logits(logits) is logits and method.kd_logits(logits, teacher) == (logits, teacher)
    weights = object()
    assert method.weights_at(3, weights) is weights and method.export_head() is None
    dataset = object()
    assert DistillationMethod.prepare_train_dataset(dataset, None) is dataset
    assert DistillationMethod.default_weights(None) == (1.0, 1.0, 0.0)
    assert (DistillationMethod.needs_student_features, DistillationMethod.needs_teacher_features,
            DistillationMethod.predict_needs_features, DistillationMethod.needs_hard_labels,
            DistillationMethod.needs_dataset_indices, DistillationMethod.ce_head, DistillationMethod.kd_head) == (
        False, False, False, False, False, None, None)


def test_bibtex_of_a_conference_paper():
    assert CRD.paper.bibtex() == (
        "@inproceedings{tian2020contrastive,\n"
        "  title = {Contrastive Representation Distillation},\n"
        "  author = {Yonglong Tian and Dilip Krishnan and Phillip Isola},\n"
        "  booktitle = {International Conference on Learning Representations (ICLR)},\n"
        "  year = {2020},\n"
        "  url = {https://arxiv.org/abs/1910.10699}\n"
        "}"
    )


def test_bibtex_of_an_arxiv_paper_and_a_key_from_the_first_title_word_letters_only():
    assert KD.paper.bibtex() == (
        "@article{hinton2015distilling,\n"
        "  title = {Distilling the Knowledge in a Neural Network},\n"
        "  author = {Geoffrey Hinton and Oriol Vinyals and Jeff Dean},\n"
        "  journal = {arXiv:1503.02531},\n"
        "  year = {2015},\n"
        "  url = {https://arxiv.org/abs/1503.02531}\n"
        "}"
    )
    # the key: the first author's surname (last word of the name), the year, the title's first word without
    # anything but lower-case letters
    paper = Paper("Self-Distillation: Towards Efficient", "Linfeng van Zhang and Anni Other", "CVPR", 2019, "u")
    assert paper.bibtex().startswith("@inproceedings{zhang2019selfdistillation,\n")


USE_A_DEIT = (
    "use a DeiT with a distillation token as the student (transformers' DeiTForImageClassificationWithTeacher), e.g. "
    "facebook/deit-tiny-distilled-patch16-224 or a folder whose config.json is a DeiTConfig with architectures "
    '["DeiTForImageClassificationWithTeacher"]'
)


def test_a_student_without_the_methods_heads_is_named_with_the_heads_it_has():
    from hfkd.errors import IncompatibleSetupError
    from hfkd.methods import require_student_heads
    from hfkd.methods.deit import DeiT
    from hfkd.models import create_model

    with pytest.raises(IncompatibleSetupError) as refused:
        require_student_heads(DeiT, create_model("resnet8", num_classes=4))  # named by its source, one head
    assert str(refused.value) == (
        "method 'deit' trains the student's 'cls' and 'distillation' heads, but the student 'resnet8' has a single "
        f"head; {USE_A_DEIT}"
    )

    class OneExtraHead(torch.nn.Module):  # no provenance: named by its class
        head_names = ("cls", "aux")

    with pytest.raises(IncompatibleSetupError) as refused:
        require_student_heads(DeiT, OneExtraHead())
    assert str(refused.value) == (
        "method 'deit' trains the student's 'cls' and 'distillation' heads, but the student OneExtraHead has only the "
        f"heads 'cls', 'aux'; {USE_A_DEIT}"
    )
    OneExtraHead.head_names = ("distillation", "cls")
    assert require_student_heads(DeiT, OneExtraHead()) is None
    assert require_student_heads(KD, torch.nn.Linear(1, 1)) is None  # a method that reads no named head


def test_deit_distils_hard_by_default():
    from hfkd.methods.deit import DeiT

    # Touvron et al. 2021, Table 3: hard distillation is the better of the two on ImageNet
    assert DeiT().mode == "hard" and repr(DeiT()) == "DeiT(mode=hard)"
