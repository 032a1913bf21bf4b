"""API keys of an endpoint: where they come from, where they are kept, and how they rotate.

``auth: {mode: key}`` (the default) makes every request carry ``Authorization: Bearer KEY``. The server only ever
sees sha256 hashes of the valid keys (in its config). The keys themselves:

* ``auth.secret: NAME``: the initial key is the value of the host variable NAME, read when the endpoint is first
  deployed; only its hash is kept (the value stays wherever the operator keeps secrets);
* otherwise a random key is generated and kept in ``keys.json`` in the endpoint's state directory, mode 0600 — never
  in the store, never in a record or event, printed only by ``mlops endpoints keys show`` and once by ``rotate``.

``keys.json`` lists the valid keys, newest last. A rotation adds a new key (both valid while the servers take the new
config), then drops every older one: no request with either key is refused during the swap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlops.errors import DeployError

KEYS_FILE = "keys.json"
_MAX_KEYS = 8


@dataclass(frozen=True)
class Key:
    sha256: str
    source: str  # "generated" | "env:NAME"
    created: str
    value: str | None = None  # None when the key came from a host variable (its value is not kept)


def key_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def auth_mode(settings: Mapping[str, Any]) -> str:
    """``key`` or ``none`` from an EndpointState's settings (key when not declared)."""
    auth = settings.get("auth") or {}
    return str(auth.get("mode", "key"))


OPEN_ENDPOINTS_ENV = "MLOPS_ALLOW_OPEN_ENDPOINTS"


def check_exposure(endpoint: str, settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
    """DeployError when the specs would serve ``endpoint`` without a key beyond this machine (a host other than
    loopback with ``auth.mode: none``): a pull request can change specs, so only the operator can allow that,
    with MLOPS_ALLOW_OPEN_ENDPOINTS=1 in the environment that runs mlops."""
    import ipaddress

    host = str((settings.get("serving") or {}).get("host", "127.0.0.1"))
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    env = os.environ if environ is None else environ
    if not loopback and auth_mode(settings) == "none" and env.get(OPEN_ENDPOINTS_ENV) != "1":
        raise DeployError(f"endpoint {endpoint}: serving.host {host!r} with auth.mode none would answer anyone who "
                          f"can reach this machine without a key; keep auth.mode key, bind 127.0.0.1, or let the "
                          f"operator allow it with {OPEN_ENDPOINTS_ENV}=1 (a spec cannot)")


def ensure_keys(state_dir: Path, settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[Key]:
    """The valid keys of the endpoint whose state is in ``state_dir``, creating the first one when there is none.
    Empty when auth mode is ``none``."""
    if auth_mode(settings) == "none":
        return []
    keys = read_keys(state_dir)
    if keys:
        return keys
    env = os.environ if environ is None else environ
    secret = (settings.get("auth") or {}).get("secret")
    if secret:
        value = env.get(str(secret), "")
        if not value:
            raise DeployError(f"auth.secret names the host variable {secret}, which is not set (or empty): set it to "
                              "the endpoint's key, or remove auth.secret to have a key generated")
        from mlops.secrets import register

        register([value], env)  # whatever mlops prints from now on shows it as ***
        key = Key(key_hash(value), f"env:{secret}", _now())
    else:
        value = secrets.token_urlsafe(32)
        key = Key(key_hash(value), "generated", _now(), value)
    _write(state_dir, [key])
    return [key]


def read_keys(state_dir: Path) -> list[Key]:
    """The keys in ``state_dir/keys.json`` (empty if there is none). A damaged file is a DeployError."""
    path = state_dir / KEYS_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        doc = json.loads(raw)
        items = doc["keys"]
        if not isinstance(items, list) or not 0 < len(items) <= _MAX_KEYS:
            raise ValueError("no keys")
        keys = [Key(str(k["sha256"]), str(k["source"]), str(k["created"]),
                    None if k.get("value") is None else str(k["value"])) for k in items]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise DeployError(f"{path} is damaged; delete it and run `mlops endpoints keys rotate` (a new key is "
                          "made; clients need it)") from None
    for k in keys:
        if len(k.sha256) != 64 or (k.value is not None and key_hash(k.value) != k.sha256):
            raise DeployError(f"{path} is damaged (a key does not match its hash); delete it and rotate the key")
    return keys


def add_key(state_dir: Path) -> Key:
    """Rotation, first half: a new generated key, valid beside the current ones."""
    keys = read_keys(state_dir)
    value = secrets.token_urlsafe(32)
    key = Key(key_hash(value), "generated", _now(), value)
    _write(state_dir, [*keys[-(_MAX_KEYS - 1):], key])
    return key


def keep_newest(state_dir: Path) -> None:
    """Rotation, second half: only the newest key stays valid."""
    keys = read_keys(state_dir)
    if len(keys) > 1:
        _write(state_dir, keys[-1:])


def _write(state_dir: Path, keys: list[Key]) -> None:
    """keys.json, atomically and created 0600 (never readable by others, not even for a moment)."""
    doc = {"keys": [{"sha256": k.sha256, "source": k.source, "created": k.created, "value": k.value} for k in keys]}
    data = (json.dumps(doc, indent=2) + "\n").encode()
    tmp = state_dir / f".{KEYS_FILE}.{os.urandom(8).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, state_dir / KEYS_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
