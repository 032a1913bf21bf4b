"""Helpers shared by the wine pipeline's steps: the feature names and the CSV format between steps."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_wine

FEATURES: list[str] = list(load_wine().feature_names)
TARGET = "target"
N_CLASSES = 3


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write features and labels as CSV (header: the 13 feature names, then ``target``), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*FEATURES, TARGET])
        for row, label in zip(x, y, strict=True):
            writer.writerow([*(repr(float(v)) for v in row), int(label)])
    os.replace(tmp, path)


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a CSV written by :func:`write_csv`: float32-safe features ``(N, 13)`` and int labels ``(N,)``."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header != [*FEATURES, TARGET]:
            raise SystemExit(f"{path}: unexpected header {header}")
        rows = [[float(v) for v in row] for row in reader]
    data = np.asarray(rows, dtype=np.float64)
    return data[:, :-1], data[:, -1].astype(np.int64)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, creating parents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
