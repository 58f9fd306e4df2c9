"""The tempered KL divergence that KD and the logit-based methods share (spec section 1.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * (1/B) * sum_b KL(softmax(z_t/T) || softmax(z_s/T))``, computed in fp32.

    This is SimKD's ``KLDivLoss(reduction='batchmean')`` times T^2 (RepDistiller's summed KL / B is the same value).
    """
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)
