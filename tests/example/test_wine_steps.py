"""The example project's step scripts run, in order, exactly as pipelines/wine.yaml declares them."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "pipelines" / "wine.yaml"
REF = re.compile(r"\$\{([^}]+)\}")

pytestmark = pytest.mark.slow


def _resolve(text: str, step: dict[str, Any], params: dict[str, Any], produced: dict[str, dict[str, str]]) -> str:
    """The runner's ${...} substitution, restricted to what this pipeline uses."""

    def one(m: re.Match[str]) -> str:
        parts = m.group(1).split(".")
        if parts[0] == "params":
            return str(params[parts[1]])
        if parts[0] == "outputs":
            return str(step["outputs"][parts[1]])
        if parts[0] == "inputs":
            return _resolve(step["inputs"][parts[1]], step, params, produced)
        if parts[0] == "steps":
            return produced[parts[1]][parts[3]]
        raise AssertionError(f"unexpected reference {m.group(0)}")

    return REF.sub(one, text)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the step code, with the four steps run in it in declared order."""
    root = tmp_path_factory.mktemp("wine")
    shutil.copytree(REPO / "pipelines" / "wine", root / "pipelines" / "wine",
                    ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load(SPEC.read_text())
    produced: dict[str, dict[str, str]] = {}
    for step in spec["steps"]:
        params = {**spec.get("params", {}), **step.get("params", {})}
        argv = [_resolve(str(a), step, params, produced) for a in step["command"]]
        assert argv[0] == "python"
        env = {**os.environ, "MLOPS_PARAMS": json.dumps(params)}
        proc = subprocess.run([sys.executable, *argv[1:]], cwd=root, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"step {step['name']} failed:\n{proc.stderr}"
        produced[step["name"]] = dict(step.get("outputs", {}))
        for out in produced[step["name"]].values():
            assert (root / out).is_file(), f"step {step['name']} did not write {out}"
    return root


def test_split_is_stratified_with_named_columns(run: Path) -> None:
    header = (run / "data/wine/train.csv").read_text().splitlines()[0].split(",")
    assert len(header) == 14 and header[-1] == "target" and header[0] == "alcohol"
    test_rows = (run / "data/wine/test.csv").read_text().splitlines()[1:]
    assert len(test_rows) == 45  # 25% of 178, rounded up by scikit-learn
    assert {row.rsplit(",", 1)[1] for row in test_rows} == {"0", "1", "2"}


def test_metrics_are_good_enough(run: Path) -> None:
    metrics = json.loads((run / "artifacts/wine/metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9
    assert metrics["f1_macro"] >= 0.9
    assert metrics["n_test"] == 45
    assert sum(map(sum, metrics["confusion_matrix"])) == 45
    assert 0 < metrics["log_loss"] < 1


def test_onnx_model_agrees_with_sklearn(run: Path) -> None:
    model = pickle.loads((run / "artifacts/wine/model.pkl").read_bytes())
    lines = (run / "data/wine/test.csv").read_text().splitlines()[1:]
    x = np.array([[float(v) for v in line.split(",")[:-1]] for line in lines])
    session = ort.InferenceSession(str(run / "artifacts/wine/model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    labels, proba = session.run(None, {"input": x.astype(np.float32)})
    assert labels.dtype == np.int64 and proba.shape == (45, 3)
    np.testing.assert_array_equal(labels, model.predict(x))
    np.testing.assert_allclose(proba, model.predict_proba(x), atol=1e-4)


def test_training_is_byte_for_byte_reproducible(run: Path) -> None:
    again = run / "artifacts/wine/model-again.pkl"
    subprocess.run([sys.executable, "pipelines/wine/train.py", "--train", "data/wine/train.csv",
                    "--model", str(again), "--C", "1.0", "--max-iter", "2000"], cwd=run, check=True,
                   capture_output=True, env={**os.environ, "PYTHONHASHSEED": "1"})
    assert again.read_bytes() == (run / "artifacts/wine/model.pkl").read_bytes()


def test_export_refuses_a_test_file_it_cannot_read(run: Path) -> None:
    bad = run / "data/wine/bad.csv"
    bad.write_text("a,b,target\n1,2,0\n")
    proc = subprocess.run([sys.executable, "pipelines/wine/export.py", "--model", "artifacts/wine/model.pkl",
                           "--test", str(bad), "--onnx", "artifacts/wine/bad.onnx"],
                          cwd=run, capture_output=True, text=True)
    assert proc.returncode != 0 and "unexpected header" in proc.stderr
    assert not (run / "artifacts/wine/bad.onnx").exists()
