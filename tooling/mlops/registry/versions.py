"""Where registry records live in the store, and how version numbers are allocated.

    registry/<models|datasets>/<name>/versions/0000000003.json     the immutable version record
    registry/<models|datasets>/<name>/tags/0000000003.json         current tags (mutable)
    registry/<models|datasets>/<name>/fingerprints/<sha256>.json   content -> version index

A new version number is "latest + 1", claimed with ``create_record``: of two concurrent
registrations only one can create a given number; the other moves on to the next. Numbers
are claimed in order, so there are no duplicates and no gaps. Looking up whether the content is
already a version and claiming a new number happen under one lock per asset (``registering``), so
two concurrent registrations of identical content give one version, not two.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from mlops.errors import CorruptRecordError, RegistryError, StoreError
from mlops.store.protocol import ArtifactStore

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VERSION_RE = re.compile(r"^(\d{10})\.json$")
KINDS = ("models", "datasets")


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is a valid model/dataset name, else raise RegistryError."""
    if not _NAME_RE.fullmatch(name) or name.endswith(".lock"):
        raise RegistryError(f"invalid {what} name {name!r}: use letters, digits, '_', '.' and '-', "
                            "starting with a letter or digit (at most 128 characters)")
    return name


def asset_prefix(kind: str, name: str) -> str:
    return f"registry/{kind}/{name}/"


def version_key(kind: str, name: str, version: int) -> str:
    return f"{asset_prefix(kind, name)}versions/{version:010d}.json"


def tags_key(kind: str, name: str, version: int) -> str:
    return f"{asset_prefix(kind, name)}tags/{version:010d}.json"


def fingerprint_key(kind: str, name: str, fingerprint: str) -> str:
    return f"{asset_prefix(kind, name)}fingerprints/{fingerprint}.json"


def version_numbers(store: ArtifactStore, kind: str, name: str) -> list[int]:
    """The versions of one asset, ascending."""
    prefix = f"{asset_prefix(kind, name)}versions/"
    numbers = []
    for key in store.list_records(prefix):
        m = _VERSION_RE.match(key[len(prefix):])
        if m:
            numbers.append(int(m.group(1)))
    return sorted(numbers)


def asset_names(store: ArtifactStore, kind: str) -> list[str]:
    """Names of every asset of ``kind`` that has at least one version."""
    prefix = f"registry/{kind}/"
    names = set()
    for key in store.list_records(prefix):
        name, _, rest = key[len(prefix):].partition("/")
        if rest.startswith("versions/"):
            names.add(name)
    return sorted(names)


def read_version(store: ArtifactStore, kind: str, name: str, version: int | None, what: str) -> tuple[int, bytes]:
    """The raw record of ``name@version`` (latest if None), or RegistryError naming what is missing."""
    check_name(name, what)
    if version is None:
        numbers = version_numbers(store, kind, name)
        if not numbers:
            raise RegistryError(f"no {what} named {name!r} in {store.url}")
        version = numbers[-1]
    if version < 1:
        raise RegistryError(f"invalid version {version} of {what} {name!r}: versions start at 1")
    raw = store.read_record(version_key(kind, name, version))
    if raw is None:
        numbers = version_numbers(store, kind, name)
        if not numbers:
            raise RegistryError(f"no {what} named {name!r} in {store.url}")
        raise RegistryError(f"{what} {name!r} has no version {version} "
                            f"(it has {_ranges(numbers)}) in {store.url}")
    return version, raw


def create_next_version(store: ArtifactStore, kind: str, name: str, render: Callable[[int], bytes],
                        max_attempts: int = 10_000) -> int:
    """Create the record of the next free version number; return the number."""
    numbers = version_numbers(store, kind, name)
    n = (numbers[-1] if numbers else 0) + 1
    for _ in range(max_attempts):
        if store.create_record(version_key(kind, name, n), render(n)):
            return n
        n += 1  # taken by a concurrent registration; it exists, so n+1 leaves no gap
    raise StoreError(f"could not allocate a version of {name!r} after {max_attempts} attempts")


REGISTER_WAIT_SECONDS = 300.0


@contextmanager
def registering(store: ArtifactStore, kind: str, name: str, who: str) -> Iterator[None]:
    """Hold the lock of one asset while its content is looked up and a version claimed (one atomic step)."""
    from mlops.store.lock import StoreLock

    with StoreLock(store, f"registry-{kind}-{name}", owner=who, wait_seconds=REGISTER_WAIT_SECONDS,
                   poll_seconds=0.05):
        yield


def lookup_fingerprint(store: ArtifactStore, kind: str, name: str, fingerprint: str) -> int | None:
    """The version the content index names for ``fingerprint``, or None. CorruptRecordError when the
    index record is damaged or names a version whose record is gone (the fix is deleting it: it is
    only an index, and the next registration of that content writes it again)."""
    key = fingerprint_key(kind, name, fingerprint)
    raw = store.read_record(key)
    if raw is None:
        return None
    fix = f"delete the index record {key} (the next registration of this content recreates it)"
    try:
        d: Any = json.loads(raw)
        version = d["version"]
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        raise CorruptRecordError(f"content index record {key} in {store.url} is damaged; {fix}") from None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CorruptRecordError(f"content index record {key} in {store.url} names no valid version; {fix}")
    if store.read_record(version_key(kind, name, version)) is None:
        raise CorruptRecordError(f"content index record {key} in {store.url} names version {version} of "
                                 f"{name!r}, whose record is gone; {fix}")
    return version


def index_fingerprint(store: ArtifactStore, kind: str, name: str, fingerprint: str, version: int) -> None:
    # create, not write: the first version with this content stays the one the index names.
    store.create_record(fingerprint_key(kind, name, fingerprint), json.dumps({"version": version}).encode())


VERSION_FIX = ("restore it from a backup, or delete it to retire that version (registering the same content "
               "again then makes a new one)")

class Versioned(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=Versioned)


def parse_version(store: ArtifactStore, kind: str, name: str, version: int, raw: bytes,
                  parse: Callable[[bytes], V]) -> V:
    """A version record parsed and checked against its key; CorruptRecordError names it otherwise."""
    key = version_key(kind, name, version)
    try:
        record = parse(raw)
    except RegistryError as e:
        raise CorruptRecordError(f"version record {key} in {store.url} is damaged ({e}); {VERSION_FIX}") from None
    if record.name != name or record.version != version:
        raise CorruptRecordError(f"version record {key} in {store.url} holds {record.name}@{record.version}, "
                                 f"not the version its key names; {VERSION_FIX}")
    return record


def latest_readable(store: ArtifactStore, kind: str, name: str, get: Callable[[ArtifactStore, str, int], V],
                    problems: list[str]) -> tuple[V | None, int]:
    """The latest version of ``name`` that can be read, and how many versions there are. Damaged
    records on the way are described in ``problems`` (listings show what they can)."""
    numbers = version_numbers(store, kind, name)
    for n in reversed(numbers):
        try:
            return get(store, name, n), len(numbers)
        except (CorruptRecordError, RegistryError) as e:
            problems.append(str(e))
    return None, len(numbers)


def _ranges(numbers: list[int]) -> str:
    """``[1,2,3,5]`` -> ``versions 1-3, 5``."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
    return ("version " if len(numbers) == 1 else "versions ") + text
