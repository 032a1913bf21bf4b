"""Webhooks against a real HTTP server on 127.0.0.1: the exact request, its signature, retries,
what is not retried, the outbox across runs, dead letters and the bounded wait."""

from __future__ import annotations

import hashlib
import hmac
import json

from mlops.events.sinks import Limits
from tests.events.conftest import World
from tests.httpstub import Stub

SECRET = "s3cret-hmac-key-for-tests"


def hook(stub: Stub, path: str = "/hook", **extra: object) -> dict[str, object]:
    return {"type": "webhook", "url": stub.url + path, "secret_env": "HOOK_SECRET", **extra}


def expected_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_the_exact_request_signed_over_the_exact_body(world: World, stub: Stub) -> None:
    world.notifications = [hook(stub)]
    world.env["HOOK_SECRET"] = SECRET
    report = world.emit(data={"model": "wine-classifier", "version": 3, "stage": "prod", "from_version": 2})

    assert [r.method + " " + r.target for r in stub.requests] == ["POST /hook"]
    req = stub.requests[0]
    event = report.event
    assert event is not None
    assert req.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert req.headers["x-mlops-event"] == "dev.mlops.model.promoted"
    assert req.headers["ce-id"] == event.id
    assert req.headers["user-agent"].startswith("mlops/")
    assert req.headers["x-mlops-signature-256"] == expected_signature(req.body)
    assert req.body == event.body()
    body = req.json()
    assert body == {"specversion": "1.0", "id": event.id, "source": "mlops://demo",
                    "type": "dev.mlops.model.promoted", "subject": "model/wine-classifier@3", "time": event.time,
                    "datacontenttype": "application/json",
                    "data": {"model": "wine-classifier", "version": 3, "stage": "prod", "from_version": 2}}
    assert event.time.endswith("Z")
    assert report.count("delivered") == 2  # the local log and the webhook
    assert world.warnings == []
    assert [json.loads(line)["id"] for line in world.log_lines()] == [event.id]


def test_retried_on_500_then_delivered(world: World, stub: Stub) -> None:
    world.notifications = [hook(stub)]
    world.env["HOOK_SECRET"] = SECRET
    stub.answer("POST", "/hook", 500)
    stub.answer("POST", "/hook", 502)
    report = world.emit()
    assert [r.method for r in stub.requests] == ["POST", "POST", "POST"]
    assert len({r.body for r in stub.requests}) == 1
    assert all(r.headers["x-mlops-signature-256"] == expected_signature(r.body) for r in stub.requests)
    assert report.count("delivered") == 2 and report.count("kept") == 0
    assert world.records("events/outbox/") == []


def test_408_and_429_are_retried_and_retry_after_is_honoured(world: World, stub: Stub) -> None:
    world.notifications = [hook(stub)]
    world.env["HOOK_SECRET"] = SECRET
    stub.answer("POST", "/hook", 408)
    stub.answer("POST", "/hook", 429, headers={"Retry-After": "0"})
    report = world.emit()
    assert len(stub.requests) == 3
    assert report.count("delivered") == 2


def test_a_4xx_is_not_retried_and_the_event_is_dead_with_its_status(world: World, stub: Stub) -> None:
    world.notifications = [hook(stub)]
    world.env["HOOK_SECRET"] = SECRET
    stub.answer("POST", "/hook", 400, body={"error": "bad"})
    report = world.emit()
    assert len(stub.requests) == 1
    assert report.count("dead") == 1
    assert any("answered 400" in w and "dead" in w for w in world.warnings), world.warnings
    dead = world.records("events/dead/")
    assert len(dead) == 1
    record = json.loads(world.store.read_record(dead[0]) or b"")
    assert record["event"]["id"] == report.event.id if report.event else False
    assert "400" in record["error"]
    assert world.records("events/outbox/") == []
    # The next run does not try it again.
    world.emit()
    assert len(stub.requests) == 2


def test_a_redirect_is_not_followed(world: World, stub: Stub) -> None:
    world.notifications = [hook(stub)]
    world.env["HOOK_SECRET"] = SECRET
    stub.answer("POST", "/hook", 307, headers={"Location": stub.url + "/elsewhere"})
    report = world.emit()
    assert [r.path for r in stub.requests] == ["/hook"]
    assert report.count("dead") == 1
    assert any("redirect" in w for w in world.warnings)


def test_kept_in_the_outbox_across_a_failing_run_and_delivered_oldest_first_by_the_next(world: World,
                                                                                         stub: Stub) -> None:
    world.notifications = [hook(stub)]
    world.env["HOOK_SECRET"] = SECRET
    stub.default = lambda _r: __import__("tests.httpstub", fromlist=["Reply"]).Reply(503)
    first = world.emit(subject="model/wine-classifier@1")
    second = world.emit(subject="model/wine-classifier@2")
    assert first.count("kept") == 1 and second.count("kept") == 2  # the old one retried, the new one queued
    assert any("kept in the outbox" in w for w in world.warnings)
    assert len(world.records("events/outbox/")) == 2
    # The sink recovers: the next emit delivers the waiting events first, in order, then its own.
    stub.requests.clear()
    stub.default = lambda _r: __import__("tests.httpstub", fromlist=["Reply"]).Reply(204)
    third = world.emit(subject="model/wine-classifier@3")
    assert first.event and second.event and third.event
    assert [r.headers["ce-id"] for r in stub.requests] == [first.event.id, second.event.id, third.event.id]
    assert all(r.headers["x-mlops-signature-256"] == expected_signature(r.body) for r in stub.requests)
    assert world.records("events/outbox/") == []
    assert world.records("events/attempts/") == []
    # The local log was written every time, whatever the webhook did.
    assert [json.loads(line)["subject"] for line in world.log_lines()] == [
        "model/wine-classifier@1", "model/wine-classifier@2", "model/wine-classifier@3"]


