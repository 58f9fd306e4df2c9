"""Build hfkd's built-in quickstart dataset: a class-balanced prefix of the real CIFAR-10 images.

    python scripts/build_quickstart_dataset.py ../shared/data/cifar10_jpeg

The source rows are interleaved round-robin by class (row r has class r % 10), so the first N rows of each split
hold N/10 images of every class. The JPEG bytes are copied unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import datasets
import pyarrow.parquet as pq

TRAIN_ROWS = 5000
TEST_ROWS = 1000
TARGET = Path(__file__).resolve().parents[1] / "hfkd" / "builtin_datasets" / "cifar10-quickstart"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="folder with train-/test-00000-of-00001.parquet (CIFAR-10, img/label)")
    source = Path(parser.parse_args().source)
    for split, rows in (("train", TRAIN_ROWS), ("test", TEST_ROWS)):
        ds = datasets.load_dataset("parquet", data_files=str(source / f"{split}-00000-of-00001.parquet"), split="train")
        subset = ds.select(range(rows))
        counts = subset.to_pandas()["label"].value_counts()
        assert counts.nunique() == 1, f"{split} prefix is not class-balanced: {counts.to_dict()}"
        # zstd shares the JPEG headers that repeat in every row (datasets' own to_parquet fixes the codec)
        table = subset.flatten_indices().data.table
        pq.write_table(table, TARGET / f"{split}.parquet", compression="zstd", compression_level=19)
        print(f"{split}: {rows} rows, {counts.iloc[0]} per class -> {TARGET / f'{split}.parquet'}")


if __name__ == "__main__":
    main()
