"""The offline top-k accuracy metric (an ``evaluate`` module shipped inside hfkd)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from hfkd.metrics import TopkAccuracyMetrics, load_topk_accuracy, ranked_predictions


def test_topk_values():
    metric = load_topk_accuracy()
    ranked = [[3, 1, 2, 0, 4], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [1, 0, 2, 3, 4]]
    labels = [3, 2, 0, 0]
    # true class at rank 1, 3, 5, 2: top-1 {0}, top-2 {0,3}, top-3 {0,1,3}, top-5 all
    assert metric.compute(predictions=ranked, references=labels, k=[1, 2, 3, 5]) == {
        "top1": 25.0,
        "top2": 50.0,
        "top3": 75.0,
        "top5": 100.0,
    }


def test_ranked_predictions_and_trainer_metrics_agree_with_argmax():
    logits = torch.tensor([[0.1, 0.9, 0.3], [2.0, -1.0, 0.5], [0.0, 0.2, 0.1]])
    ranked = ranked_predictions(logits)
    assert ranked.tolist() == [[1, 2, 0], [0, 2, 1], [1, 2, 0]]  # k clipped to the class count
    labels = np.array([1, 2, 2])
    scores = TopkAccuracyMetrics()(EvalPrediction(predictions=ranked.numpy(), label_ids=labels))
    assert scores["top1"] == pytest.approx(100 / 3)
    assert scores["top5"] == pytest.approx(100.0)
