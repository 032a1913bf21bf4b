"""Routing inside the server (traffic split, header pin, version path, mirror), keys and metrics."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.serving.conftest import KEY, deployment, get, iris_request, post

from mlops.serving import metrics
from mlops.serving.routing import Router, cycle

INFER = "/v2/models/iris/infer"


def test_cycle_spreads_weights_evenly() -> None:
    order = cycle({"blue": 90, "green": 10})
    assert len(order) == 10 and order.count("green") == 1
    order = cycle({"a": 1, "b": 1, "c": 2})
    assert sorted(order) == ["a", "b", "c", "c"] and order[0] != order[1]
    assert cycle({"a": 0}) == ()
    r = Router({"a": 50, "b": 50}, {"deployment": "b", "percent": 25})
    served = [r.pick() for _ in range(8)]
    assert served.count("a") == 4
    mirrored = [r.mirror("a") for _ in range(8)]
    assert mirrored.count("b") == 2 and r.mirror("b") is None  # the shadow's own requests are not copied


@pytest.fixture
def two(servers: Any, models: dict[str, Path]) -> Any:
    return servers([deployment("blue", models["iris"], 1), deployment("green", models["iris_zipmap"], 2)],
                   traffic={"blue": 80, "green": 20})


def test_split_pin_and_version_path(two: Any) -> None:
    two.start()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(two.url + INFER, iris_request()), range(400)))
    assert all(a[0] == 200 for a in answers)
    served = [a[1]["x-mlops-deployment"] for a in answers]
    green = served.count("green")
    assert 40 <= green <= 120, green  # 20% of 400 is 80: loose bounds, two workers each cycle on their own
    for a in answers:
        assert json.loads(a[2])["model_version"] == {"blue": "1", "green": "2"}[a[1]["x-mlops-deployment"]]
    # a header pins a request to one deployment, the version in the path to the one serving it
    assert {post(two.url + INFER, iris_request(), {"x-mlops-deployment": "green"})[1]["x-mlops-deployment"]
            for _ in range(20)} == {"green"}
    assert {post(two.url + "/v2/models/iris/versions/1/infer", iris_request())[1]["x-mlops-deployment"]
            for _ in range(20)} == {"blue"}
    status, _, body = post(two.url + "/v2/models/iris/versions/1/infer", iris_request(), {"x-mlops-deployment": "green"})
    assert status == 400 and b"serves version 2" in body
    # metrics count each deployment's requests (summed over both workers)
    time.sleep(0.2)
    m = metrics.read(two.url)
    assert m["green"].requests == green + 20 and m["blue"].requests == 400 - green + 20
    assert m["blue"].errors == 0 and m["blue"].buckets[-1] == (float("inf"), m["blue"].requests)


def test_zero_traffic_needs_a_pin(servers: Any, models: dict[str, Path]) -> None:
    s = servers([deployment("blue", models["iris"], 1)], traffic={"blue": 0}, workers=1).start()
    status, _, body = post(s.url + INFER, iris_request())
    assert status == 503 and b"no traffic weights" in body
    assert post(s.url + INFER, iris_request(), {"x-mlops-deployment": "blue"})[0] == 200


def test_mirror_copies_requests_to_the_shadow(two: Any) -> None:
    two.write(traffic={"blue": 100}, mirror={"deployment": "green", "percent": 50})
    two.start()
    for _ in range(40):
        status, headers, _ = post(two.url + INFER, iris_request())
        assert status == 200 and headers["x-mlops-deployment"] == "blue"  # the client only sees blue's answer
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = metrics.read(two.url)
        if m.get("green") and m["green"].requests >= 20:
            break
        time.sleep(0.1)
    assert m["blue"].requests == 40
    assert 18 <= m["green"].requests <= 22 and m["green"].errors == 0  # 50% of each worker's share


def test_keys(servers: Any, models: dict[str, Path]) -> None:
    keys = [hashlib.sha256(k.encode()).hexdigest() for k in (KEY, "second-key")]
    s = servers([deployment("blue", models["iris"], 1)], auth="key", keys=keys, workers=1).start()
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}, {"authorization": f"Basic {KEY}"}):
        status, hdrs, body = post(s.url + INFER, iris_request(), headers)
        assert status == 401 and json.loads(body)["error"].startswith("a valid key is needed")
        assert hdrs["www-authenticate"] == "Bearer"
    assert get(s.url + "/v2/models/iris")[0] == 401
    for key in (KEY, "second-key"):  # both keys valid at once: rotation has no gap
        assert post(s.url + INFER, iris_request(), {"authorization": f"Bearer {key}"})[0] == 200
    for open_route in ("/v2/health/live", "/v2/health/ready", "/metrics"):
        assert get(s.url + open_route)[0] == 200
    # rotation: a new config drops the first key
    gen = s.write(keys=keys[1:])
    from mlops.serving.control import wait_applied

    wait_applied(s.dir, gen, 30)
    assert post(s.url + INFER, iris_request(), {"authorization": f"Bearer {KEY}"})[0] == 401
    assert post(s.url + INFER, iris_request(), {"authorization": "Bearer second-key"})[0] == 200


def test_metrics_text(two: Any) -> None:
    two.start()
    post(two.url + INFER, iris_request(3), {"x-mlops-deployment": "green"})
    post(two.url + INFER, {"inputs": []}, {"x-mlops-deployment": "green"})
    status, headers, body = get(two.url + "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'mlops_requests_total{code="200",deployment="green",endpoint="iris",version="2"} 1.0' in text
    assert 'mlops_request_duration_seconds_bucket{deployment="green",endpoint="iris",le="0.005",version="2"}' in text
    assert 'mlops_batch_size_bucket{deployment="green",endpoint="iris",le="4.0"} 1.0' in text
    m = metrics.parse(text)["green"]
    assert m.requests == 1 and m.errors == 0  # the bad request is a 400, decoded before routing
    later = metrics.DeploymentMetrics(m.requests + 2, 1, tuple((le, n + 2) for le, n in m.buckets))
    delta = later.minus(m)
    assert delta.requests == 2 and delta.errors == 1 and delta.quantile(0.99) == delta.buckets[0][0]
