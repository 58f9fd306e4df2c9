"""RepDistiller's ``LinearEmbed``: the trainable projection of a pooled vector that CC and CRD share."""

from __future__ import annotations

import torch
from torch import nn

from .full_precision import full_precision


class LinearEmbed(nn.Module):
    """A plain ``Linear(dim_in, dim_out)`` on the flattened input, always computed in fp32."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x):
            return self.linear(x.flatten(1).float())
