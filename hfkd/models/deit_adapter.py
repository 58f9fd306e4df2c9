"""transformers' DeiT with a distillation token (``DeiTForImageClassificationWithTeacher``) behind hfkd's contract."""

from __future__ import annotations

import torch

from .outputs import ClassifierOutput
from .transformers_adapter import TransformersFeatureClassifier


class DeiTFeatureClassifier(TransformersFeatureClassifier):
    """A DeiT with two heads: ``cls_classifier`` on the class token, ``distillation_classifier`` on the distillation
    token (Touvron et al., ICML 2021); its ``logits`` are the model's own prediction, the mean of the two heads.

    ``head_logits`` holds both heads' logits (``"cls"``, ``"distillation"``, each ``[B, num_classes]``), so a method
    can train each head on its own target (``deit``); ``feats`` are the hidden states (token sequences ``[B, N, D]``)
    followed by the class-token vector ``[B, D]`` that ``cls_classifier`` reads.

    ``classifier`` is the class-token head, so unlike a one-head model ``classifier(feats[-1])`` gives the class
    head's logits, not ``logits``: methods that reuse the teacher's head (SRRL, SimKD) check that it reproduces the
    logits and refuse a DeiT teacher. Any logit method (``kd``, ...) can use it as a teacher: it sees ``logits``.
    It is saved as the transformers model itself, with both heads (``export_format``: transformers).
    """

    # the keys of ``head_logits``, known before any forward so that a method can check its student when it is built
    head_names = ("cls", "distillation")

    @property
    def classifier(self):
        return self.model.cls_classifier

    def forward(self, pixel_values: torch.Tensor, return_features: bool = False) -> ClassifierOutput:
        out = self.model(pixel_values=pixel_values, output_hidden_states=return_features, return_dict=True)
        heads = {"cls": out.cls_logits, "distillation": out.distillation_logits}
        class_token, self._pooled = self._pooled, None  # captured on its way into cls_classifier
        feats = [*out.hidden_states, class_token] if return_features else None
        return ClassifierOutput(logits=out.logits, feats=feats, head_logits=heads)
