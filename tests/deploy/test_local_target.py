"""The local target end to end, for real: `mlops reconcile` starts a scoring server on 127.0.0.1 that answers
predictions; a second reconcile does nothing; a killed server is drift that the next reconcile repairs; a new pin
is served without a restart; a removed endpoint is stopped; status, down, keys and invoke work."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlops.httpio import exchange
from tests.deploy.conftest import make_project
from tests.gitrepo import Repo, mlops
from tests.servers import stop_servers

pytestmark = pytest.mark.slow

ROW = [13.2, 1.78, 2.14, 11.2, 100, 2.65, 2.76, 0.26, 1.28, 4.38, 1.05, 3.4, 1050]


def results(out: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {r["action"]: r for r in json.loads(out.stdout)["results"]}


def status(repo: Repo) -> dict[str, Any]:
    out = json.loads(mlops(repo, "status", "wine", "--output", "json").stdout)
    return dict(out["endpoints"][0])


def state_dir(repo: Repo) -> Path:
    return repo.path / ".mlops/serving/wine"


def pid(repo: Repo) -> int:
    return int((state_dir(repo) / "server.pid").read_text())


def key(repo: Repo) -> str:
    return mlops(repo, "endpoints", "keys", "show", "wine").stdout.strip()


def request_file(repo: Repo, tmp_path: Path) -> str:
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"inputs": [{"name": "float_input", "shape": [1, 13], "datatype": "FP32",
                                            "data": ROW}]}))
    return str(path)


def predict(url: str, key: str | None) -> tuple[int, dict[str, Any], str | None]:
    body = {"inputs": [{"name": "float_input", "shape": [2, 13], "datatype": "FP32", "data": ROW * 2}]}
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    reply = exchange("POST", f"{url}/v2/models/wine/infer", body=json.dumps(body).encode(), headers=headers)
    return reply.status, json.loads(reply.body or b"{}"), reply.header("x-mlops-deployment")


def test_reconcile_serves_and_a_second_reconcile_does_nothing(project: Repo, tmp_path: Path) -> None:
    got = results(mlops(project, "reconcile", "--output", "json"))
    deploy = got["deploy:endpoint/wine"]
    assert deploy["status"] == "succeeded", deploy
    url = str(deploy["details"]["url"])
    assert url.startswith("http://127.0.0.1:")
    code, answer, served_by = predict(url, key(project))
    assert code == 200 and served_by == "blue", answer
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs and all(o["shape"][0] == 2 for o in outputs.values())
    assert predict(url, None)[0] == 401 and predict(url, "wrong")[0] == 401

    first_pid = pid(project)
    again = mlops(project, "reconcile", "--output", "json")
    assert "deploy:endpoint/wine" not in results(again)  # live state matches: nothing planned
    assert "deploy" not in mlops(project, "plan").stdout
    assert pid(project) == first_pid

    # the executor itself, handed the deploy again, finds it live and skips it
    from mlops.apply.executors.deploy import deploy as run_deploy
    from mlops.apply.protocol import ApplyContext
    from mlops.plan.model import Action
    from mlops.registry.composite import open_registry_store
    from mlops.spec.loader import load_specs

    specs = load_specs(project.path)
    ctx = ApplyContext(project.path, specs, open_registry_store(specs.project, project.path), {})
    res = run_deploy(Action("deploy:endpoint/wine", "deploy", "endpoint/wine", "modified", "test", {}, ()), ctx)
    assert res.status == "skipped" and res.message.startswith(f"already serving blue: wine@1 (100%) at {url}")

    shown = status(project)
    assert shown["healthy"] is True and shown["drift"] is None and shown["url"] == url
    assert shown["live"] == shown["desired"]
    invoked = mlops(project, "endpoints", "invoke", "wine", "--data", request_file(project, tmp_path))
    assert '"outputs"' in invoked.stdout and "served by deployment blue" in invoked.stderr
    audit = mlops(project, "audit", "wine", "--at", "now").stdout
    assert "wine@1" in audit or "wine 1" in audit or "version 1" in audit, audit


def test_a_killed_server_is_drift_and_the_next_reconcile_repairs_it(project: Repo) -> None:
    mlops(project, "reconcile")
    url = status(project)["url"]
    os.killpg(pid(project), signal.SIGKILL)
    _wait_gone(project)
    shown = status(project)
    assert shown["running"] is False and shown["drift"] == "not running"
    plan = mlops(project, "plan").stdout
    assert "deploy" in plan and "drift: endpoint wine is not running on target local" in plan
    got = results(mlops(project, "reconcile", "--output", "json"))
    assert got["deploy:endpoint/wine"]["status"] == "succeeded"
    assert status(project)["healthy"] is True and status(project)["url"] == url  # the same URL again
    assert predict(str(url), key(project))[0] == 200


def test_a_change_outside_git_is_drift(project: Repo) -> None:
    mlops(project, "reconcile")
    config = json.loads((state_dir(project) / "config.json").read_text())
    config["deployments"][0]["version"] = 99  # someone edits the live config by hand
    (state_dir(project) / "config.json").write_text(json.dumps(config))
    plan = mlops(project, "plan").stdout
    assert "drift: target local serves blue: wine@99 (100%), the specs want blue: wine@1 (100%)" in plan
    mlops(project, "reconcile")
    assert status(project)["live"][0]["version"] == 1


def test_a_new_pin_is_served_without_a_restart(tmp_path: Path, onnx_files: tuple[Path, Path]) -> None:
    repo = make_project(tmp_path / "repo", onnx_files[0], model_ref="wine@prod", stages="stages:\n  prod: 1\n")
    try:
        got = results(mlops(repo, "reconcile", "--output", "json"))
        assert got["promote:model/wine@prod"]["status"] == "succeeded"
        assert got["deploy:endpoint/wine"]["status"] == "succeeded", got["deploy:endpoint/wine"]
        url, first_pid = str(status(repo)["url"]), pid(repo)
        (repo.path / "model.onnx").write_bytes(onnx_files[1].read_bytes())
        repo.commit("retrained")
        got = results(mlops(repo, "reconcile", "--output", "json"))
        assert got["register_model:model/wine"]["details"]["version"] == 2
        assert "deploy:endpoint/wine" not in got  # prod still holds 1: nothing to deploy
        repo.edit("models/wine.yaml", "prod: 1", "prod: 2")
        repo.commit("v2 to prod")
        with Hammer(url, key(repo)) as hammer:  # requests all along the update: none may fail
            got = results(mlops(repo, "reconcile", "--output", "json"))
        assert hammer.codes and set(hammer.codes) == {200}, hammer.codes
        assert got["deploy:endpoint/wine"]["status"] == "succeeded", got["deploy:endpoint/wine"]
        assert "wine@2" in str(got["deploy:endpoint/wine"]["message"])
        assert status(repo)["live"][0]["version"] == 2 and pid(repo) == first_pid
        assert predict(url, key(repo))[0] == 200
        config = json.loads((state_dir(repo) / "config.json").read_text())
        assert config["generation"] == 2 and len(list((state_dir(repo) / "models").iterdir())) == 1
        history = mlops(repo, "history", "wine").stdout
        assert history.count("-> endpoint wine/blue") == 2, history
    finally:
        stop_servers(repo.path)


def test_the_server_never_gets_the_host_secrets(project: Repo) -> None:
    """It imports the repository's scoring module: GITHUB_TOKEN and cloud keys stay out of its environment
    (the server's and its workers'), as they stay out of a pipeline step's."""
    secret = "ghp_hostile3secretvalue0123456789"
    mlops(project, "reconcile", env={"GITHUB_TOKEN": secret, "AWS_SECRET_ACCESS_KEY": secret})
    where = state_dir(project)
    pids = [pid(project), *(int(n) for n in os.listdir(where / "acks") if n.isdigit())]
    assert len(pids) >= 2
    for p in pids:
        environ = Path(f"/proc/{p}/environ").read_bytes()
        assert b"GITHUB_TOKEN" not in environ and secret.encode() not in environ
    for f in where.rglob("*"):
        assert not f.is_file() or secret.encode() not in f.read_bytes(), f


