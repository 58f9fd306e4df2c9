"""frozen_teacher_linear (hfkd/methods/components/teacher_head.py, spec 8.3), the head check SRRL and SimKD share:
its refusals as whole sentences, the tolerance of the "does the Linear reproduce the logits" check, a pooled feature
in another dtype than the head, and a frozen copy that leaves the teacher's own head untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hfkd.errors import IncompatibleSetupError
from hfkd.methods.components.teacher_head import frozen_teacher_linear
from hfkd.models import ClassifierOutput

FIX = "use a teacher with a linear head (CIFAR zoo models, most timm CNNs) or a method that does not reuse it (kd)"


def what(method: str) -> str:
    return (
        f"{method} reuses the teacher's classifier on student features, so it needs a teacher whose `classifier` is "
        "a single nn.Linear mapping the pooled feature feats[-1] to the logits"
    )


class Bare(nn.Module):
    """A teacher reduced to the attribute the check reads: ``classifier`` (absent when None)."""

    def __init__(self, classifier: nn.Module | None = None) -> None:
        super().__init__()
        if classifier is not None:
            self.classifier = classifier


def probed(pooled: torch.Tensor, logits: torch.Tensor) -> ClassifierOutput:
    """The teacher's output on the example batch as the check sees it: the pooled feature feats[-1] and the logits."""
    return ClassifierOutput(logits=logits, feats=[pooled])


def constant_head(bias: list[float], in_features: int = 3) -> nn.Linear:
    """A Linear whose output is ``bias`` whatever the input (zero weight)."""
    head = nn.Linear(in_features, len(bias))
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(bias))
    return head


def refusal(teacher: nn.Module, out: ClassifierOutput, method: str = "srrl") -> str:
    with pytest.raises(IncompatibleSetupError) as err:
        frozen_teacher_linear(teacher, out, method)
    return str(err.value)


# ---- refusals, whole sentences ----------------------------------------------------------------------------------


def test_teacher_without_classifier_module_is_refused_in_full():
    out = probed(torch.ones(2, 3), torch.zeros(2, 2))
    assert refusal(Bare(), out) == f"{what('srrl')}, but the teacher Bare has no classifier module; {FIX}"


def test_classifier_with_two_linears_or_other_parameters_is_refused_in_full():
    pooled = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
    mlp = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2))
    assert refusal(Bare(mlp), probed(pooled, mlp(pooled).detach()), "simkd") == (
        f"{what('simkd')}, but its classifier Sequential holds 2 Linear layers; {FIX}"
    )
    # one Linear, but a BatchNorm1d with parameters after it (in eval with fresh statistics it is nearly the identity)
    normed = nn.Sequential(nn.Linear(5, 2), nn.BatchNorm1d(2)).eval()
    assert refusal(Bare(normed), probed(pooled, normed(pooled).detach())) == (
        f"{what('srrl')}, but its classifier Sequential holds 1 Linear layer and other parameters "
        f"['1.weight', '1.bias']; {FIX}"
    )


@pytest.mark.parametrize("pooled_shape, shown", [((2, 5), "(5,)"), ((2, 7, 1, 1), "(7, 1, 1)")])
def test_pooled_feature_the_linear_cannot_take_is_refused_in_full(pooled_shape, shown):
    # a Linear(7, 4) head, and a pooled feature of the wrong width or not flattened to [B, C]
    out = probed(torch.ones(pooled_shape), torch.zeros(2, 4))
    assert refusal(Bare(nn.Linear(7, 4)), out) == (
        f"{what('srrl')}, but its pooled feature has shape {shown} while the Linear takes 7 features; {FIX}"
    )


def test_head_that_does_not_reproduce_the_logits_is_refused_in_full():
    head = nn.Linear(3, 2)
    pooled = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    out = probed(pooled, 2.0 * head(pooled).detach())  # the teacher scales its Linear's output
    assert refusal(Bare(head), out) == (
        f"{what('srrl')}, but applying its Linear to feats[-1] does not reproduce the teacher's logits on the example "
        f"batch (the head does more than one linear map); {FIX}"
    )


# ---- the reproduction tolerance: |Linear(pooled) - z| <= 1e-4 * (1 + max|z|) + 1e-3 * |z| elementwise ----------


@pytest.mark.parametrize(
    "head_output, logits, accepted",
    [
        # logits near 0: the absolute part 1e-4 * (1 + 5e-5) decides; 5e-5 is inside it
        ([0.0, 0.0], [5e-5, 5e-5], True),
        # ... and 1.5e-4 is outside it (1e-4 * (1 + 1.5e-4) + 1e-3 * 1.5e-4 = 1.0017e-4)
        ([0.0, 0.0], [1.5e-4, 1.5e-4], False),
        # large logits: 0.05 off 100 is inside 1e-4 * 101.05 + 1e-3 * 100.05 = 0.110, and 0.005 off 0 is inside the
        # absolute part alone, 1e-4 * 101.05 = 0.0101, which grows with the largest logit
        ([100.0, 0.0], [100.05, 0.005], True),
        # ... but 0.02 off 0 is not
        ([100.0, 0.0], [100.0, 0.02], False),
    ],
)
def test_reproduction_tolerance_grows_with_the_largest_logit(head_output, logits, accepted):
    head = constant_head(head_output)
    out = probed(torch.randn(2, 3), torch.tensor([logits, logits]))
    if accepted:
        frozen = frozen_teacher_linear(Bare(head), out, "srrl")
        assert torch.equal(frozen.weight, head.weight) and torch.equal(frozen.bias, head.bias)
    else:
        assert refusal(Bare(head), out).startswith(f"{what('srrl')}, but applying its Linear to feats[-1] does not")


def test_pooled_feature_in_another_dtype_than_the_head_is_cast_to_it():
    # a bf16 pooled feature and an fp32 Linear (e.g. a teacher whose pooling runs in bf16): the check casts the
    # feature to the head's dtype instead of failing in the matmul
    head = nn.Linear(3, 2)
    pooled = torch.randn(4, 3, generator=torch.Generator().manual_seed(2)).bfloat16()
    logits = head(pooled.float()).detach()
    frozen = frozen_teacher_linear(Bare(head), probed(pooled, logits), "simkd")
    assert frozen.weight.dtype == torch.float32 and torch.equal(frozen.weight, head.weight)


def test_frozen_copy_is_independent_of_the_teachers_head():
    head = nn.Linear(3, 2)
    pooled = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    frozen = frozen_teacher_linear(Bare(head), probed(pooled, head(pooled).detach()), "srrl")
    assert isinstance(frozen, nn.Linear) and frozen is not head
    assert not frozen.weight.requires_grad and not frozen.bias.requires_grad
    assert head.weight.requires_grad and head.bias.requires_grad  # the teacher's own head is not frozen by the copy
    before = head.weight.detach().clone()
    with torch.no_grad():
        frozen.weight.add_(1.0)
    assert torch.equal(head.weight, before)  # separate tensors, not shared ones
