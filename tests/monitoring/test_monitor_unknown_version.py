"""Captured rows name the model version that answered them; rows of a version the registry does not have (a
damaged or planted capture file) are reported as not compared, and the endpoint's other rows still are: they
made every `mlops monitor` of the endpoint fail for the whole window."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa

from tests.gitrepo import example_repo, mlops


def test_rows_of_an_unregistered_version_are_a_note_not_an_error(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    directory = repo.path / ".mlops/serving/wine/capture/blue"
    directory.mkdir(parents=True)
    n, now = 150, time.time()
    table = pa.table({"input[0]": pa.array([1.0] * n), "_ts": pa.array([now - 60 + i * 0.1 for i in range(n)]),
                      "_deployment": pa.array(["blue"] * n), "_version": pa.array([7] * n, pa.int64())})
    with pa.OSFile(str(directory / f"{time.time_ns():019d}-1-1-{n}.arrow"), "wb") as f, \
            pa.ipc.new_stream(f, table.schema) as w:
        w.write_table(table)
    out = mlops(repo, "monitor", "wine", "--no-notify", "--output", "json", check=False)
    assert out.returncode == 0, out.stderr
    [c] = json.loads(out.stdout)[0]["comparisons"]
    assert (c["version"], c["rows"], c["report"]) == (7, n, None) and c["note"].startswith("not compared: "), c