def test_a_removed_endpoint_is_stopped(project: Repo) -> None:
    mlops(project, "reconcile")
    server = pid(project)
    (project.path / "endpoints/wine.yaml").unlink()
    project.commit("no more serving")
    got = results(mlops(project, "reconcile", "--output", "json"))
    assert got["prune:endpoint/wine"]["status"] == "succeeded", got["prune:endpoint/wine"]
    assert not state_dir(project).exists()
    assert not alive(server)
    assert "removed from endpoint wine/blue" in mlops(project, "history", "wine").stdout


def test_down_stops_it_until_the_next_reconcile(project: Repo) -> None:
    mlops(project, "reconcile")
    server = pid(project)
    out = mlops(project, "down", "wine").stdout
    assert "endpoint wine stopped" in out and "the next `mlops reconcile` starts it again" in out
    assert not alive(server)
    assert status(project)["running"] is False
    assert "drift: endpoint wine is not running" in mlops(project, "plan").stdout
    mlops(project, "reconcile")
    assert status(project)["healthy"] is True


def test_down_and_keys_rotate_wait_for_no_reconcile(project: Repo) -> None:
    """While a reconcile (a deploy, a canary rollout) holds its lock, neither stops the server nor rewrites its
    config under it: each fails naming the holder, and the server serves on."""
    from mlops.reconcile.story import open_project_store
    from mlops.store.lock import StoreLock

    mlops(project, "reconcile")
    server, config = pid(project), (state_dir(project) / "config.json").read_bytes()
    with StoreLock(open_project_store(project.path), "reconcile", owner="a rollout in progress"):
        for args in (("down", "wine"), ("endpoints", "keys", "rotate", "wine")):
            out = mlops(project, *args, check=False)
            assert out.returncode != 0 and "a rollout in progress" in out.stderr, out.stderr
    assert alive(server) and (state_dir(project) / "config.json").read_bytes() == config
    assert "stopped" in mlops(project, "down", "wine").stdout  # once the lock is free


