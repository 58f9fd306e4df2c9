"""Top-k teacher logits: what a cache stores, and the full logits training rebuilds from them.

Shen and Xing, "A Fast Knowledge Distillation Framework for Visual Recognition" (FKD), ECCV 2022, Sec. 3: store the
teacher's k largest probabilities with their class indices, and rebuild the soft label by spreading the remaining
probability mass ``1 - sum(top k)`` uniformly over the other ``C - k`` classes. hfkd's losses take teacher *logits*,
so the cache stores the k largest logits and the log-sum-exp of all of them (which fixes the top-k probabilities,
``p_i = exp(z_i - lse)``), and rebuilds logits whose softmax is FKD's distribution: the k stored logits unchanged,
and every other class the logit ``lse + log((1 - sum p_top) / (C - k))``.
"""

from __future__ import annotations

import torch

# a lower bound for the mass left outside the top k, which float16 rounding can make <= 0
_MIN_REST = torch.finfo(torch.float32).tiny


def topk_logits(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(values [B, k], indices [B, k] int64, logsumexp [B])`` of fp32 ``logits [B, C]``; values in decreasing
    order (``torch.topk``), the log-sum-exp over all C classes in fp32."""
    logits = logits.float()
    values, indices = logits.topk(min(k, logits.shape[1]), dim=1)
    return values, indices, logits.logsumexp(dim=1)


def rebuild_logits(values: torch.Tensor, indices: torch.Tensor, logsumexp: torch.Tensor, num_classes: int
                   ) -> torch.Tensor:
    """fp32 logits ``[B, num_classes]`` whose softmax is FKD's rebuilt distribution (module docstring).

    ``values``/``indices`` ``[B, k]`` are the stored top-k logits and classes, ``logsumexp`` ``[B]`` the log-sum-exp
    of the teacher's full logits. With ``k == num_classes`` the logits are returned exactly.
    """
    values = values.float()
    k = values.shape[1]
    out = torch.empty(values.shape[0], num_classes, dtype=torch.float32, device=values.device)
    if k < num_classes:
        lse = logsumexp.float()
        rest = (1.0 - torch.exp(values - lse[:, None]).sum(dim=1)).clamp_min(_MIN_REST)
        out[:] = (lse + torch.log(rest / (num_classes - k)))[:, None]
    return out.scatter_(1, indices.long(), values)
