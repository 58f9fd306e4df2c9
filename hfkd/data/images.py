"""Decoding one dataset image into 8-bit RGB by its real bit depth, with a bad image named by its split and row.

PIL's ``convert("RGB")`` clips 16-bit grayscale (modes ``I;16*`` and ``I``) at 255, which turns almost every pixel
white; here such images are scaled from their 16-bit range instead (``value / 257``, so 65535 -> 255, the scaling
PIL itself uses when it reduces 16-bit RGB PNGs). An image that does not decode (truncated, not an image), or whose
header declares more pixels than PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), is a
``DataError`` naming the split and row, raised before its pixels are decoded.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DataError

# modes whose samples are 16-bit integers (PNG and TIFF 16-bit grayscale decode to these; "I" is 32-bit storage
# that PIL also uses for 16-bit files)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB; 16-bit grayscale is scaled (``/ 257``, rounded, clipped to 0..65535 first)."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64).clip(0, 65535)
        return Image.fromarray(np.rint(values / 257.0).astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def describe_row(split: str, row: int, item: Any = None) -> str:
    """``'row 7 of the train split'``, with the image's file when the dataset recorded one."""
    path = item.get("path") if isinstance(item, dict) else None
    return f"the image in row {row} of the {split} split" + (f" ({path})" if path else "")


def open_image(item: Any, split: str, row: int) -> Image.Image:
    """A dataset image cell (``{"bytes", "path"}`` as ``datasets.Image(decode=False)`` gives it, or a PIL image)
    opened lazily: its header is read and checked, its pixels are not decoded yet. Raises ``DataError``."""
    if isinstance(item, Image.Image):
        return item
    where = describe_row(split, row, item)
    if not isinstance(item, dict) or (item.get("bytes") is None and item.get("path") is None):
        raise DataError(f"{where} is empty (no bytes and no path)")
    source = io.BytesIO(item["bytes"]) if item.get("bytes") is not None else item["path"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(
            f"{where} declares more pixels than PIL's decompression-bomb limit ({Image.MAX_IMAGE_PIXELS:,}); "
            f"remove it from the dataset"
        ) from None
    except Exception as err:  # noqa: BLE001  PIL raises UnidentifiedImageError, OSError, SyntaxError ...
        raise DataError(f"{where} is not an image PIL can read ({_first_line(err)})") from None


def decode_rgb(item: Any, split: str, row: int) -> Image.Image:
    """The image of a dataset cell as 8-bit RGB (``to_rgb``), fully decoded; a truncated or corrupt image is a
    ``DataError`` naming the split and row."""
    image = open_image(item, split, row)
    try:
        image.load()
        return to_rgb(image)
    except Exception as err:  # noqa: BLE001  truncated JPEG / PNG data: OSError, SyntaxError, zlib errors
        raise DataError(f"{describe_row(split, row, item)} is truncated or corrupt ({_first_line(err)})") from None
    finally:
        image.close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:120] if text else type(err).__name__
