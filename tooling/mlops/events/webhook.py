"""The webhook sink: POST the event (CloudEvents structured mode) to a URL, signed.

    POST <url>
    Content-Type: application/cloudevents+json; charset=utf-8
    X-Mlops-Event: dev.mlops.model.promoted
    X-Mlops-Signature-256: sha256=<hex HMAC-SHA256 of the exact body, keyed with $secret_env>
    ce-id: <event id>

The receiver recomputes the HMAC over the raw body with the shared secret and compares in
constant time (as for GitHub's ``X-Hub-Signature-256``). A sink configured with ``secret_env``
never sends unsigned: while that variable is unset its events wait in the outbox.

2xx is delivered. 408, 429, 5xx and no answer are repeated with exponential backoff (or what
``Retry-After`` asks) while the call's time budget lasts; any other status (3xx: redirects are not
followed; 4xx) cannot get better by repeating and makes the event dead, status in the warning.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlops import __version__
from mlops.errors import DeliveryError
from mlops.events.cloudevent import CloudEvent
from mlops.events.sinks import Budget, Limits, Sink
from mlops.httpio import TransportError, check_url, display_url, exchange, retry_after
from mlops.secrets import MASKER

SIGNATURE_HEADER = "X-Mlops-Signature-256"
_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Mlops-Signature-256`` value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass
class WebhookSink(Sink):
    url: str
    secret_env: str | None
    environ: Mapping[str, str]
    limits: Limits
    timeout: float

    def send(self, event: CloudEvent, budget: Budget) -> None:
        body = event.body()
        headers = {"Content-Type": "application/cloudevents+json; charset=utf-8", "X-Mlops-Event": event.type,
                   "ce-id": event.id, "User-Agent": f"mlops/{__version__}"}
        if self.secret_env:
            secret = self.environ.get(self.secret_env, "")
            if not secret:
                raise DeliveryError(f"{self.secret_env} is not set: this webhook's events are signed with it, "
                                    "and mlops never sends them unsigned")
            MASKER.add(secret)
            headers[SIGNATURE_HEADER] = signature(secret.encode(), body)
        tries = 0
        while True:
            tries += 1
            if budget.spent():
                raise DeliveryError("no time left in this run's delivery budget")
            try:
                reply = exchange("POST", self.url, body=body, headers=headers,
                                 timeout=min(self.timeout, budget.remaining()))
            except TransportError as e:
                problem, wait = DeliveryError(f"no answer ({e.reason})"), None
            else:
                if 200 <= reply.status < 300:
                    return
                if reply.status not in _RETRY_STATUSES:
                    raise DeliveryError(f"answered {reply.status}{_hint(reply.status)}",
                                        retryable=False, status=reply.status)
                problem = DeliveryError(f"answered {reply.status}", status=reply.status)
                wait = retry_after(reply)
            pause = self.limits.backoff * 2 ** (tries - 1) if wait is None else wait
            if tries > self.limits.retries or not budget.pause(pause):
                raise problem


def _hint(status: int) -> str:
    if 300 <= status < 400:
        return " (a redirect: mlops does not follow them; configure the final URL)"
    if status in (401, 403):
        return " (does the receiver know the secret?)"
    return ""


def make_webhook(ident: str, patterns: tuple[str, ...] | None, config: Mapping[str, Any], limits: Limits,
                 environ: Mapping[str, str]) -> WebhookSink:
    """The sink for a ``{type: webhook, url, secret_env?, timeout?, events?}`` entry (ValueError if unusable)."""
    url = config.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError("a webhook needs a url")
    check_url(url)
    secret_env = config.get("secret_env")
    if secret_env is not None and not isinstance(secret_env, str):
        raise ValueError("secret_env names an environment variable")
    timeout = config.get("timeout", limits.timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"webhook timeout {timeout!r} is not a positive number of seconds")
    return WebhookSink(ident, f"webhook {display_url(url)}", patterns, url, secret_env or None, environ, limits,
                       float(timeout))