def test_keys_rotate_the_old_key_stops_working_and_the_new_one_works(project: Repo) -> None:
    mlops(project, "reconcile")
    url, old = str(status(project)["url"]), key(project)
    assert predict(url, old)[0] == 200
    assert stat_mode(state_dir(project) / "keys.json") == 0o600
    with Hammer(url, old) as hammer:  # the old key works until the swap, then is refused: never an error between
        rotated = mlops(project, "endpoints", "keys", "rotate", "wine")
    codes = hammer.codes
    assert codes and set(codes) <= {200, 401} and codes == sorted(codes), codes
    new = rotated.stdout.strip()
    assert new and new != old and key(project) == new
    assert predict(url, new)[0] == 200 and predict(url, old)[0] == 401
    assert old not in json.dumps(status(project)) and new not in (project.path / ".mlops/events.jsonl").read_text() \
        if (project.path / ".mlops/events.jsonl").exists() else True


def test_a_server_that_cannot_start_fails_the_deploy_with_its_log(project: Repo) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        project.edit("endpoints/wine.yaml", "serving: {workers: 1}", f"serving: {{workers: 1, port: {port}}}")
        project.commit("a port that is taken")
        out = mlops(project, "reconcile", "--output", "json", check=False)
    assert out.returncode != 0
    deploy = results(out)["deploy:endpoint/wine"]
    assert deploy["status"] == "failed" and "server" in str(deploy["message"]), deploy
    assert status(project)["running"] is False


class Hammer:
    """Sends requests one after another in a thread while the block runs; ``codes`` in order (-1: no answer)."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.codes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from mlops.httpio import TransportError

        while not self._stop.is_set():
            try:
                self.codes.append(predict(self.url, self.key)[0])
            except TransportError:
                self.codes.append(-1)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)  # a few requests after the change too
        self._stop.set()
        self._thread.join(30)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet does not: in a container, pid 1 may never reap it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def stat_mode(path: Path) -> int:
    import stat

    return stat.S_IMODE(path.stat().st_mode)


def _wait_gone(repo: Repo) -> None:
    deadline = time.monotonic() + 10
    while status(repo)["running"] and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_planted_link_makes_the_deploy_fail_and_nothing_lands_outside(project: Repo, tmp_path: Path) -> None:
    mlops(project, "reconcile")
    mlops(project, "down", "wine")
    outside = tmp_path / "outside"
    outside.mkdir()
    serving = project.path / ".mlops/serving"
    serving.rmdir()
    serving.symlink_to(outside)  # a restored cache, a step, a hostile checkout...
    out = mlops(project, "reconcile", "--output", "json", check=False)
    deploy = results(out)["deploy:endpoint/wine"]
    assert deploy["status"] == "failed" and "symbolic link" in str(deploy["message"]), deploy
    assert list(outside.iterdir()) == []


def test_a_scoring_module_is_served_and_an_edit_of_it_is_drift(project: Repo) -> None:
    project.write("scoring/wine.py", "import numpy as np\n\nNAMES = np.array(['barolo', 'grignolino', 'barbera'], "
                  "dtype=object)\n\n\ndef postprocess(outputs):\n    return {'cultivar': NAMES[outputs['label']], "
                  "**outputs}\n")
    project.edit("endpoints/wine.yaml", "{name: blue, model: wine@dev}",
                 "{name: blue, model: wine@dev, scoring: scoring/wine.py}")
    project.commit("name the cultivars")
    got = results(mlops(project, "reconcile", "--output", "json"))
    assert got["deploy:endpoint/wine"]["status"] == "succeeded", got["deploy:endpoint/wine"]
    url = str(status(project)["url"])
    code, answer, _ = predict(url, key(project))
    cultivars = {o["name"]: o for o in answer["outputs"]}["cultivar"]
    assert code == 200 and cultivars["data"] == ["barolo", "barolo"], answer
    assert "deploy" not in mlops(project, "plan").stdout  # what it serves is what the repository says

    project.edit("scoring/wine.py", "'barolo'", "'nebbiolo'")
    project.commit("the grape, not the wine")
    assert "with other settings than the specs (scoring module" in mlops(project, "plan").stdout  # its bytes changed
    mlops(project, "reconcile")
    assert {o["name"]: o for o in predict(url, key(project))[1]["outputs"]}["cultivar"]["data"] == \
        ["nebbiolo", "nebbiolo"]
