"""Collectives for method state that must see the global batch under data parallelism (CRD's memory and Z).

Without a process group (one process) every function is the identity, so single-process code pays nothing.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def all_gather_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate each tensor's rows from every process, rank 0 first (the order of the global batch).

    Processes may hold different row counts (a last partial batch): rows are padded to the largest count for the
    collective and trimmed after.
    """
    if world_size() == 1:
        return tensors
    device = tensors[0].device
    count = torch.tensor([tensors[0].shape[0]], device=device)
    counts = [torch.zeros_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    gathered = []
    for tensor in tensors:
        padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded.contiguous())
        gathered.append(torch.cat([part[:n] for part, n in zip(parts, counts)]))
    return tuple(gathered)


@torch.no_grad()
def global_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor``'s elements over every process (sum and count are reduced, so sizes may differ)."""
    if world_size() == 1:
        return tensor.mean()
    total = torch.stack([tensor.sum().to(torch.float64), torch.tensor(tensor.numel(), dtype=torch.float64,
                                                                       device=tensor.device)])
    dist.all_reduce(total)
    return (total[0] / total[1]).to(tensor.dtype)
