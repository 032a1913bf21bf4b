"""Where the held-out data comes from, and what is refused: bad CSVs, oversized files, links out of the repo."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mlops.errors import EvaluationError
from mlops.evaluation import data as evaldata
from mlops.evaluation import evaluate_version
from mlops.evaluation.data import read_table, resolve_data
from mlops.pipelines.record import RunRecord, StepRecord, save_run
from mlops.spec.model import Dataset
from mlops.store.local import LocalStore
from tests.evaluation.conftest import model_spec, register
from tests.evaluation.models import Trained


def save(root: Path, rel: str, data: bytes) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)


def record_run(store: LocalStore, outputs: dict[str, str], run_id: str = "20260101T000000000000Z-aaaaaa",
               status: str = "succeeded") -> None:
    save_run(store, RunRecord(run_id, "train", status, "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z",
                              steps=(StepRecord("prepare", "ran", outputs=outputs),)))


def test_step_output_is_read_from_the_run_record_not_the_workspace(store: LocalStore, root: Path,
                                                                   iris: Trained) -> None:
    digest = store.put_bytes(iris.csv)
    record_run(store, {"test": digest})
    record_run(store, {"test": store.put_bytes(b"x\n")}, run_id="20270101T000000000000Z-bbbbbb", status="failed")
    save(root, "data/holdout.csv", b"a,target\n1,0\n")  # the workspace copy, edited since the run: not used
    found = resolve_data(store, model_spec("prepare.test"), root)
    assert found.digest == digest and found.content == iris.csv and found.ref == "prepare.test"
    ev = evaluate_version(store, model_spec("prepare.test"), register(store, iris), root)
    assert ev.data == "prepare.test" and ev.data_digest == digest and ev.rows == len(iris.y)


def test_dataset_and_repository_paths_are_read_confined(store: LocalStore, root: Path, tmp_path: Path,
                                                       iris: Trained) -> None:
    save(root, "data/holdout.csv", iris.csv)
    datasets = {"holdout": Dataset("holdout", "data/holdout.csv")}
    by_dataset = resolve_data(store, model_spec("${datasets.holdout}"), root, datasets=datasets)
    by_path = resolve_data(store, model_spec("data/holdout.csv"), root)
    assert by_dataset.digest == by_path.digest == hashlib.sha256(iris.csv).hexdigest()
    (tmp_path / "secret.csv").write_bytes(iris.csv)
    os.symlink(tmp_path / "secret.csv", root / "data/out.csv")
    with pytest.raises(EvaluationError, match=r"models/iris.yaml: \$.evaluation.data: .*out.csv"):
        resolve_data(store, model_spec("data/out.csv"), root)
    with pytest.raises(EvaluationError, match="dataset 'nope' does not exist"):
        resolve_data(store, model_spec("${datasets.nope}"), root, datasets=datasets)
    with pytest.raises(EvaluationError, match="missing.csv does not exist"):
        resolve_data(store, model_spec("data/missing.csv"), root)
    with pytest.raises(EvaluationError, match="is a directory"):
        resolve_data(store, model_spec("data"), root)


def test_missing_runs_outputs_and_evaluation_sections_are_clear(store: LocalStore, root: Path) -> None:
    with pytest.raises(EvaluationError, match=r"pipeline 'train' has no successful run with a step 'prepare'.*"
                                              r"mlops run train"):
        resolve_data(store, model_spec("prepare.test"), root)
    record_run(store, {"train": store.put_bytes(b"a,target\n1,0\n")})
    with pytest.raises(EvaluationError, match="the run recorded no output 'test' of step 'prepare'"):
        resolve_data(store, model_spec("prepare.test"), root)
    spec = model_spec()
    spec = type(spec)(spec.name, spec.flavor, spec.source, file=spec.file)
    with pytest.raises(EvaluationError, match=r"models/iris.yaml: model 'iris' has no evaluation data: add evaluation"):
        resolve_data(store, spec, root)


def test_oversized_data_is_refused_before_it_is_parsed(store: LocalStore, root: Path, iris: Trained,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaldata, "MAX_DATA_BYTES", 500)
    save(root, "data/holdout.csv", iris.csv)
    with pytest.raises(EvaluationError, match=rf"data/holdout.csv has {len(iris.csv)} bytes; evaluation data may "
                                              r"have at most 500"):
        resolve_data(store, model_spec(), root)
    record_run(store, {"test": store.put_bytes(iris.csv)})
    with pytest.raises(EvaluationError, match=rf"output 'test' of step 'prepare' .* has {len(iris.csv)} bytes"):
        resolve_data(store, model_spec("prepare.test"), root)


@pytest.mark.parametrize(("csv", "message"), [
    (b"a,b,label\n1,2,0\n", r"the header has no label column 'target'; columns: a, b, label"),
    (b"a,b,target\n1,2,0\n3,x,1\n", r"line 3, column 'b': 'x' is not a number"),
    (b"a,b,target\n1,2,0\n3,1\n", r"line 3 has 2 fields, the header 3"),
    (b"a,b,target\n", r"the data has a header but no rows"),
    (b"target\n1\n", r"the data has no feature columns besides 'target'"),
    (b"a,a,target\n1,2,0\n", r"the header names column\(s\) 'a' twice"),
    (b"a,b,target\n\xff\xfe,1,0\n", r"not UTF-8 text \(at byte offset 11\)"),
    (b"a,b,target\n1,2,0\n3,nan,1\n", r"data row 2, column 'b': nan is not a finite number"),
    (b"a,b,target\n1,-inf,0\n", r"data row 1, column 'b': -inf is not a finite number"),
    (b"a,b,target\n1,1e999,0\n", r"data row 1, column 'b': inf is not a finite number"),
])
def test_bad_tables_are_named_with_line_and_column(csv: bytes, message: str) -> None:
    with pytest.raises(EvaluationError, match=r"^held-out.csv: " + f"(?:{message})"):
        read_table(csv, "target", "held-out.csv")


def test_label_column_close_match_and_mismatched_models(store: LocalStore, root: Path, iris: Trained) -> None:
    with pytest.raises(EvaluationError, match=r"no label column 'targte' \(did you mean 'target'\?\)"):
        read_table(iris.csv, "targte", "d.csv")
    text = iris.csv.decode().replace("target", "species")
    save(root, "data/holdout.csv", b"a,b,target\n1,2,0\n")
    with pytest.raises(EvaluationError, match=r"iris@1: the data has 2 feature columns, the model's input 'input' "
                                              r"takes 4"):
        evaluate_version(store, model_spec(), register(store, iris), root)
    save(root, "data/holdout.csv", text.replace(",0\n", ",setosa\n", 1).encode())
    spec = model_spec(label="species")
    with pytest.raises(EvaluationError, match="label 'setosa' in column 'species' is not a number"):
        evaluate_version(store, spec, 1, root)


def test_a_version_without_an_onnx_file_is_refused(store: LocalStore, root: Path, tmp_path: Path) -> None:
    from mlops.registry.models import register_model

    (tmp_path / "model.pkl").write_bytes(b"pickle")
    register_model(store, "iris", [tmp_path / "model.pkl"], flavor="pickle")
    save(root, "data/holdout.csv", b"a,target\n1,0\n")
    with pytest.raises(EvaluationError, match=r"iris@1 has no .onnx file \(flavor pickle; files: model.pkl\)"):
        evaluate_version(store, model_spec(), 1, root)


def test_a_very_wide_header_is_read_in_linear_time() -> None:
    """300,000 columns (2 MiB, far below the size limit): the duplicate and label checks stay linear."""
    import time

    n = 300_000
    csv = ("".join(f"c{i}," for i in range(n)) + "target\n" + "1," * n + "0\n").encode()
    start = time.monotonic()
    table = read_table(csv, "target", "wide.csv")
    assert table.features.shape == (1, n)
    with pytest.raises(EvaluationError, match="no label column 'label'"):
        read_table(csv, "label", "wide.csv")
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("label", ["nan", "inf"])
def test_a_label_that_is_not_a_finite_number_is_refused(store: LocalStore, root: Path, label: str) -> None:
    from tests.evaluation.models import train

    t = train("diabetes", root.parent / "ridge.onnx")
    rows = t.csv.decode().splitlines()
    rows[1] = rows[1].rsplit(",", 1)[0] + f",{label}"
    save(root, "data/holdout.csv", ("\n".join(rows) + "\n").encode())
    with pytest.raises(EvaluationError, match=f"label '{label}' in column 'target' is not a finite number"):
        evaluate_version(store, model_spec(task="regression"), register(store, t), root)


def test_a_classifier_whose_probabilities_are_nan_has_no_log_loss_and_scores(store: LocalStore, root: Path,
                                                                           tmp_path: Path) -> None:
    """A hostile model's NaN "probabilities" are no internal error: the record simply has no log loss."""
    import onnx
    from onnx import TensorProto, helper

    from mlops.registry.models import register_model

    c = helper.make_tensor
    nodes = [helper.make_node("Constant", [], ["st"], value=c("st", TensorProto.INT64, [1], [0])),
             helper.make_node("Constant", [], ["en"], value=c("en", TensorProto.INT64, [1], [3])),
             helper.make_node("Constant", [], ["ax"], value=c("ax", TensorProto.INT64, [1], [1])),
             helper.make_node("Slice", ["input", "st", "en", "ax"], ["x3"]),
             helper.make_node("Sub", ["x3", "x3"], ["z"]),
             helper.make_node("ArgMax", ["z"], ["label"], axis=1, keepdims=0),
             helper.make_node("Div", ["z", "z"], ["proba"])]  # 0 / 0
    graph = helper.make_graph(nodes, "nan", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                               helper.make_tensor_value_info("proba", TensorProto.FLOAT, [None, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "nan.onnx")
    register_model(store, "iris", [tmp_path / "nan.onnx"], flavor="onnx")
    save(root, "data/holdout.csv", b"a,b,c,d,target\n" + b"1,2,3,4,0\n1,2,3,5,1\n1,2,3,6,2\n" * 3)
    ev = evaluate_version(store, model_spec(), 1, root)
    assert "log_loss" not in ev.metrics and ev.metrics["accuracy"] == pytest.approx(1 / 3)
