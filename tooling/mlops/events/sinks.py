"""Where events go: the ``EventSink`` protocol, the time budget deliveries share, and the sinks
that ``mlops.yaml``'s ``notifications`` configure.

    notifications:
      - {type: log, path: .mlops/events.jsonl}                        # the local append-only log
      - {type: webhook, url: https://hooks.example.com/mlops, secret_env: MLOPS_WEBHOOK_SECRET,
         events: ["model.*", "deployment.*"]}
      - {type: github, mode: issue}                                     # or mode: dispatch

A sink raises ``DeliveryError`` when it cannot deliver (``retryable=False`` when trying again
cannot help); ``emit`` turns that into an outbox entry or a dead one, never into the caller's
failure. Each sink is known by a stable id, a hash of its configuration, which names its outbox.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlops.errors import DeliveryError
from mlops.events.cloudevent import TYPE_PREFIX, CloudEvent
from mlops.spec.model import Project

DEFAULT_LOG = ".mlops/events.jsonl"
MAX_WAIT_ENV = "MLOPS_EVENTS_MAX_WAIT"  # the operator's bound on the seconds one emit/flush may spend
MAX_TOTAL_WAIT = 3600.0  # an hour: a notification never holds a run longer


@dataclass(frozen=True)
class Limits:
    """How hard delivery tries. Small values in tests; the defaults suit a CI job."""

    attempts: int = 10  # deliveries of one event to one sink, over all runs, before it is dead
    total_wait: float = 10.0  # seconds one emit or flush may spend delivering, all sinks together
    timeout: float = 5.0  # one HTTP request (a sink's own ``timeout`` overrides it)
    retries: int = 3  # repeats of one delivery within one call (backoff in between)
    backoff: float = 0.5  # the first pause between those repeats; it doubles

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Limits:
        """The defaults, with ``MLOPS_EVENTS_MAX_WAIT`` (seconds) as the total wait when set."""
        env = os.environ if environ is None else environ
        raw = env.get(MAX_WAIT_ENV, "").strip()
        if raw and "total_wait" not in overrides:
            # A typo in an operator's knob must not fail the run whose events these are.
            with contextlib.suppress(ValueError):
                overrides["total_wait"] = min(MAX_TOTAL_WAIT, max(0.0, float(raw)))
        return cls(**overrides)


class Budget:
    """The time one ``emit``/``flush`` may still spend: every request timeout and pause fits in it."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.clock = clock
        self.deadline = clock() + max(0.0, seconds)
        self.sleep = sleep

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def spent(self) -> bool:
        return self.remaining() <= 0.01  # too little left for any request

    def pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` if that leaves time to do something after; False (no sleep) if not."""
        if seconds >= self.remaining():
            return False
        self.sleep(max(0.0, seconds))
        return True


class EventSink(Protocol):
    """One destination. ``send`` delivers or raises ``DeliveryError``; it must not outlast ``budget``."""

    id: str  # stable: a hash of the sink's configuration (names its outbox in the store)
    description: str  # for messages: "webhook https://hooks.example.com/mlops"

    def accepts(self, name: str) -> bool:
        """Whether the sink takes events of this name (``model.promoted``)."""
        ...

    def send(self, event: CloudEvent, budget: Budget) -> None: ...


@dataclass
class Sink:
    """What every configured sink shares: its id, description and ``events`` filter."""

    id: str
    description: str
    patterns: tuple[str, ...] | None  # None: every event

    def accepts(self, name: str) -> bool:
        if self.patterns is None:
            return True
        full = TYPE_PREFIX + name
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(full, p) for p in self.patterns)


@dataclass
class BrokenSink(Sink):
    """A sink whose configuration cannot work: every delivery fails for good, saying why."""

    problem: str = ""

    def send(self, event: CloudEvent, budget: Budget) -> None:
        raise DeliveryError(self.problem, retryable=False)


@dataclass
class MemorySink(Sink):
    """The in-memory fake for tests: keeps what it was sent; ``fail`` makes the next sends fail."""

    sent: list[CloudEvent] = field(default_factory=list)
    fail: DeliveryError | None = None

    def send(self, event: CloudEvent, budget: Budget) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append(event)


def sink_id(config: Mapping[str, Any]) -> str:
    """``<type>-<16 hex>``: the same configuration gives the same id in every run."""
    canon = json.dumps(dict(config), sort_keys=True, default=str, separators=(",", ":"))
    kind = str(config.get("type", "sink"))
    kind = kind if kind.isalnum() and len(kind) <= 20 else "sink"
    return f"{kind}-{hashlib.sha256(canon.encode()).hexdigest()[:16]}"


def log_configs(project: Project) -> list[dict[str, Any]]:
    """The ``log`` sinks, or the default one (``.mlops/events.jsonl``) when none is configured."""
    logs = [dict(c) for c in project.notifications if isinstance(c, Mapping) and c.get("type") == "log"]
    return logs or [{"type": "log", "path": DEFAULT_LOG}]


def configured_sinks(project: Project, root: Path, limits: Limits,
                     environ: Mapping[str, str] | None = None) -> list[EventSink]:
    """The project's sinks, local logs first (they are quick and always there)."""
    env = os.environ if environ is None else environ
    others = [dict(c) if isinstance(c, Mapping) else {"type": repr(c)} for c in project.notifications
              if not (isinstance(c, Mapping) and c.get("type") == "log")]
    return [build_sink(c, root, limits, env) for c in [*log_configs(project), *others]]


def build_sink(config: Mapping[str, Any], root: Path, limits: Limits, environ: Mapping[str, str]) -> EventSink:
    """The sink ``config`` describes (a ``BrokenSink`` that says why when it cannot work)."""
    ident = sink_id(config)
    kind = config.get("type")
    patterns = _patterns(config.get("events"))
    try:
        if kind == "log":
            from mlops.events.log import LogSink

            return LogSink(ident, f"log {config.get('path') or DEFAULT_LOG}", patterns, root,
                           str(config.get("path") or DEFAULT_LOG))
        if kind == "webhook":
            from mlops.events.webhook import make_webhook

            return make_webhook(ident, patterns, config, limits, environ)
        if kind == "github":
            from mlops.events.github_sink import make_github_sink

            return make_github_sink(ident, patterns, config, limits, environ)
        problem = f"unknown notification type {kind!r} (use log, webhook or github)"
    except (ValueError, TypeError) as e:
        problem = str(e)
    return BrokenSink(ident, f"{kind} sink", patterns, problem=f"notifications entry {ident}: {problem}")


def _patterns(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(str(v) for v in value)
    return None
