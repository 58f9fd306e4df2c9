"""Data: ``datasets`` sources, the references' transform presets, and decode-once storage for small images."""

from .collate import collate_image_batch, example_batch
from .decoded import DecodedImageDataset, decode_images
from .normalization import KNOWN_STATISTICS, compute_statistics, known_statistics
from .pipeline import PreparedData, prepare_datasets
from .sources import BUILTIN_PREFIX, ClassificationSplits, detect_columns, load_splits

__all__ = [
    "BUILTIN_PREFIX",
    "KNOWN_STATISTICS",
    "ClassificationSplits",
    "DecodedImageDataset",
    "PreparedData",
    "collate_image_batch",
    "compute_statistics",
    "decode_images",
    "detect_columns",
    "example_batch",
    "known_statistics",
    "load_splits",
    "prepare_datasets",
]
