"""The identity of an environment: the sha256 of a canonical JSON of what defines it.

Two specs that would realise the same software get the same identity, on any machine and in any
run. Defining: the python version (as pinned; unpinned, the implementation and exact version of the
interpreter that runs mlops, which the environment then uses), the set of requirements, the *content* of the lockfile, the
base image, the set of system packages, the variables and ``system_site_packages``. Not defining:
the environment's name, the spec file it lives in, YAML comments and formatting, the order of
requirements or system packages, and comments or blank lines inside the lockfile (pip ignores
them too).

Requirements are hashed as written: ``numpy`` (unpinned) or a path to a local wheel keep their
identity when what they resolve to changes. Pin them in a lockfile to make that change visible.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops import paths
from mlops.errors import Diagnostic, PathError, SpecError
from mlops.host import interpreter_tag
from mlops.spec.model import Environment

# Bump when the canonical form changes, so old realisations are not mistaken for new ones.
IDENTITY_VERSION = 1

# pip's own rule for comments in requirement files (pip._internal.req.req_file.COMMENT_RE).
_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
MAX_LOCKFILE_BYTES = 16 << 20  # a pinned requirements file is kilobytes; this bounds what a spec can make us read


def lockfile_digest(data: bytes) -> str:
    """sha256 hex of a requirements lockfile, ignoring comments, blank lines and line endings."""
    lines = []
    for raw in data.decode("utf-8", errors="surrogateescape").splitlines():
        line = _COMMENT_RE.sub("", raw).strip()
        if line:
            lines.append(line)
    text = "\n".join(lines) + "\n"
    return hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest()


def canonical_spec(env: Environment, read_file: Callable[[str], bytes]) -> dict[str, Any]:
    """The defining fields of ``env`` as plain JSON values, in a canonical order.

    ``read_file(path)`` returns the bytes of a file given its path relative to the repository
    root (the working tree, or a git revision). A lockfile that cannot be read is a SpecError
    naming the spec file and the field.
    """
    lock: str | None = None
    if env.lockfile is not None:
        try:
            data = read_file(env.lockfile)
        except (OSError, KeyError) as e:
            raise SpecError([Diagnostic(env.file or "<unknown>", 0, 0, "$.lockfile",
                                        f"cannot read lockfile {env.lockfile!r}: {e}")]) from e
        lock = lockfile_digest(data)
    return {
        "identity_version": IDENTITY_VERSION,
        "python": env.python.strip() if env.python is not None else interpreter_tag(),
        "requirements": sorted({r.strip() for r in env.requirements}),
        "lockfile": lock,
        "base_image": env.base_image,
        "system_packages": sorted({p.strip() for p in env.system_packages}),
        "variables": dict(sorted(env.variables.items())),
        "system_site_packages": bool(env.system_site_packages),
    }


def canonical_json(spec: dict[str, Any]) -> str:
    """The one serialisation that gets hashed: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def environment_identity(env: Environment, read_file: Callable[[str], bytes]) -> str:
    """sha256 hex (64 chars) of the canonical JSON of what defines ``env``."""
    return identity_of(canonical_spec(env, read_file))


def repo_reader(repo_root: Path) -> Callable[[str], bytes]:
    """A ``read_file`` for the functions above that reads a working tree at ``repo_root``,
    confined to it (``mlops.paths``: no link out of it, never ``.git``) and bounded in size."""
    root = Path(repo_root)

    def read_file(path: str) -> bytes:
        try:
            return paths.read_bytes_inside(root, path, MAX_LOCKFILE_BYTES)
        except PathError as e:
            raise OSError(str(e)) from None  # canonical_spec reports it against the spec's lockfile field

    return read_file


def identity_of(spec: dict[str, Any]) -> str:
    """sha256 hex of an already canonical spec (see :func:`canonical_spec`)."""
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()
