"""Evaluation metrics as ``evaluate`` modules shipped inside hfkd, so evaluation works offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

TOPK_ACCURACY_PATH = Path(__file__).resolve().parent / "topk_accuracy"
TOPK = 5


def load_topk_accuracy():
    """The top-k accuracy metric, loaded with ``evaluate.load`` from the package (no network)."""
    import evaluate

    return evaluate.load(str(TOPK_ACCURACY_PATH))


def ranked_predictions(logits: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Reduce logits to the top-5 class indices on the device (``preprocess_logits_for_metrics``)."""
    return logits.topk(min(TOPK, logits.shape[-1]), dim=-1).indices


class TopkAccuracyMetrics:
    """``compute_metrics`` for the Trainer: ``{"top1", "top5"}`` in percent from ranked predictions."""

    def __init__(self) -> None:
        self.metric = load_topk_accuracy()

    def __call__(self, eval_prediction) -> dict[str, float]:
        ranked = np.asarray(eval_prediction.predictions)
        labels = np.asarray(eval_prediction.label_ids)
        return self.metric.compute(predictions=ranked, references=labels, k=[1, TOPK])
