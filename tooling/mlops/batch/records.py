"""The store's record of a batch endpoint's last successful scoring: ``batch/<endpoint>/last.json``.

It says which model version scored which input (by digest) into which output (by digest), with what
settings, so that reconcile scores again only when one of them changed (or the output is gone). Records
are untrusted: a damaged one is a ``CorruptRecordError`` saying how to get past it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from mlops.errors import CorruptRecordError
from mlops.registry.versions import check_name
from mlops.store.protocol import ArtifactStore

FORMAT = 1


@dataclass(frozen=True)
class Scoring:
    endpoint: str
    model: str
    version: int
    model_sha256: str
    input: str
    input_digest: str
    output: str
    output_digest: str
    settings_digest: str
    rows: int
    errors: int
    finished_at: str
    by: str = ""

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True).encode()


def key(endpoint: str) -> str:
    return f"batch/{check_name(endpoint, 'endpoint')}/last.json"


def last_scoring(store: ArtifactStore, endpoint: str) -> Scoring | None:
    """The last successful scoring of ``endpoint``, or None when it never scored."""
    k = key(endpoint)
    raw = store.read_record(k)
    if raw is None:
        return None
    try:
        doc: Any = json.loads(raw)
        if not isinstance(doc, dict) or doc.pop("format", None) != FORMAT:
            raise ValueError("not a batch scoring record")
        scoring = Scoring(**doc)
        ints = (scoring.version, scoring.rows, scoring.errors)
        strs = (scoring.endpoint, scoring.model, scoring.model_sha256, scoring.input, scoring.input_digest,
                scoring.output, scoring.output_digest, scoring.settings_digest, scoring.finished_at, scoring.by)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in ints) or \
                not all(isinstance(s, str) for s in strs) or scoring.endpoint != endpoint:
            raise ValueError("a field has the wrong type")
    except (ValueError, TypeError, RecursionError) as e:
        raise CorruptRecordError(f"batch scoring record {k} in {store.url} is damaged ({str(e)[:80]}); delete it "
                                 "and the next reconcile scores the endpoint's input again") from None
    return scoring


def record_scoring(store: ArtifactStore, scoring: Scoring) -> None:
    store.write_record(key(scoring.endpoint), scoring.to_json())
