"""Vanilla KD (Hinton et al., 2015): no loss of its own; ``cls * CE + div * KD_T`` is the whole objective."""

from __future__ import annotations

from .base import DistillationMethod
from .registry import register_method


@register_method
class KD(DistillationMethod):
    """KD is controlled entirely by ``div`` and ``kd_temperature`` (spec 2.1)."""

    name = "kd"
    default_beta = 0.0
