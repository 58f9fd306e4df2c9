"""Numerics shared by the methods: regions where autocast is off, so losses really run in fp32."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def full_precision(tensor: torch.Tensor) -> Iterator[None]:
    """Switch autocast off on ``tensor``'s device, so Gram / kernel / similarity matmuls really run in fp32.

    ``.float()`` alone is not enough: under autocast an fp32 matmul input is cast back down to fp16/bf16, and
    Gram matrices of large maps overflow fp16.
    """
    with torch.autocast(device_type=tensor.device.type, enabled=False):
        yield
