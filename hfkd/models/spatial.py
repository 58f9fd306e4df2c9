"""Spatial alignment of two feature maps, shared by AT, VID, NST, SemCKD and SimKD (spec section 1.2)."""

import torch
import torch.nn.functional as F


def align_spatial(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool whichever map is spatially larger to the other's size; equal sizes pass unchanged.

    The references pool to the smaller map's square size ``(h, h)``; for the square maps of CNNs that is the same
    as the smaller map's ``(H, W)``, which this uses so non-square maps work too. At a tie SemCKD and SimKD pool
    the teacher "to its own size", which is the identity, so one rule serves every method.
    """
    hs, ht = student.shape[-2:], teacher.shape[-2:]
    if hs[0] > ht[0]:
        return F.adaptive_avg_pool2d(student, ht), teacher
    if hs[0] < ht[0]:
        return student, F.adaptive_avg_pool2d(teacher, hs)
    return student, teacher
