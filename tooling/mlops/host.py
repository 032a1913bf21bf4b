"""The interpreter that runs mlops and the packages it sees: an identity for "what a step ran with".

A step that names no environment runs with this interpreter, and an environment with
``system_site_packages`` reuses packages installed outside it: either way those packages are part of
what the step ran with, so their identity goes into step cache keys. Installing, removing or
upgrading a package changes it; so does another interpreter version.

It must be cheap (a no-op ``mlops run`` computes it): a distribution is recognised by the name of its
metadata folder, which installers write as ``NAME-VERSION.dist-info`` (egg-info folders likewise,
their metadata file is read only when the name has no version), and each folder's findings are
memoised under its stat, so the next call costs one ``stat`` per folder. A folder changed in the last
two seconds is not memoised (its mtime may not change again on the next change: timestamps are coarse).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence

_NORMALISE_RE = re.compile(r"[-_.]+")
_VERSION_LINE_RE = re.compile(r"^Version:\s*(\S+)\s*$", re.MULTILINE)
_META_SUFFIXES = (".dist-info", ".egg-info")
_RACY_NS = 2_000_000_000  # a folder modified this recently may be modified again under the same mtime

# folder -> ((st_mtime_ns, st_ino, st_dev), "name==version" found there)
_FOLDERS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {}


def normalise(name: str) -> str:
    """A distribution name in PEP 503 normal form (``Scikit_Learn`` -> ``scikit-learn``)."""
    return _NORMALISE_RE.sub("-", name).lower()


def interpreter_tag(implementation: str | None = None, version: Sequence[int] | None = None) -> str:
    """``cpython-3.11.7``: the implementation and exact version of the running interpreter."""
    impl = (implementation or sys.implementation.name).lower()
    major, minor, micro = tuple(version or sys.version_info[:3])[:3]
    return f"{impl}-{major}.{minor}.{micro}"


def package_paths() -> list[str]:
    """The folders the running interpreter imports installed packages from: ``sys.path`` without the
    script's folder (``sys.path[0]``, which is not where packages are installed)."""
    start = 0 if getattr(sys.flags, "safe_path", False) else 1
    seen: list[str] = []
    for p in sys.path[start:]:
        if p and p not in seen:
            seen.append(p)
    return seen


def site_dirs() -> list[str]:
    """The running interpreter's site folders (where pip installs; their ``.pth`` files are honoured),
    existing ones only, in ``sys.path`` order."""
    import site

    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if os.path.isdir(d)]


def packages(paths: Iterable[str]) -> list[str]:
    """Sorted ``name==version`` (PEP 503 names) of the distributions installed in ``paths``; where a
    name is in several folders, the first folder's wins, as it would for imports."""
    found: dict[str, str] = {}
    for path in paths:
        for entry in _folder(path):
            name, _, version = entry.partition("==")
            found.setdefault(name, version)
    return sorted(f"{n}=={v}" for n, v in found.items())


def packages_identity(paths: Iterable[str]) -> str:
    """sha256 hex of :func:`packages` of ``paths``."""
    return hashlib.sha256("\n".join(packages(paths)).encode("utf-8")).hexdigest()


def host_identity() -> str:
    """``host:cpython-3.11.7:<sha256>``: the running interpreter and the packages visible to it."""
    return f"host:{interpreter_tag()}:{packages_identity(package_paths())}"


# -- one folder -------------------------------------------------------------------------------------

def _folder(path: str) -> tuple[str, ...]:
    try:
        st = os.stat(path)
    except OSError:
        return ()
    key = (st.st_mtime_ns, st.st_ino, st.st_dev)
    hit = _FOLDERS.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    found = tuple(sorted(_scan(path)))
    if time.time_ns() - st.st_mtime_ns > _RACY_NS:
        _FOLDERS[path] = (key, found)
    else:
        _FOLDERS.pop(path, None)
    return found


def _scan(path: str) -> Iterable[str]:
    try:
        entries = os.scandir(path)
    except OSError:  # a zip on sys.path, a folder we may not read: it holds no installed metadata
        return
    with entries:
        for entry in entries:
            if not entry.name.endswith(_META_SUFFIXES):
                continue
            stem = entry.name.rsplit(".", 1)[0]
            # dist-info: NAME-VERSION (both escaped, so neither holds a '-');
            # egg-info: NAME-VERSION[-pyX.Y] or, for a source tree's own, just NAME.
            name, _, rest = stem.partition("-")
            version = rest.split("-", 1)[0] if rest else _egg_version(entry.path)
            if name:
                yield f"{normalise(name)}=={version}"


def _egg_version(path: str) -> str:
    """The version in an egg-info's PKG-INFO (a folder) or the egg-info file itself."""
    target = os.path.join(path, "PKG-INFO") if os.path.isdir(path) else path
    try:
        with open(target, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return ""
    m = _VERSION_LINE_RE.search(head)
    return m.group(1) if m else ""
