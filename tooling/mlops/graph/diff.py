"""Compare the asset graphs of two revisions: what was created, changed, removed, and what that affects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlops.graph.assets import AssetGraph

ARROW = " → "


@dataclass(frozen=True)
class Change:
    asset: str  # asset id, e.g. "model/wine-classifier"
    change: str  # created | changed | removed | affected
    reasons: tuple[str, ...]  # one chain per root cause, e.g. "pipelines/wine/train.py changed → step wine-train/train"

    def to_dict(self) -> dict[str, Any]:
        """JSON-shaped (lists, not tuples), so a plan equals itself after a round trip."""
        return {**asdict(self), "reasons": list(self.reasons)}


@dataclass
class ChangeSet:
    changes: list[Change] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)

    def by_asset(self) -> dict[str, Change]:
        return {c.asset: c for c in self.changes}

    def __bool__(self) -> bool:
        return bool(self.changes)


def _label(asset_id: str) -> str:
    kind, _, name = asset_id.partition("/")
    return f"{kind} {name}"


def _touches(files: tuple[str, ...], changed: set[str], changed_dirs: set[str]) -> list[str]:
    hits = []
    for f in files:
        if f.endswith("/"):
            hits.extend(sorted(c for c in changed if c.startswith(f)))
        elif f in changed:
            hits.append(f)
        elif f in changed_dirs:  # a data directory whose contents changed
            hits.append(f + "/")
    return hits


def diff_graphs(base: AssetGraph, head: AssetGraph, changed_files: set[str], max_reasons: int = 3) -> ChangeSet:
    """Assets created, changed or removed between ``base`` and ``head``, plus everything downstream, with reasons."""
    changed_dirs = {d for c in changed_files for d in _parents(c)}
    roots: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for aid, asset in head.assets.items():
        old = base.assets.get(aid)
        if old is None:
            roots[aid] = [f"new in {asset.spec_file}"]
            kinds[aid] = "created"
            continue
        why = []
        if old.fingerprint != asset.fingerprint:
            why.append(f"{asset.spec_file} changed{ARROW}{_label(aid)}")
        why.extend(f"{f} changed{ARROW}{_label(aid)}" for f in _touches(asset.files, changed_files, changed_dirs))
        if why:
            roots[aid] = why
            kinds[aid] = "changed"
    removed = [Change(aid, "removed", (f"removed from {a.spec_file}",)) for aid, a in sorted(base.assets.items())
               if aid not in head.assets]

    # propagate downstream; reasons carry the chain of assets they travelled through
    dependents = head.dependents()
    reasons: dict[str, list[str]] = {aid: list(r) for aid, r in roots.items()}
    for aid in head.order():  # topological order: every dependency is final before its dependents
        if aid not in reasons:
            continue
        for child in dependents.get(aid, []):
            if child in kinds:
                continue  # it has its own root cause; keep that (it is the most specific)
            bucket = reasons.setdefault(child, [])
            causes = {r.split(ARROW, 1)[0] for r in bucket}
            for r in reasons[aid]:
                cause = r.split(ARROW, 1)[0]
                if cause not in causes and len(bucket) < max_reasons:  # one chain per root cause
                    bucket.append(f"{r}{ARROW}{_label(child)}")
                    causes.add(cause)
    changes = [Change(aid, kinds.get(aid, "affected"), tuple(reasons[aid][:max_reasons]))
               for aid in head.order() if aid in reasons]
    return ChangeSet(changes + removed, sorted(changed_files))


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
