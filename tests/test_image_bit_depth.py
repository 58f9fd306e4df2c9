"""16-bit grayscale images are converted by their bit depth, not clipped at 255 (PIL's convert("RGB") made them
almost white: mean/std 0.9988/0.0343 against 0.28/0.35 for the 8-bit originals)."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hfkd.config import DataArguments
from hfkd.data import decode_images, prepare_datasets
from hfkd.data.images import decode_rgb, to_rgb
from tests.conftest import learnable_images


def gray_8bit(n: int = 48, seed: int = 0) -> np.ndarray:
    """``[n, 32, 32]`` uint8 grayscale images spanning 0..255, with dark and bright regions."""
    images, _ = learnable_images(n, 4, seed=seed)
    gray = images[:, 0].numpy().astype(np.int64)
    gray[:, :4, :4] = 0
    gray[:, -4:, -4:] = 255
    return gray.astype(np.uint8)


def png(array: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format)
    return buffer.getvalue()


def as_16_bit(gray: np.ndarray) -> np.ndarray:
    return gray.astype(np.uint16) * 257  # 255 -> 65535, the full 16-bit range


def image_dataset(cells: list[bytes], labels: list[int]) -> datasets.Dataset:
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=list("abcd"))})
    return datasets.Dataset.from_dict({"img": [{"bytes": c, "path": None} for c in cells], "label": labels},
                                      features=features)


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_sixteen_bit_grayscale_decodes_to_the_eight_bit_original(mode):
    gray = gray_8bit()
    eight = [png(g) for g in gray]
    if mode == "I;16":
        sixteen = [png(as_16_bit(g)) for g in gray]
    else:  # 32-bit integer storage of 16-bit samples, as older PIL versions and some TIFFs give
        sixteen = [png(as_16_bit(g).astype(np.int32), format="TIFF") for g in gray]
    assert Image.open(io.BytesIO(sixteen[0])).mode in ("I;16", "I")
    labels = [i % 4 for i in range(len(gray))]
    reference = decode_images(image_dataset(eight, labels), "img")
    decoded = decode_images(image_dataset(sixteen, labels), "img")
    assert torch.equal(decoded, reference)
    assert torch.equal(reference[:, 0], torch.from_numpy(gray))
    # the imagenet preset's per-image path decodes the same pixels
    one = decode_rgb({"bytes": sixteen[5], "path": None}, "train", 5)
    assert np.array_equal(np.asarray(one), np.asarray(decode_rgb({"bytes": eight[5], "path": None}, "train", 5)))


def test_statistics_of_sixteen_bit_images_match_the_eight_bit_ones(tmp_path):
    gray = gray_8bit()
    labels = [i % 4 for i in range(len(gray))]
    stats = {}
    for depth, encode in (("8", lambda g: png(g)), ("16", lambda g: png(as_16_bit(g)))):
        folder = tmp_path / depth
        folder.mkdir()
        for split, part in (("train", gray[:32]), ("test", gray[32:])):
            image_dataset([encode(g) for g in part], labels[: len(part)]).to_parquet(
                str(folder / f"{split}-00000-of-00001.parquet"))
        data = prepare_datasets(DataArguments(dataset_name=str(folder)))
        stats[depth] = (data.mean, data.std, data.stats_source)
    assert stats["16"] == stats["8"]
    assert stats["8"][2] == "computed from the training images"
    expected = round(float(gray[:32].astype(np.float64).mean() / 255), 4)
    assert stats["16"][0] == (expected,) * 3  # not 0.9988: nothing clipped to white
    assert 0.1 < stats["16"][1][0] < 0.5


def test_to_rgb_scales_by_257_and_rounds():
    values = np.array([[0, 128, 257, 32767, 65534, 65535]], dtype=np.uint16)
    rgb = np.asarray(to_rgb(Image.fromarray(values)))
    assert rgb.shape == (1, 6, 3)
    assert rgb[0, :, 0].tolist() == [0, 0, 1, 127, 255, 255]  # round(v / 257): 128 / 257 = 0.498, 32767 / 257 = 127.5
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    eight = np.array([[0, 100, 255]], dtype=np.uint8)
    assert np.asarray(to_rgb(Image.fromarray(eight)))[0, :, 1].tolist() == [0, 100, 255]  # 8-bit unchanged
