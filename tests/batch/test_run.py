"""Batch runs on real models and real files: predictions next to ids, bad rows set aside, the threshold."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops.batch.deploy import resolve_model, score
from mlops.batch.job import job_for
from mlops.batch.run import Outcome, opened_input
from mlops.errors import BatchError
from mlops.spec.loader import load, load_specs, open_source
from mlops.spec.model import Endpoint
from tests.batch.conftest import Project, endpoint_yaml, features_csv, make_project, many_rows
from tests.evaluation.models import Trained, run_onnx


def run_batch(p: Project, input: str | None = None, output: str | None = None, endpoint: Endpoint | None = None,
              ) -> Outcome:
    # An endpoint given is one the test changed after validation: the specs are read without cross checks.
    specs = load_specs(p.root) if endpoint is None else load(open_source(p.root, None), cross_check=False).specs
    e = endpoint or specs.endpoints["scorer"]
    job = job_for(e, p.root, input, output)
    store = p.store()
    mv, sha = resolve_model(e, specs, store)
    with opened_input(job) as source:
        return score(job, mv, sha, store, source)


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    return rows[0], rows[1:]


def errors_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def set_batch(p: Project, **batch: Any) -> None:
    p.repo.write("endpoints/scorer.yaml", endpoint_yaml("wine@1", **batch))


def test_predictions_are_the_models_own_next_to_row_numbers(project: Project) -> None:
    out = run_batch(project)
    assert out.status == "succeeded" and out.rows == len(project.trained.x) and out.errors == 0
    header, rows = read_csv(project.root / "out" / "pred.csv")
    assert header == ["row", "label", "probability_0", "probability_1", "probability_2"]
    labels, proba = run_onnx(project.trained.path, project.trained.x)
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    assert [int(r[1]) for r in rows] == labels.tolist()
    got = np.array([[float(v) for v in r[2:]] for r in rows], dtype=np.float32)
    assert np.array_equal(got, proba)  # the text reads back as the very float32 the model gave
    assert not (project.root / "out" / "pred.csv.errors.jsonl").exists()
    assert not list((project.root / ".mlops" / "batch" / "scorer").glob("*.partial"))


def test_bad_rows_are_logged_with_their_number_and_reason_and_the_rest_scored(project: Project) -> None:
    t = project.trained
    lines = features_csv(t.x[:6], t.names).splitlines()
    width = len(t.names)
    lines[2] = ",".join(["abc"] + ["1.0"] * (width - 1))  # row 2: not a number
    lines[3] = ",".join(["1.0"] * (width - 1))  # row 3: a field short
    lines[4] = ",".join(["1.0"] * (width - 1) + [""])  # row 4: empty
    lines[5] = ",".join(["nan"] + ["1.0"] * (width - 1))  # row 5: not finite
    project.repo.write("data/in.csv", "\n".join(lines) + "\n\n")  # a blank line is no row
    out = run_batch(project)
    assert (out.status, out.rows, out.errors) == ("succeeded", 6, 4)
    _, rows = read_csv(project.root / "out" / "pred.csv")
    assert [r[0] for r in rows] == ["1", "6"]
    labels, _ = run_onnx(t.path, t.x[[0, 5]])
    assert [int(r[1]) for r in rows] == labels.tolist()
    errors = errors_of(project.root / "out" / "pred.csv.errors.jsonl")
    assert [e["row"] for e in errors] == [2, 3, 4, 5]
    assert "'abc' (not a number)" in errors[0]["error"] and t.names[0] in errors[0]["error"]
    assert f"{width - 1} fields, the header has {width}" in errors[1]["error"]
    assert f"column {t.names[-1]!r} is empty" in errors[2]["error"]
    assert "not a finite number" in errors[3]["error"]
    assert "4 set aside" in out.message


def test_a_run_without_errors_removes_the_errors_log_of_an_earlier_one(project: Project) -> None:
    good = (project.root / "data" / "in.csv").read_text()
    project.repo.write("data/in.csv", good + "x" * 3 + "\n")
    assert run_batch(project).errors == 1
    project.repo.write("data/in.csv", good)
    assert run_batch(project).errors == 0
    assert not (project.root / "out" / "pred.csv.errors.jsonl").exists()


def test_the_error_threshold_stops_the_run_and_keeps_the_output_out(project: Project) -> None:
    t = project.trained
    lines = features_csv(t.x[:40], t.names).splitlines()
    for i in (3, 11, 25):
        lines[i] = "x" + lines[i]
    project.repo.write("data/in.csv", "\n".join(lines) + "\n")
    set_batch(project, error_threshold=2, mini_batch_size=10)
    out = run_batch(project)
    assert out.status == "failed" and out.errors == 3
    assert "stopped after 3 rows failed (error_threshold 2)" in out.message
    assert not (project.root / "out" / "pred.csv").exists()
    assert [e["row"] for e in errors_of(project.root / "out" / "pred.csv.errors.jsonl")] == [3, 11, 25]
    set_batch(project, error_threshold=3, mini_batch_size=10)  # exactly at the threshold: fine
    out = run_batch(project)
    assert out.status == "succeeded" and out.rows == 40 and out.errors == 3
    assert len(read_csv(project.root / "out" / "pred.csv")[1]) == 37


def test_an_id_column_names_the_rows_even_quoted_with_commas_and_newlines(tmp_path: Path, wine: Trained) -> None:
    ids = [f"s-{i}" for i in range(len(wine.x))]
    ids[1], ids[2] = "a, b", 'line\nbreak "q"'
    p = make_project(tmp_path / "repo", wine, features_csv(wine.x, wine.names, ids),
                     endpoint=endpoint_yaml("wine@1", id_column="sample", mini_batch_size=5))
    p.register()
    out = run_batch(p)
    assert out.status == "succeeded" and out.errors == 0
    header, rows = read_csv(p.root / "out" / "pred.csv")
    assert header[:2] == ["sample", "label"]
    assert [r[0] for r in rows] == ids
    assert [int(r[1]) for r in rows] == run_onnx(wine.path, wine.x)[0].tolist()


def test_the_same_rows_give_the_same_bytes_from_csv_jsonl_and_parquet(tmp_path: Path, wine: Trained) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = many_rows(wine, 2500)
    p = make_project(tmp_path / "repo", wine, features_csv(x, wine.names))
    p.register()
    table = pa.table({n: x[:, j] for j, n in enumerate(wine.names)})
    pq.write_table(table, p.root / "data" / "in.parquet", row_group_size=333)  # mini-batches cross row groups
    with open(p.root / "data" / "in.jsonl", "w") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row) + "\n")
    outputs = {}
    for fmt in ("csv", "parquet", "jsonl"):
        set_batch(p, input=f"data/in.{fmt}", mini_batch_size=100)
        assert run_batch(p).rows == 2500
        outputs[fmt] = (p.root / "out" / "pred.csv").read_bytes()
    assert outputs["csv"] == outputs["parquet"] == outputs["jsonl"]
    # Another mini-batch size: the same predictions (onnxruntime's last float32 bit may differ with the batch
    # size, which is why the size is part of a run's identity when it resumes).
    set_batch(p, mini_batch_size=7)
    run_batch(p)
    _, small = read_csv(p.root / "out" / "pred.csv")
    _, big = read_csv(_tmp(tmp_path, outputs["csv"]))
    assert [r[:2] for r in small] == [r[:2] for r in big]
    assert np.allclose(np.array([r[2:] for r in small], float), np.array([r[2:] for r in big], float), atol=1e-6)
    set_batch(p, output="out/pred.jsonl", mini_batch_size=100)
    run_batch(p)
    lines = (p.root / "out" / "pred.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert list(first) == ["row", "label", "probability_0", "probability_1", "probability_2"]
    assert len(lines) == 2500 and [str(v) for v in first.values()] == big[0]


def _tmp(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "copy.csv"
    path.write_bytes(data)
    return path


def test_jsonl_lines_that_are_no_object_or_miss_a_feature_are_set_aside(tmp_path: Path, wine: Trained) -> None:
    rows = [dict(zip(wine.names, map(float, r), strict=True)) for r in wine.x[:5]]
    lines = [json.dumps(r) for r in rows]
    lines[1] = "{not json"
    lines[2] = json.dumps([1, 2, 3])
    lines[3] = json.dumps({k: v for k, v in rows[3].items() if k != wine.names[4]})
    p = make_project(tmp_path / "repo", wine, "", files={"data/in.jsonl": "\n".join(lines) + "\n"},
                     endpoint=endpoint_yaml("wine@1", input="data/in.jsonl"))
    p.register()
    out = run_batch(p)
    assert (out.rows, out.errors) == (5, 3)
    errors = errors_of(p.root / "out" / "pred.csv.errors.jsonl")
    assert [e["row"] for e in errors] == [2, 3, 4]
    assert errors[0]["error"].startswith("not JSON") and "not an object" in errors[1]["error"]
    assert f"column {wine.names[4]!r} is empty" in errors[2]["error"]
    assert [r[0] for r in read_csv(p.root / "out" / "pred.csv")[1]] == ["1", "5"]


def test_parquet_nulls_are_set_aside(tmp_path: Path, wine: Trained) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {n: pa.array([None if (i == 2 and j == 3) else float(v) for i, v in enumerate(wine.x[:6, j])])
            for j, n in enumerate(wine.names)}
    p = make_project(tmp_path / "repo", wine, "", endpoint=endpoint_yaml("wine@1", input="data/in.parquet"))
    pq.write_table(pa.table(cols), p.root / "data" / "in.parquet")
    p.register()
    out = run_batch(p)
    assert (out.rows, out.errors) == (6, 1)
    assert errors_of(p.root / "out" / "pred.csv.errors.jsonl")[0] == {
        "row": 3, "error": f"column {wine.names[3]!r} is empty"}


def test_regressors_give_a_prediction_and_zipmap_classifiers_their_classes(tmp_path: Path, diabetes: Trained,
                                                                           wine_zipmap: Trained) -> None:
    p = make_project(tmp_path / "r1", diabetes, features_csv(diabetes.x, diabetes.names))
    p.register()
    assert run_batch(p).status == "succeeded"
    header, rows = read_csv(p.root / "out" / "pred.csv")
    assert header == ["row", "prediction"]
    want = run_onnx(diabetes.path, diabetes.x)[0].reshape(-1)
    assert np.array_equal(np.array([float(r[1]) for r in rows], dtype=np.float32), want)
    q = make_project(tmp_path / "r2", wine_zipmap, features_csv(wine_zipmap.x, wine_zipmap.names))
    q.register()
    assert run_batch(q).status == "succeeded"
    header, rows = read_csv(q.root / "out" / "pred.csv")
    assert header == ["row", "label", "probability_0", "probability_1", "probability_2"]
    zipmap = run_onnx(wine_zipmap.path, wine_zipmap.x)[1]
    assert float(rows[7][3]) == pytest.approx(zipmap[7][1], rel=1e-6)


def test_a_model_that_takes_another_number_of_features_is_refused(tmp_path: Path, wine: Trained) -> None:
    p = make_project(tmp_path / "repo", wine, features_csv(wine.x[:, :5], wine.names[:5]))
    p.register()
    with pytest.raises(BatchError, match="takes 13 features, the input has 5 feature columns"):
        run_batch(p)


def test_a_second_run_of_the_same_endpoint_is_refused_while_one_runs(project: Project) -> None:
    import fcntl
    import os

    work = project.root / ".mlops" / "batch" / "scorer"
    work.mkdir(parents=True)
    fd = os.open(work / "lock", os.O_WRONLY | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(BatchError, match="another batch run of endpoint 'scorer' is running"):
            run_batch(project)
    finally:
        os.close(fd)
    assert run_batch(project).status == "succeeded"


def test_crlf_lines_and_a_bom_read_as_plain_lines_and_a_header_alone_gives_a_header(project: Project) -> None:
    plain = run_batch(project)
    lf = (project.root / "out" / "pred.csv").read_bytes()
    text = (project.root / "data" / "in.csv").read_text()
    (project.root / "data" / "in.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert run_batch(project).rows == plain.rows
    assert (project.root / "out" / "pred.csv").read_bytes() == lf
    (project.root / "data" / "in.csv").write_text(text.splitlines()[0] + "\n")
    out = run_batch(project)
    assert (out.status, out.rows) == ("succeeded", 0)
    assert read_csv(project.root / "out" / "pred.csv") == (
        ["row", "label", "probability_0", "probability_1", "probability_2"], [])


def test_an_empty_input_or_a_header_without_the_id_column_is_a_clear_error(project: Project) -> None:
    (project.root / "data" / "in.csv").write_text("")
    with pytest.raises(BatchError, match="the file is empty; a CSV input starts with a header row"):
        run_batch(project)
    (project.root / "data" / "in.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(BatchError, match="column 'a' appears twice in the header"):
        run_batch(project)
    set_batch(project, id_column="sample")
    (project.root / "data" / "in.csv").write_text(features_csv(project.trained.x[:2], project.trained.names))
    with pytest.raises(BatchError, match="no column 'sample' \\(batch.id_column\\) in the header"):
        run_batch(project)


def test_a_row_csv_cannot_read_at_all_is_set_aside_and_its_neighbours_scored(project: Project) -> None:
    t = project.trained
    lines = features_csv(t.x[:4], t.names).splitlines()
    lines[2] = "x" * 200_000 + "," + ",".join(["1.0"] * (len(t.names) - 1))  # a field over csv's size limit
    project.repo.write("data/in.csv", "\n".join(lines) + "\n")
    out = run_batch(project)
    assert (out.status, out.rows, out.errors) == ("succeeded", 4, 1)
    assert [r[0] for r in read_csv(project.root / "out" / "pred.csv")[1]] == ["1", "3", "4"]
    error = errors_of(project.root / "out" / "pred.csv.errors.jsonl")[0]
    assert error["row"] == 2 and "not a CSV row: field larger than field limit" in error["error"]
