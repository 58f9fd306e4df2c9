"""Counter-based randomness: uniform, independent across counters, and identical wherever it is computed."""

from __future__ import annotations

import math

import torch

from hfkd.data.keyed_random import keyed_hash, keyed_integers, keyed_uniform
from hfkd.data.transforms import Compose, RandomCropFlip

N = 200_000


def fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finaliser (Appleby, MurmurHash3.cpp ``fmix32``) on Python integers."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def reference_hash(seed: int, epoch: int, index: int, slot: int) -> int:
    """The counters' combination documented in keyed_random, with exact integer arithmetic (no 16-bit split)."""
    golden, mask = 0x9E3779B9, 0xFFFFFFFF
    h = fmix32(((seed * golden) & mask) ^ (epoch & mask))
    h = fmix32((h + (index & mask) * golden) & mask)
    return fmix32(h ^ ((slot & mask) * 0x27D4EB2F & mask))


def test_hash_equals_the_exact_integer_reference():
    # the tensor code splits 32-bit products into 16-bit halves to avoid int64 overflow: check it bit for bit,
    # including counters near 2**32 where every bit of every product matters
    index = torch.tensor([0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, 987654321])
    for seed, epoch, slot in [(0, 0, 0), (1, 3, 2), (2**32 - 1, 2**32 - 1, 7), (123456789, 240, 2**32 - 1)]:
        got = keyed_hash(seed, epoch, index, slot).tolist()
        assert got == [reference_hash(seed, epoch, i, slot) for i in index.tolist()], (seed, epoch, slot)
    assert keyed_hash(5, 1, index).tolist() == [reference_hash(5, 1, i, 0) for i in index.tolist()]  # slot 0
    # an int32 index or slot (what some samplers and collates give) draws what the int64 one draws
    small = torch.tensor([3, 2**31 - 1, 77], dtype=torch.int32)
    assert torch.equal(keyed_hash(9, 2, small, torch.tensor(5, dtype=torch.int32)), keyed_hash(9, 2, small.long(), 5))
    u = keyed_uniform(5, 1, index)
    assert u.dtype == torch.float64  # 32 random bits need a float64 mantissa
    assert u.tolist() == [reference_hash(5, 1, i, 0) / 2**32 for i in index.tolist()]
    assert keyed_integers(5, 1, index, 3, 9).tolist() == [reference_hash(5, 1, i, 3) % 9 for i in index.tolist()]


def test_uniform_moments_and_independence():
    index = torch.arange(N)
    u = keyed_uniform(0, 1, index)
    assert abs(u.mean().item() - 0.5) < 4 / math.sqrt(12 * N)  # 4 standard errors
    assert abs(u.var().item() - 1 / 12) < 0.002
    others = {
        "slot": keyed_uniform(0, 1, index, 1),
        "epoch": keyed_uniform(0, 2, index),
        "seed": keyed_uniform(1, 1, index),
        "next index": keyed_uniform(0, 1, index + 1),
    }
    for name, v in others.items():
        correlation = torch.corrcoef(torch.stack([u, v]))[0, 1].item()
        assert abs(correlation) < 4 / math.sqrt(N), name
    bits = torch.stack([(keyed_hash(0, 1, index) >> b) & 1 for b in range(32)]).double().mean(1)
    assert (bits - 0.5).abs().max().item() < 4 * 0.5 / math.sqrt(N)


def test_integers_are_uniform_chi_square():
    counts = torch.bincount(keyed_integers(3, 7, torch.arange(N), 0, 9), minlength=9).double()
    expected = N / 9
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 26.1  # the 99.9 % quantile of chi-square with 8 degrees of freedom


def test_draws_depend_only_on_the_counters():
    index = torch.tensor([5, 17, 123456])
    whole = keyed_hash(11, 4, torch.arange(123457))
    assert torch.equal(keyed_hash(11, 4, index), whole[index])  # not on the batch an index lands in
    assert keyed_hash(11, 4, index).dtype == torch.int64 and int(whole.max()) < 2**32 and int(whole.min()) >= 0


