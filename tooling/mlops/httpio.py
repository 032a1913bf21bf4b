"""One HTTP exchange over urllib, the way mlops's outbound calls (webhooks, the GitHub API) need it.

* Only ``http``/``https`` URLs: urllib would also open ``file://`` and ``ftp://``.
* Redirects are never followed: a webhook's signed body or the GitHub token must not be sent on
  to wherever a 3xx points. A 3xx comes back as a response like any other status.
* Every status comes back as a ``Response`` (nothing is raised for 4xx/5xx); what could not be
  exchanged at all (refused, reset, timed out, DNS) is a ``TransportError``.
* The response body is read up to a bound, so a misbehaving server cannot fill the memory.
* Proxies come from the environment (``HTTPS_PROXY``, ``NO_PROXY``...) as urllib reads them.

``urllib.request`` is imported on first use: importing this module costs nothing.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_BODY = 8 << 20  # bytes of a response body read at most
_opener: Any = None


class TransportError(Exception):
    """No HTTP response: the connection was refused, reset or timed out, or the name did not resolve.

    ``sent`` is False when nothing can have reached the server (the connection was never made),
    so even a request that is not idempotent may be repeated."""

    def __init__(self, url: str, reason: str, sent: bool):
        super().__init__(f"{display_url(url)}: {reason}")
        self.reason = reason
        self.sent = sent


@dataclass(frozen=True)
class Response:
    """A status, its headers (names lowercased) and the body (at most ``MAX_BODY`` bytes)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host, else ValueError saying why."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as e:
        raise ValueError(f"{url!r} is not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{display_url(url)!r} carries credentials in the URL: give them through the environment")
    return url


def display_url(url: str) -> str:
    """``url`` without credentials, query or fragment: fit for messages and records."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def exchange(method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None,
             timeout: float = 10.0, max_body: int = MAX_BODY) -> Response:
    """Send one request and return the response, whatever its status (see the module docstring)."""
    import http.client
    import socket
    import urllib.error
    import urllib.request

    check_url(url)
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with _get_opener().open(request, timeout=max(timeout, 0.001)) as reply:
            return Response(reply.status, _lower(reply.headers.items()), reply.read(max_body))
    except urllib.error.HTTPError as e:  # not raised by our opener, but urllib may still produce one
        with e:
            return Response(e.code, _lower(e.headers.items() if e.headers else ()), e.read(max_body))
    except urllib.error.URLError as e:
        reason = e.reason
        sent = not isinstance(reason, (ConnectionRefusedError, socket.gaierror))
        raise TransportError(url, _reason(reason), sent) from None
    except TimeoutError:
        raise TransportError(url, f"no answer within {timeout:.3g} s", True) from None
    except ConnectionRefusedError as e:
        raise TransportError(url, _reason(e), False) from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # reset, broken pipe, a malformed answer
        raise TransportError(url, _reason(e), True) from None


def retry_after(response: Response, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait (``Retry-After`` as seconds or an HTTP date), if it says."""
    value = (response.header("retry-after") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _lower(items: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in items:
        out[str(k).lower()] = str(v)
    return out


def _get_opener() -> Any:
    """An opener with proxies and http(s), but no redirect, file, ftp or error-raising handlers."""
    global _opener
    if _opener is None:
        import urllib.request

        opener = urllib.request.OpenerDirector()
        for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(),
                        urllib.request.HTTPSHandler()):
            opener.add_handler(handler)
        _opener = opener
    return _opener
