"""The offline top-k accuracy metric (an ``evaluate`` module shipped inside hfkd)."""

from __future__ import annotations

import math

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
    labels = torch.tensor([1, 2, 2])
    summary = ranked_predictions(logits, labels)
    assert summary[:, :3].tolist() == [[1, 2, 0], [0, 2, 1], [1, 2, 0]]  # k clipped to the class count
    # the last column is each example's cross-entropy: -log softmax(z)[y]
    expected = [-math.log(math.exp(z[y]) / sum(math.exp(v) for v in z)) for z, y in zip(logits.tolist(), [1, 2, 2])]
    assert summary[:, 3].tolist() == pytest.approx(expected, rel=1e-6)
    scores = TopkAccuracyMetrics()(EvalPrediction(predictions=summary.numpy(), label_ids=labels.numpy()))
    assert scores["top1"] == pytest.approx(100 / 3)
    assert scores["top5"] == pytest.approx(100.0)
    assert scores["loss"] == pytest.approx(sum(expected) / 3, rel=1e-6)
