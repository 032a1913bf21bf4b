"""Lifecycle events as CloudEvents 1.0 (JSON format): what ``emit`` builds and every sink sends.

    {"specversion": "1.0", "id": "<uuid4>", "source": "mlops://wine-quality",
     "type": "dev.mlops.model.promoted", "subject": "model/wine-classifier@3",
     "time": "2026-11-29T10:00:00.123456Z", "datacontenttype": "application/json", "data": {...}}

The event's name (``model.promoted``) is its type without the ``dev.mlops.`` prefix; sinks filter
on names with glob patterns (``model.*``). An event read back from the outbox is untrusted: it is
rebuilt through ``from_dict``, which checks every field.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from mlops.secrets import MASKER

SPEC_VERSION = "1.0"
TYPE_PREFIX = "dev.mlops."
CONTENT_TYPE = "application/json"
NAMES = (
    "pipeline.completed", "pipeline.failed", "model.registered", "gate.failed", "approval.requested",
    "model.promoted", "model.rolled_back", "deployment.started", "deployment.succeeded", "deployment.failed",
    "deployment.rolled_back", "drift.detected", "data_quality.failed", "alert.fired",
)
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class CloudEvent:
    """One lifecycle event (CloudEvents 1.0 attributes; ``data`` is a JSON object)."""

    id: str
    source: str
    type: str
    subject: str
    time: str
    data: dict[str, Any] = field(default_factory=dict)
    specversion: str = SPEC_VERSION
    datacontenttype: str = CONTENT_TYPE

    @property
    def name(self) -> str:
        """The type without its prefix: ``model.promoted``."""
        return self.type[len(TYPE_PREFIX):] if self.type.startswith(TYPE_PREFIX) else self.type

    def to_dict(self) -> dict[str, Any]:
        return {"specversion": self.specversion, "id": self.id, "source": self.source, "type": self.type,
                "subject": self.subject, "time": self.time, "datacontenttype": self.datacontenttype,
                "data": self.data}

    def body(self) -> bytes:
        """The exact bytes sent (and signed): compact JSON, keys sorted."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def new_event(project: str, name: str, subject: str, data: Mapping[str, Any] | None = None,
              now: datetime | None = None) -> CloudEvent:
    """A fresh event ``dev.mlops.<name>`` from ``mlops://<project>``, secrets masked in all of it.

    ``data`` values that JSON cannot carry (paths, datetimes...) become their text. An unknown
    ``name`` is a bug in the caller: ValueError."""
    if name not in NAMES:
        raise ValueError(f"unknown event {name!r}; known: {', '.join(NAMES)}")
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    raw = {"specversion": SPEC_VERSION, "id": str(uuid.uuid4()), "source": f"mlops://{project}",
           "type": TYPE_PREFIX + name, "subject": subject,
           "time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "datacontenttype": CONTENT_TYPE,
           "data": dict(data or {})}
    # Masked as text, so a secret anywhere (a message, a URL deep in the data) is caught.
    masked = json.loads(MASKER.mask(json.dumps(raw, default=str, ensure_ascii=False)))
    return from_dict(masked)


def from_dict(d: Any) -> CloudEvent:
    """The event ``d`` describes, or ValueError naming the first field that is wrong."""
    if not isinstance(d, dict):
        raise ValueError("an event is a JSON object")
    text = {k: d.get(k) for k in ("specversion", "id", "source", "type", "subject", "time", "datacontenttype")}
    for key, value in text.items():
        if not isinstance(value, str) or len(value) > 1000:
            raise ValueError(f"event field {key!r} is missing or not a short string")
    if text["specversion"] != SPEC_VERSION:
        raise ValueError(f"event specversion {text['specversion']!r} is not {SPEC_VERSION}")
    if not _UUID_RE.match(str(text["id"])):
        raise ValueError(f"event id {text['id']!r} is not a UUID")
    if str(text["type"])[len(TYPE_PREFIX):] not in NAMES or not str(text["type"]).startswith(TYPE_PREFIX):
        raise ValueError(f"event type {text['type']!r} is not one of mlops's")
    if not str(text["source"]).startswith("mlops://"):
        raise ValueError(f"event source {text['source']!r} is not mlops://PROJECT")
    try:
        datetime.fromisoformat(str(text["time"]).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"event time {text['time']!r} is not an RFC 3339 time") from None
    data = d.get("data")
    if not isinstance(data, dict):
        raise ValueError("event data is not a JSON object")
    return CloudEvent(id=str(text["id"]), source=str(text["source"]), type=str(text["type"]),
                      subject=str(text["subject"]), time=str(text["time"]), data=data,
                      specversion=SPEC_VERSION, datacontenttype=str(text["datacontenttype"]))


def model_subject(model: str, version: int | None = None) -> str:
    """``model/wine-classifier@3`` (or ``model/wine-classifier``)."""
    return f"model/{model}" + (f"@{version}" if version is not None else "")


def pipeline_subject(pipeline: str) -> str:
    return f"pipeline/{pipeline}"


def endpoint_subject(endpoint: str, deployment: str | None = None) -> str:
    return f"endpoint/{endpoint}" + (f"/{deployment}" if deployment else "")


def topic(subject: str) -> str:
    """What the event is about, without a version: ``model/wine-classifier`` (the GitHub issue's topic)."""
    return subject.split("@", 1)[0]
