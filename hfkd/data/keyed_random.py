"""Counter-based random numbers: a pure function of (seed, epoch, example index, slot), computed on any device.

Random crops, flips and CRD's negatives drawn this way do not depend on which process, worker or batch an example
lands in, nor on any generator state. So N data-parallel processes draw exactly what one process with the N-times
batch draws, and a run resumed mid-epoch draws exactly what the uninterrupted run drew.

The hash is MurmurHash3's 32-bit finaliser applied to the combined counters. All arithmetic is done on int64 values
below 2**32, with 32-bit multiplications split into 16-bit halves so no intermediate exceeds 2**63 (no signed
overflow on any backend).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # 2**32 / golden ratio: decorrelates the counters before mixing


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """``(x * constant) mod 2**32`` for int64 ``x`` in [0, 2**32), without int64 overflow."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _MASK32


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's finaliser: every input bit affects every output bit."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def keyed_hash(seed: int, epoch: int, index: torch.Tensor, slot: torch.Tensor | int = 0) -> torch.Tensor:
    """Uniform 32-bit integers (int64 tensor) for every ``(index, slot)`` pair, broadcast like ``index + slot``."""
    index = index.to(torch.int64)
    slot = torch.as_tensor(slot, dtype=torch.int64, device=index.device)
    h = _fmix32(torch.full((), (seed * _GOLDEN) & _MASK32, dtype=torch.int64, device=index.device) ^ (epoch & _MASK32))
    h = _fmix32((h + _mul32(index & _MASK32, _GOLDEN)) & _MASK32)
    return _fmix32((h ^ _mul32(slot & _MASK32, 0x27D4EB2F)) & _MASK32)


def keyed_uniform(seed: int, epoch: int, index: torch.Tensor, slot: torch.Tensor | int = 0) -> torch.Tensor:
    """Uniform floats in [0, 1) (float64, 32 random bits) for every ``(index, slot)`` pair."""
    return keyed_hash(seed, epoch, index, slot).to(torch.float64) / 2.0**32


def keyed_integers(seed: int, epoch: int, index: torch.Tensor, slot: int, high: int) -> torch.Tensor:
    """Uniform integers in ``[0, high)``; the modulo bias is below ``high / 2**32``."""
    return keyed_hash(seed, epoch, index, slot) % high


@contextmanager
def seeded_global_generators(seed: int) -> Iterator[None]:
    """Run a block with Python's ``random``, NumPy's global generator and torch's CPU generator all seeded with
    ``seed`` (an int in [0, 2**32)), and put their previous states back afterwards.

    timm's and torchvision's transforms and timm's Mixup draw from these global generators; seeding them from a
    ``keyed_hash`` around each call makes their draws keyed too, while the rest of the process (dropout, the
    sampler) keeps its own random stream.
    """
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
