"""The cache key of a pipeline step.

The key is the sha256 of the canonical JSON of everything that decides what a step produces:
its argv after substitution, its merged params, the identity of its environment, its extra
environment variables, the names (never the values) of its secrets, the content digest of each
input, and the digest of each file of its code set. Changing any of them reruns the step (and,
through their inputs, its descendants); changing anything else does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

# Bump when the key's ingredients change, so old cache entries are never mistaken for new ones.
KEY_VERSION = 1


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def step_key(
    *,
    argv: Sequence[str],
    params: Mapping[str, Any],
    environment: str,
    inputs: Mapping[str, str],
    code: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
) -> str:
    """The step's cache key (sha256 hex).

    ``inputs`` maps input name -> content digest; ``code`` maps repository-relative path ->
    file digest; ``environment`` is the environment's identity string.
    """
    ingredients = {
        "version": KEY_VERSION,
        "argv": list(argv),
        "params": params,
        "environment": environment,
        "env": dict(env or {}),
        "inputs": dict(inputs),
        "code": dict(code),
    }
    if secrets:  # only when declared, so the keys of steps without secrets stay what they were
        ingredients["secrets"] = sorted(secrets)
    return hashlib.sha256(canonical_json(ingredients)).hexdigest()
