"""Fit StandardScaler + LogisticRegression on the training CSV and pickle the pipeline."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

from common import atomic_write_bytes, read_csv
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, required=True, help="training CSV from prepare.py")
    parser.add_argument("--model", type=Path, required=True, help="output pickle of the fitted pipeline")
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--max-iter", type=int, default=2000)
    args = parser.parse_args()

    x, y = read_csv(args.train)
    model = Pipeline([
        ("scale", StandardScaler()),
        ("clf", LogisticRegression(C=args.C, max_iter=args.max_iter, random_state=0)),
    ])
    model.fit(x, y)
    # Protocol pinned so the same fit pickles to the same bytes whatever the default becomes.
    atomic_write_bytes(args.model, pickle.dumps(model, protocol=5))
    print(f"train: fitted on {len(y)} rows -> {args.model}")


if __name__ == "__main__":
    main()
