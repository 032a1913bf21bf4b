"""Which training data a model version is compared with, and the lineage entry read back as untrusted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mlops.errors import MonitorError
from mlops.monitoring.baseline import default_reference, read_baseline
from mlops.registry.records import Lineage
from mlops.spec.loader import load_specs

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_is_compared_with_its_training_rows_not_its_held_out_rows() -> None:
    specs = load_specs(ROOT)
    model = specs.models["wine-classifier"]
    pipeline = specs.pipelines["wine-train"]
    # export.onnx <- train.model (a pickle) and prepare.test (the evaluation data); train <- prepare.train
    assert default_reference(model, pipeline) == "prepare.train"
    no_eval = dataclasses.replace(model, evaluation=None)
    assert default_reference(no_eval, pipeline) == "prepare.test"  # the nearest table, when nothing is held out


GOOD = {"reference": "prepare.train", "path": "data/wine/train.csv", "digest": "a" * 64, "label": "target",
        "features": ["x", "y"], "rows": 3, "profile": {}}


@pytest.mark.parametrize(("change", "message"), [
    ({"digest": "../../etc/passwd"}, "digest is not a sha256"),
    ({"path": "model.onnx"}, "path is not a table's file name"),
    ({"features": "x"}, "features is not a list of names"),
    ({"label": 3}, "label is not a name"),
    ({"profile": []}, "profile is not an object"),
])
def test_a_tampered_baseline_is_refused_with_its_field(change: dict[str, object], message: str) -> None:
    assert read_baseline(Lineage(training_data=GOOD), "m@1") == GOOD
    assert read_baseline(Lineage(), "m@1") is None
    with pytest.raises(MonitorError, match=message):
        read_baseline(Lineage(training_data={**GOOD, **change}), "m@1")
