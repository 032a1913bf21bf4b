"""A metric is whatever JSON number the pipeline wrote (the pull request's code, in pr-metrics): a whole number
too large for a float fails the metric gate as not a number, never an internal error."""

from __future__ import annotations

from pathlib import Path

from mlops.store.local import LocalStore
from tests.evaluation.models import Trained
from tests.gates.conftest import gates, one, register


def test_a_metric_too_large_for_a_float_fails_the_gate(store: LocalStore, root: Path, iris: Trained) -> None:
    register(store, iris, accuracy=10 ** 400)
    result = one(gates(store, root, 1, "dev", [{"name": "dev", "gates": [
        {"metric": "accuracy", "op": ">=", "threshold": 0.9}]}]), "metric")
    assert result.status == "failed" and "not a number" in result.summary