def test_crop_flip_of_an_example_is_the_same_in_any_batch():
    images = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    augment = RandomCropFlip(padding=2, seed=0)
    together = augment(images, torch.arange(6), epoch=3)
    apart = torch.cat([augment(images[i : i + 1], torch.tensor([i]), epoch=3) for i in range(6)])
    assert torch.equal(together, apart)
    assert not torch.equal(augment(images, torch.arange(6), epoch=4), together)


def test_on_device_augmentation_and_negatives_equal_the_cpu_path(learnable_data):
    from hfkd.data import DecodedImageDataset
    from hfkd.data.contrast import contrastive_dataset

    train = learnable_data[0]
    on_device = DecodedImageDataset(train.images, train.labels, train.transform, on_device=True)
    for dataset in (train, on_device):
        dataset.set_epoch(3)
    indices = [5, 200, 17, 63]
    cpu = train.__getitems__(indices)
    raw = on_device.__getitems__(indices)
    assert raw["pixel_values"].dtype == torch.uint8  # shipped raw: a quarter of the bytes
    moved = on_device.device_transform(raw)
    assert torch.equal(moved["pixel_values"], cpu["pixel_values"]) and "index" not in moved
    # CRD: negatives drawn in device_transform equal those drawn in the data pipeline
    crd_cpu, crd_device = contrastive_dataset(train, nce_k=16), contrastive_dataset(on_device, nce_k=16)
    crd_cpu.set_epoch(2)
    crd_device.set_epoch(2)
    expected = crd_cpu.__getitems__(indices)
    raw = crd_device.__getitems__(indices)
    assert "contrast_index" not in raw
    got = crd_device.device_transform(raw)
    assert torch.equal(got["contrast_index"], expected["contrast_index"])
    assert torch.equal(got["pixel_values"], expected["pixel_values"]) and torch.equal(got["index"], expected["index"])


def crop_flip_draws(n: int, size: int, padding: int, epoch: int, seed: int = 0):
    """The (top, left, flip) each of ``n`` examples got, read back from the output: every input pixel holds
    ``1 + row * size + col``, so any non-padding output pixel tells where the window sits; the column order tells
    whether it was flipped."""
    coords = 1 + torch.arange(size * size).view(1, 1, size, size)
    images = coords.expand(n, 3, size, size).to(torch.uint8).contiguous()
    out = RandomCropFlip(padding=padding, seed=seed)(images, torch.arange(n), epoch=epoch)[:, 0].long()  # [n, H, W]
    # a window offset by at most 2p keeps the centre 2x2 of the output inside the image when size >= 2p + 2
    r, c = size // 2 - 1, size // 2 - 1
    source = out[:, r, c] - 1
    src_row, src_col = source // size, source % size
    top = src_row - r + padding
    flip = out[:, r, c + 1] < out[:, r, c]  # source columns run backwards
    left = torch.where(flip, src_col + c + 1 - size + padding, src_col - c + padding)
    return top, left, flip


