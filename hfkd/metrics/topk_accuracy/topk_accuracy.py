"""Top-k accuracy as an ``evaluate`` metric module that loads offline from this folder.

Predictions are each example's class indices ranked best first (``[N, k]``), so top-1 and top-5 come from one
pass; references are the true class indices. Scores are percentages averaged per example, as the references
report them (spec section 1.4).
"""

import datasets
import evaluate

_DESCRIPTION = "Top-1 and top-5 accuracy (percent) from ranked class predictions."

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[int]]`): for each example, class indices ranked from most to least likely
        (at least as many as the largest k).
    references (`list[int]`): the true class of each example.
    k (`list[int]`, defaults to `[1, 5]`): the ranks to score; a k larger than the ranking length is clipped.
Returns:
    `top{k}` for each k: the percentage of examples whose true class is among the first k predictions.
Examples:
    >>> metric = evaluate.load("hfkd/metrics/topk_accuracy")
    >>> metric.compute(predictions=[[2, 0, 1], [0, 1, 2]], references=[0, 2], k=[1, 2])
    {'top1': 0.0, 'top2': 50.0}
"""

_CITATION = ""


class TopkAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("int64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, k=(1, 5)):
        import numpy as np

        ranked = np.asarray(predictions, dtype=np.int64)
        truth = np.asarray(references, dtype=np.int64)
        if ranked.ndim != 2 or len(ranked) != len(truth) or len(truth) == 0:
            raise ValueError("predictions must be [N, k] ranked class indices with N = len(references) > 0")
        hits = ranked == truth[:, None]
        return {f"top{n}": float(hits[:, : min(n, ranked.shape[1])].any(axis=1).mean() * 100.0) for n in k}
