"""Prediction heads an exported student may carry, built from ``HfkdConfig.prediction_head`` by its ``type``.

A head reads the architecture's last feature map ``feats[-2]``: ``head(feats[-2])`` gives the logits,
``head.forward_pooled(feats[-2])`` the vector its Linear ``head.classifier`` consumes, and ``head.head_config()``
the dict (with ``type``) that rebuilds it. Shipped as remote code next to exported models, so it imports only
torch and sibling files.
"""

from __future__ import annotations

from torch import nn

from .simkd_head import SimKDHead

# ``prediction_head["type"]`` -> the module class; its other keys are the constructor's arguments
PREDICTION_HEADS: dict[str, type[nn.Module]] = {SimKDHead.head_type: SimKDHead}


def build_prediction_head(config: dict) -> nn.Module:
    """The (randomly initialised) head described by ``config``; its weights come from the checkpoint."""
    kwargs = dict(config)
    kind = kwargs.pop("type", None)
    if kind not in PREDICTION_HEADS:
        raise ValueError(f"unknown prediction head type {kind!r}; known types: {', '.join(sorted(PREDICTION_HEADS))}")
    return PREDICTION_HEADS[kind](**kwargs)
