"""Evaluation metrics as ``evaluate`` modules shipped inside hfkd, so evaluation works offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TOPK_ACCURACY_PATH = Path(__file__).resolve().parent / "topk_accuracy"
TOPK = 5


def load_topk_accuracy():
    """The top-k accuracy metric, loaded with ``evaluate.load`` from the package (no network)."""
    import evaluate

    return evaluate.load(str(TOPK_ACCURACY_PATH))


def ranked_predictions(logits: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``preprocess_logits_for_metrics``: reduce logits on the device to ``[B, k + 1]`` floats, the top-k class
    indices (exact in float32 below 2**24 classes) followed by the example's cross-entropy.

    Keeping the loss per example means the Trainer's gather drops padded duplicates from it as from the
    predictions, so the reported evaluation loss is the exact mean over the evaluation set.
    """
    ranked = logits.topk(min(TOPK, logits.shape[-1]), dim=-1).indices.float()
    if labels is None:
        return ranked
    loss = F.cross_entropy(logits.float(), labels, reduction="none")
    return torch.cat([ranked, loss[:, None]], dim=1)


class TopkAccuracyMetrics:
    """``compute_metrics`` for the Trainer: ``{"top1", "top5"}`` in percent and the mean cross-entropy ``loss``."""

    def __init__(self) -> None:
        self.metric = load_topk_accuracy()

    def __call__(self, eval_prediction) -> dict[str, float]:
        summary = np.asarray(eval_prediction.predictions, dtype=np.float64)
        labels = np.asarray(eval_prediction.label_ids)
        k = min(TOPK, summary.shape[1] - 1)
        scores = self.metric.compute(predictions=summary[:, :k].astype(np.int64), references=labels, k=[1, TOPK])
        scores["loss"] = float(summary[:, k].mean())
        return scores