def test_dead_after_the_last_attempt(world: World, stub: Stub) -> None:
    world.notifications = [hook(stub)]
    world.env["HOOK_SECRET"] = SECRET
    world.limits = Limits(attempts=3, total_wait=5.0, timeout=2.0, retries=0, backoff=0.01)
    from tests.httpstub import Reply

    stub.default = lambda _r: Reply(500)
    report = world.emit()
    assert report.event is not None
    assert report.count("kept") == 1
    world.flush()
    assert len(world.records("events/outbox/")) == 1  # two attempts so far
    assert not any("dead" in w for w in world.warnings)
    flushed = world.flush()
    assert flushed.count("dead") == 1
    assert len(stub.requests) == 3  # one request per attempt (no in-call retries here)
    assert any(f"{report.event.id} is dead" in w and "after 3 attempts" in w and "500" in w
               for w in world.warnings), world.warnings
    assert world.records("events/outbox/") == [] and world.records("events/attempts/") == []
    dead = world.records("events/dead/")
    assert len(dead) == 1
    record = json.loads(world.store.read_record(dead[0]) or b"")
    assert record["attempts"] == 3 and record["event"]["id"] == report.event.id
    world.flush()
    assert len(stub.requests) == 3  # never tried again


def test_the_total_wait_is_bounded_across_all_sinks(world: World, stub: Stub) -> None:
    """Three webhooks that hang: the call finishes anyway, everything is kept, nothing is lost."""
    world.notifications = [hook(stub, "/a"), hook(stub, "/b"), hook(stub, "/c")]
    world.env["HOOK_SECRET"] = SECRET
    world.limits = Limits(attempts=10, total_wait=0.6, timeout=30.0, retries=5, backoff=0.01)
    from tests.httpstub import Reply

    stub.default = lambda _r: Reply(200, delay=30.0)  # far beyond the budget: the stub lets go when the test ends
    report = world.emit()
    assert report.count("kept") == 3
    assert report.count("delivered") == 1  # the local log
    assert len(world.records("events/outbox/")) == 3


def test_retry_after_beyond_the_budget_is_not_waited_for(world: World, stub: Stub) -> None:
    world.notifications = [hook(stub)]
    world.env["HOOK_SECRET"] = SECRET
    stub.answer("POST", "/hook", 503, headers={"Retry-After": "3600"})
    report = world.emit()
    assert len(stub.requests) == 1
    assert report.count("kept") == 1


def test_no_answer_at_all_is_kept(world: World) -> None:
    world.notifications = [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]  # discard port: refused
    report = world.emit()
    assert report.count("kept") == 1
    assert any("127.0.0.1:9/hook" in w for w in world.warnings)


def test_a_missing_secret_is_never_sent_unsigned(world: World, stub: Stub) -> None:
    world.notifications = [hook(stub)]
    report = world.emit()
    assert stub.requests == []
    assert report.count("kept") == 1
    assert any("HOOK_SECRET is not set" in w for w in world.warnings), world.warnings
    # Once the secret is there, the waiting event goes out, signed.
    world.env["HOOK_SECRET"] = SECRET
    flushed = world.flush()
    assert flushed.count("delivered") == 1
    assert stub.requests[0].headers["x-mlops-signature-256"] == expected_signature(stub.requests[0].body)


def test_without_secret_env_the_webhook_is_unsigned(world: World, stub: Stub) -> None:
    world.notifications = [{"type": "webhook", "url": stub.url + "/open"}]
    world.emit()
    assert "x-mlops-signature-256" not in stub.requests[0].headers


def test_event_filters_choose_the_sinks(world: World, stub: Stub) -> None:
    world.notifications = [hook(stub, "/deploy", events=["deployment.*"]),
                           hook(stub, "/models", events=["dev.mlops.model.*", "drift.detected"])]
    world.env["HOOK_SECRET"] = SECRET
    world.emit("model.promoted")
    world.emit("deployment.started", subject="endpoint/wine")
    world.emit("drift.detected", subject="endpoint/wine")
    world.emit("pipeline.completed", subject="pipeline/wine-train")
    assert [(r.path, r.headers["x-mlops-event"]) for r in stub.requests] == [
        ("/models", "dev.mlops.model.promoted"), ("/deploy", "dev.mlops.deployment.started"),
        ("/models", "dev.mlops.drift.detected")]
    assert len(world.log_lines()) == 4  # the local log takes them all
