"""Reusing the teacher's classifier on student-derived features (SRRL, SimKD): set-up checks and a frozen copy.

Both methods apply the teacher's head to a tensor computed from the student, so the head must be one linear map
from the pooled feature ``feats[-1]`` to the logits. The references take ``get_feat_modules()[-1]`` as that head,
which is the wrong module for MobileNetV2 and ShuffleNet teachers (spec 8.3); hfkd uses ``teacher.classifier`` and
checks on the example batch that it really maps the pooled feature to the teacher's logits.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ...errors import IncompatibleSetupError
from ...models.outputs import ClassifierOutput


def frozen_teacher_linear(teacher: nn.Module, teacher_out: ClassifierOutput, method: str) -> nn.Linear:
    """A frozen deep copy of the single ``nn.Linear`` that maps the teacher's pooled feature to its logits.

    ``teacher_out`` is the teacher's eval-mode output (with features) on the example batch; the head is accepted only
    if applying it to ``feats[-1]`` reproduces those logits. The copy has ``requires_grad=False``: gradients flow
    through it to the student side, but it is never optimised.
    """
    what = (
        f"{method} reuses the teacher's classifier on student features, so it needs a teacher whose `classifier` is "
        f"a single nn.Linear mapping the pooled feature feats[-1] to the logits"
    )
    fix = "use a teacher with a linear head (CIFAR zoo models, most timm CNNs) or a method that does not reuse it (kd)"
    head = getattr(teacher, "classifier", None)
    if not isinstance(head, nn.Module):
        raise IncompatibleSetupError(
            f"{what}, but the teacher {type(teacher).__name__} has no classifier module; {fix}"
        )
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    linear_params = {id(p) for m in linears for p in m.parameters()}
    extra = [name for name, p in head.named_parameters() if id(p) not in linear_params]
    if len(linears) != 1 or extra:
        raise IncompatibleSetupError(
            f"{what}, but its classifier {type(head).__name__} holds {len(linears)} Linear "
            f"layer{'' if len(linears) == 1 else 's'}"
            f"{' and other parameters ' + str(extra) if extra else ''}; {fix}"
        )
    linear = linears[0]
    pooled, logits = teacher_out.feats[-1], teacher_out.logits
    if pooled.dim() != 2 or pooled.shape[1] != linear.in_features:
        raise IncompatibleSetupError(
            f"{what}, but its pooled feature has shape {tuple(pooled.shape[1:])} while the Linear takes "
            f"{linear.in_features} features; {fix}"
        )
    with torch.no_grad():
        recomputed = linear(pooled.to(linear.weight.dtype)).float()
    scale = 1.0 + float(logits.float().abs().max())
    if recomputed.shape != logits.shape or not torch.allclose(recomputed, logits.float(), rtol=1e-3, atol=1e-4 * scale):
        raise IncompatibleSetupError(
            f"{what}, but applying its Linear to feats[-1] does not reproduce the teacher's logits on the example "
            f"batch (the head does more than one linear map); {fix}"
        )
    frozen = copy.deepcopy(linear)
    frozen.requires_grad_(False)
    return frozen
