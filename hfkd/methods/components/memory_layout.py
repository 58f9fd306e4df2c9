"""Views of a feature map that follow its memory layout, so losses over channels stay cheap under channels_last.

With ``channels_last: true`` every stage map is stored as ``[B, H, W, C]`` in memory. A loss that reduces over
dim 1 of the ``[B, C, H, W]`` tensor reads it fine, but the gradient it sends back is built in NCHW order (the
broadcast of a ``[B, 1, H, W]`` gradient over C), and every elementwise op and cast on that path then mixes the two
layouts (strided, unvectorised loops and extra copies). Reducing over the last dim of the ``[B, H, W, C]`` view
instead keeps every intermediate and the gradient in the map's own layout; for an NCHW map the map itself is the
right view. Same values either way: only the order in memory differs.
"""

from __future__ import annotations

import torch


def is_channels_last(feature: torch.Tensor) -> bool:
    """True for a 4-D map stored channels-last (and not also plain-contiguous, as maps with C = 1 or H = W = 1 are)."""
    return (
        feature.dim() == 4
        and feature.is_contiguous(memory_format=torch.channels_last)
        and not feature.is_contiguous()
    )


def channel_view(feature: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(view, channel_dim)``: ``[B, H, W, C]`` and 3 for a channels-last map, the map itself and 1 otherwise."""
    if is_channels_last(feature):
        return feature.permute(0, 2, 3, 1), 3
    return feature, 1


def spatial_vectors(feature: torch.Tensor) -> torch.Tensor:
    """``[B, C, H*W]`` (one spatial vector per channel) as a view of the map in either layout, never a copy."""
    view, channel_dim = channel_view(feature)
    if channel_dim == 1:
        return view.flatten(2)
    return view.flatten(1, 2).transpose(1, 2)


def matmuls_laid_out_like(like: torch.Tensor, terms: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """``sum of x @ y over terms`` (batched, shaped like ``like``), stored in ``like``'s memory order.

    ``like`` is a ``[B, C, P]`` result of ``spatial_vectors``; for a channels-last map it is a transposed view of a
    contiguous ``[B, P, C]``, and the sum is computed as ``(sum of y^T @ x^T)^T`` so that elementwise work mixing it
    with ``like`` runs over both in the same order (a plain ``bmm`` result would be ``[B, C, P]``-contiguous).
    """
    transposed = like.stride(1) == 1 and like.stride(2) != 1
    total = None
    for x, y in terms:
        if transposed:
            x, y = y.mT, x.mT
        total = torch.bmm(x, y) if total is None else torch.baddbmm(total, x, y)
    return total.mT if transposed else total
