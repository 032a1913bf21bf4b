"""Inference capture through the local target, for real: an endpoint with a monitoring block captures by default,
the capture settings reach config.json and come back as live state (no drift), and `mlops down` drains the server
(every request written) and keeps the captures for the monitor."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from tests.deploy.test_local_target import key, predict, results
from tests.gitrepo import Repo, mlops

pytestmark = pytest.mark.slow


def test_a_monitored_endpoint_captures_its_requests_and_down_keeps_them(project: Repo) -> None:
    project.write("endpoints/wine.yaml", project.path.joinpath("endpoints/wine.yaml").read_text()
                  + "monitoring: {schedule: '@daily'}\n")
    project.commit("monitor wine")
    deploy = results(mlops(project, "reconcile", "--output", "json"))["deploy:endpoint/wine"]
    assert deploy["status"] == "succeeded", deploy
    where = project.path / ".mlops/serving/wine"
    config = json.loads((where / "config.json").read_text())
    assert config["deployments"][0]["capture"] == {"sample_rate": 1.0, "max_mb": 100.0}
    url = str(deploy["details"]["url"])
    for _ in range(5):
        assert predict(url, key(project))[0] == 200  # 2 rows each
    assert "deploy:endpoint/wine" not in results(mlops(project, "reconcile", "--output", "json"))
    mlops(project, "down", "wine")
    files = sorted((where / "capture" / "blue").glob("*.arrow"))
    assert files and not list((where / "capture" / "blue").glob("*.part"))
    rows = 0
    for f in files:
        with pa.OSFile(str(f), "rb") as fh:
            table = pa.ipc.open_stream(fh).read_all()
        rows += table.num_rows
        assert "float_input[12]" in table.column_names and "prediction.label" in table.column_names
    assert rows == 10
    assert not (where / "config.json").exists()  # the rest of the endpoint's directory is gone
