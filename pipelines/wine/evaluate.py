"""Score the pickled model on the test CSV and write its metrics as a JSON object."""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

from common import N_CLASSES, atomic_write_bytes, read_csv
from sklearn import metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="pickle from train.py")
    parser.add_argument("--test", type=Path, required=True, help="test CSV from prepare.py")
    parser.add_argument("--metrics", type=Path, required=True, help="output JSON of metrics")
    args = parser.parse_args()

    model = pickle.loads(args.model.read_bytes())
    x, y = read_csv(args.test)
    pred = model.predict(x)
    proba = model.predict_proba(x)
    labels = list(range(N_CLASSES))
    result = {
        "accuracy": metrics.accuracy_score(y, pred),
        "f1_macro": metrics.f1_score(y, pred, average="macro"),
        "precision_macro": metrics.precision_score(y, pred, average="macro", zero_division=0),
        "recall_macro": metrics.recall_score(y, pred, average="macro", zero_division=0),
        "log_loss": metrics.log_loss(y, proba, labels=labels),
        "confusion_matrix": metrics.confusion_matrix(y, pred, labels=labels).tolist(),
        "n_test": len(y),
    }
    result = {k: (round(float(v), 6) if isinstance(v, float) else v) for k, v in result.items()}
    atomic_write_bytes(args.metrics, (json.dumps(result, indent=2, sort_keys=True) + "\n").encode())
    print(f"evaluate: accuracy={result['accuracy']} f1_macro={result['f1_macro']} -> {args.metrics}")


if __name__ == "__main__":
    main()
