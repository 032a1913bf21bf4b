"""Split scikit-learn's bundled wine data set (no download) into stratified train/test CSVs."""

from __future__ import annotations

import argparse
from pathlib import Path

from common import FEATURES, write_csv
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, required=True, help="output CSV of the training rows")
    parser.add_argument("--test", type=Path, required=True, help="output CSV of the held-out rows")
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    data = load_wine()
    assert list(data.feature_names) == FEATURES
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=args.test_size, random_state=args.seed, stratify=data.target
    )
    write_csv(args.train, x_train, y_train)
    write_csv(args.test, x_test, y_test)
    print(f"prepare: {len(y_train)} train rows -> {args.train}, {len(y_test)} test rows -> {args.test}")


if __name__ == "__main__":
    main()
