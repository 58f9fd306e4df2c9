"""Per-sample transforms of logits that the KD-style methods apply before their tempered softmax."""

from __future__ import annotations

import torch

# added to the std (not inside a square root), as in the code of Sun et al. (CVPR 2024)
LOGIT_STD_EPS = 1e-7


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample z-score over the class axis with the unbiased std, in fp32: ``(z - mean) / (1e-7 + std)``.

    ``logits`` ``[B, num_classes]`` -> ``[B, num_classes]`` fp32. Sun et al., "Logit Standardization in Knowledge
    Distillation", CVPR 2024 (spec 10.2); used by ``logit_std`` and by ``kd`` / ``dkd`` with
    ``logit_standardization: true``.
    """
    z = logits.float()
    mean = z.mean(dim=-1, keepdim=True)
    std = z.std(dim=-1, keepdim=True, unbiased=True)
    return (z - mean) / (LOGIT_STD_EPS + std)
