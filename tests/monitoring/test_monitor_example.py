"""`mlops monitor` on the example project: the baseline registered with the version, captured requests
compared with it, the report, events, the endpoint's action (a GitHub issue) and operational alerts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.githubstub import GitHubStub
from tests.gitrepo import Repo, example_repo, mlops
from tests.servers import stop_servers

pytestmark = pytest.mark.slow

FEATURES = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
            "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280/od315_of_diluted_wines",
            "proline"]


@pytest.fixture()
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    repo = example_repo(tmp_path_factory.mktemp("monitor") / "repo", commit=False)
    spec = repo.path / "endpoints" / "wine.yaml"
    spec.write_text(spec.read_text().replace(
        "  alerts:\n",
        "  alerts:\n    - {name: busy, metric: requests, op: \">=\", threshold: 1, min_requests: 1}\n"))
    repo.commit("example project, with an alert that fires on any traffic")
    try:
        yield repo
    finally:
        stop_servers(repo.path)


def _wine(shift: bool) -> np.ndarray:
    from sklearn.datasets import load_wine

    x = load_wine().data.astype(np.float32)
    if shift:  # 7 of 13 features: more than the share (0.5) that makes the data set drift
        x[:, 0] += 3.0  # alcohol
        x[:, 1] += 2.0  # malic_acid
        x[:, 2] += 1.0  # ash
        x[:, 4] *= 1.5  # magnesium
        x[:, 9] += 3.0  # color_intensity
        x[:, 10] *= 0.5  # hue
        x[:, 12] *= 2.0  # proline
    return x


SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SHIFTED = {"alcohol", "malic_acid", "ash", "magnesium", "color_intensity", "hue", "proline"}


def _invoke(repo: Repo, rows: np.ndarray, tmp: Path) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                        "data": [float(v) for v in rows.ravel()]}]}
    path = tmp / "request.json"
    path.write_text(json.dumps(body))
    mlops(repo, "endpoints", "invoke", "wine", "--data", str(path))
    time.sleep(1.5)  # the server's writer thread takes what was captured every 0.5 s


def _send(repo: Repo, sample: str) -> None:
    mlops(repo, "endpoints", "invoke", "wine", "--data", str(SAMPLES / sample))
    time.sleep(1.5)  # the server's writer thread takes what was captured every 0.5 s


def test_the_samples_are_the_data_set_and_its_shifted_copy() -> None:
    for name, shift in (("wine-all.json", False), ("wine-shifted.json", True)):
        [tensor] = json.loads((SAMPLES / name).read_text())["inputs"]
        sent = np.array(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        assert np.allclose(sent, _wine(shift), atol=1e-3)


def test_captured_requests_are_compared_with_the_versions_training_data(repo: Repo, tmp_path: Path) -> None:
    mlops(repo, "reconcile")
    version = json.loads(mlops(repo, "models", "show", "wine-classifier", "--output", "json").stdout)
    baseline = version["lineage"]["training_data"]
    assert baseline["reference"] == "prepare.train" and baseline["label"] == "target"
    assert baseline["features"] == FEATURES and baseline["rows"] == 133 and len(baseline["digest"]) == 64
    assert baseline["profile"]

    _send(repo, "wine-all.json")  # the README's samples: the whole data set, what the model was trained on
    quiet = json.loads(mlops(repo, "monitor", "wine", "--output", "json", "--no-notify").stdout)[0]
    [c] = quiet["comparisons"]
    assert (c["model"], c["version"], c["deployments"], c["rows"]) == ("wine-classifier", 1, ["blue"], 178)
    assert c["dataset_drift"] is False and c["drifted"] == [] and c["quality_passed"] is True
    assert [f["name"] for f in c["report"]["features"]] == FEATURES
    assert c["report"]["prediction"]["drifted"] is False
    assert Path(c["html"]).is_file() and "<svg" in Path(c["html"]).read_text()
    assert quiet["events"] == []  # --no-notify

    _send(repo, "wine-shifted.json")  # the same wines, 7 of 13 features shifted
    with GitHubStub("octo/wine") as gh:
        out = mlops(repo, "monitor", "wine", "--output", "json", env=gh.env())
        shifted = json.loads(out.stdout)[0]
        [c] = shifted["comparisons"]
        assert c["rows"] == 356
        assert set(c["drifted"]) >= {"alcohol", "proline"} and c["dataset_drift"] is True, c["drifted"]
        assert "drift.detected" in shifted["events"]
        # the operational rule: one request since the last monitor run
        assert [a["alert"] for a in shifted["alerts"]] == ["busy"] and shifted["alerts"][0]["value"] == 1
        assert "alert.fired" in shifted["events"]
        # the endpoint's action: one issue for the endpoint, commented on by each event
        assert [i["title"] for i in gh.issues] == ["mlops: endpoint/wine"]
        assert any("drift.detected" in c["body"] for c in [gh.issues[0], *gh.comments])
    log = (repo.path / ".mlops" / "events.jsonl").read_text()
    assert "dev.mlops.drift.detected" in log and "dev.mlops.alert.fired" in log

    text = mlops(repo, "monitor", "wine", "--no-notify").stdout
    assert "DRIFT" in text and "alcohol" in text and "report: " in text
    assert mlops(repo, "monitor", "wine", "--no-notify", "--fail-on-drift", check=False).returncode == 1


def test_files_can_be_compared_without_a_live_endpoint(repo: Repo, tmp_path: Path) -> None:
    header = ",".join(FEATURES)
    ref, cur = tmp_path / "ref.csv", tmp_path / "cur.csv"
    np.savetxt(ref, _wine(shift=False), delimiter=",", header=header, comments="")
    np.savetxt(cur, _wine(shift=True), delimiter=",", header=header, comments="")
    out = json.loads(mlops(repo, "monitor", "wine", "--reference", str(ref), "--current", str(cur),
                           "--output", "json").stdout)[0]
    [c] = out["comparisons"]
    assert set(c["drifted"]) == SHIFTED and c["dataset_drift"] is True
    assert any("not running" in w for w in out["warnings"])
    assert out["events"] == ["drift.detected"]

    # action: retrain dispatches the event the retraining workflow listens for, naming the model
    repo.edit("endpoints/wine.yaml", "action: issue", "action: retrain")
    repo.commit("retrain on drift")
    with GitHubStub("octo/wine") as gh:
        mlops(repo, "monitor", "wine", "--reference", str(ref), "--current", str(cur), env=gh.env())
        [sent] = gh.dispatches
        assert sent["event_type"] == "dev.mlops.drift.detected"
        assert sent["client_payload"]["event"]["data"]["model"] == "wine-classifier"
    bad = mlops(repo, "monitor", "nope", check=False)
    assert bad.returncode == 13 and "no endpoint 'nope'" in bad.stderr


def test_monitor_all_watches_every_endpoint_even_when_one_fails(repo: Repo) -> None:
    spec = (repo.path / "endpoints" / "wine.yaml").read_text()
    (repo.path / "endpoints" / "other.yaml").write_text(spec.replace("name: wine\n", "name: other\n"))
    repo.commit("a second monitored endpoint")
    damaged = repo.path / ".mlops" / "records" / "monitoring" / "other" / "captures" / "blue" / \
        "1764400000000000000-1-1-5"
    damaged.parent.mkdir(parents=True)
    damaged.write_text('{"schema": 1, "rows": "many"}')  # a tampered capture record of endpoint other
    out = mlops(repo, "monitor", "--all", "--no-notify", check=False)
    assert out.returncode == 4 and "internal error" not in out.stderr, out  # CorruptRecordError's code
    assert "error: endpoint other:" in out.stderr and "endpoint wine" in out.stdout, out


def test_failed_data_quality_is_an_event_that_quotes_no_live_value(repo: Repo, tmp_path: Path) -> None:
    ref, cur = tmp_path / "ref.csv", tmp_path / "cur.csv"
    np.savetxt(ref, _wine(shift=False), delimiter=",", header=",".join(FEATURES), comments="")
    x = _wine(shift=False)[:, :12].astype(object)  # proline left out
    x[::4, 0] = ""  # a quarter of alcohol missing
    lines = [",".join(FEATURES[:12])] + [",".join(str(v) for v in row) for row in x]
    cur.write_text("\n".join(lines) + "\n")
    out = json.loads(mlops(repo, "monitor", "wine", "--reference", str(ref), "--current", str(cur),
                           "--output", "json").stdout)[0]
    assert out["quality_failed"] is True and "data_quality.failed" in out["events"]
    [event] = [json.loads(line) for line in (repo.path / ".mlops" / "events.jsonl").read_text().splitlines()
               if '"dev.mlops.data_quality.failed"' in line]
    findings = event["data"]["findings"]
    assert "proline: missing_column" in findings and any(f.startswith("alcohol: missing") for f in findings)
    assert "13." not in json.dumps(event)  # no value of the data itself (alcohol is 11 to 15)