def test_crop_offsets_cover_zero_to_2p_uniformly_and_half_the_images_are_flipped():
    n, size, padding = 20_000, 8, 2
    top, left, flip = crop_flip_draws(n, size, padding, epoch=1)
    for name, offsets in (("top", top), ("left", left)):
        counts = torch.bincount(offsets, minlength=2 * padding + 1)
        # both ends included: torchvision's RandomCrop draws from [0, 2p], not [0, 2p)
        assert offsets.min().item() == 0 and offsets.max().item() == 2 * padding and len(counts) == 2 * padding + 1
        expected = n / (2 * padding + 1)
        chi2 = ((counts.double() - expected) ** 2 / expected).sum().item()
        assert chi2 < 18.5, name  # the 99.9 % quantile of chi-square with 4 degrees of freedom
    rate = flip.double().mean().item()
    assert abs(rate - 0.5) < 4 * 0.5 / math.sqrt(n), rate  # 4 standard errors
    # per-example independence: the draws of one example say nothing about its own other draws or its neighbour's
    pairs = {"top/left": (top, left), "top/flip": (top, flip), "left/flip": (left, flip),
             "neighbour top": (top[:-1], top[1:]), "neighbour flip": (flip[:-1], flip[1:])}
    for name, (a, b) in pairs.items():
        correlation = torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1].item()
        assert abs(correlation) < 4 / math.sqrt(n), name
    # a new epoch redraws each example independently of its previous draw
    top2, _, flip2 = crop_flip_draws(n, size, padding, epoch=2)
    assert abs(torch.corrcoef(torch.stack([top.double(), top2.double()]))[0, 1].item()) < 4 / math.sqrt(n)
    assert abs((flip == flip2).double().mean().item() - 0.5) < 4 * 0.5 / math.sqrt(n)


def test_crop_flip_draws_are_read_back_exactly():
    # the read-back above against a direct crop of the padded image, for a few hand-picked draws
    size, padding = 8, 2
    top, left, flip = crop_flip_draws(64, size, padding, epoch=5)
    coords = (1 + torch.arange(size * size).view(1, 1, size, size)).to(torch.uint8).expand(64, 3, size, size)
    out = RandomCropFlip(padding=padding)(coords.contiguous(), torch.arange(64), epoch=5)
    padded = torch.nn.functional.pad(coords, (padding,) * 4)
    for b in range(64):
        window = padded[b, :, top[b] : top[b] + size, left[b] : left[b] + size]
        assert torch.equal(out[b], window.flip(-1) if flip[b] else window), b
    # the draws are slots 0 (top), 1 (left) and 2 (flip) of (seed, epoch, index): pinned, so that changing what an
    # example draws (and so what a resumed run or a rerun with a newer hfkd trains on) is a deliberate change
    index = torch.arange(64)
    assert torch.equal(top, keyed_integers(0, 5, index, 0, 2 * padding + 1))
    assert torch.equal(left, keyed_integers(0, 5, index, 1, 2 * padding + 1))
    assert torch.equal(flip, keyed_integers(0, 5, index, 2, 2) == 1)
    # called without an epoch, the transforms draw epoch 0's crops
    augment = RandomCropFlip(padding=padding)
    images = coords.contiguous()
    assert torch.equal(augment(images, index), augment(images, index, epoch=0))
    assert torch.equal(Compose(augment)(images, index), augment(images, index, epoch=0))


def test_the_cifar_training_transform_defaults_to_the_references_crop_and_seed_0():
    # the reference's RandomCrop(32, padding=4) (spec, the CIFAR toolbox's data loader) and the run seed's default
    from hfkd.data.transforms import cifar_train_transform

    crop = cifar_train_transform((0.5,) * 3, (0.25,) * 3).steps[0]
    assert (crop.padding, crop.seed) == (4, 0)


def test_the_cifar_training_transform_is_the_keyed_crop_then_normalisation():
    from hfkd.data.transforms import RandomCropFlip, cifar_train_transform

    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    index = torch.arange(6)
    out = cifar_train_transform((0.5, 0.4, 0.3), (0.25, 0.2, 0.1), padding=2, seed=3)(images, index, epoch=2)
    # by hand: the crop of seed 3, then (x / 255 - mean) / std per channel
    cropped = RandomCropFlip(padding=2, seed=3)(images, index, epoch=2).to(torch.float64) / 255
    mean = torch.tensor([0.5, 0.4, 0.3], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.25, 0.2, 0.1], dtype=torch.float64).view(1, 3, 1, 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), (cropped - mean) / std, rtol=1e-6, atol=1e-6)
    assert not torch.equal(RandomCropFlip(padding=2, seed=3)(images, index, epoch=2),
                           RandomCropFlip(padding=2, seed=0)(images, index, epoch=2))  # the seed matters
