"""What an environment may ask pip to install: PEP 508 requirements and the lines of a lockfile.

Requirements and lockfiles come from specs, which are untrusted, and go to pip, whose options can
read or fetch anything (``-r /etc/shadow`` prints the file in pip's error). So a requirement is a
PEP 508 requirement (``numpy>=1.24``, ``pkg[extra]; python_version < "3.12"``, ``pkg @ https://…``),
or a local wheel or source archive inside the repository (a relative path, or ``pkg @ file:…`` whose
path is inside it), never a pip option. A lockfile (e.g. ``pip-compile --generate-hashes`` output)
may hold such requirements, each optionally followed by ``--hash=ALGO:HEX`` options, with comments,
blank lines and ``\\`` line continuations; any other option (``-r``, ``-c``, ``-e``, ``--index-url``,
``-f``…) and any ``${VAR}`` (pip would expand it from the environment) is refused with its line.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_COMMENT_RE = re.compile(r"(^|\s+)#.*$")  # pip's rule (pip._internal.req.req_file.COMMENT_RE)
_HASH_RE = re.compile(r"^--hash[= ]?(sha256|sha384|sha512):[0-9a-fA-F]+$")
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")
_LOCAL_PATH_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.+/-]*$")
_WHEEL_NAME_RE = re.compile(r"^([A-Za-z0-9_.]+)-")
# The common case, ``name[extra]>=1.2,<2``, recognised without importing packaging (~50 ms, and specs
# are checked on every load, including a no-op `mlops run`). Anything else goes to packaging.
_VERSION = r"(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_SIMPLE_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[\s*(?P<extras>[A-Za-z0-9._-]+(?:\s*,\s*[A-Za-z0-9._-]+)*)\s*\])?\s*"
    rf"(?:{_VERSION}(?:\s*,\s*{_VERSION})*)?$")


@dataclass(frozen=True)
class LockLine:
    """One logical requirement line of a lockfile: where it starts and the requirement on it."""

    line: int
    requirement: str
    hashes: tuple[str, ...] = ()


def requirement_problem(value: str, root: str | None = None) -> str | None:
    """Why ``value`` may not be given to pip as a requirement, or None when it may.

    ``root`` is the repository's absolute path, to check ``file:`` URLs that name absolute paths;
    without it only relative paths are judged (the build checks the rest).
    """
    text = value.strip()
    if not text:
        return "a requirement must not be empty"
    if text.startswith("-"):
        return f"{value!r} is a pip option, not a requirement (only PEP 508 requirements or local wheels)"
    if "${" in text:
        return f"{value!r}: ${{...}} is not allowed (pip would fill it in from the environment)"
    if _is_local_path(text):
        return _local_path_problem(text)
    if _SIMPLE_RE.match(text):
        return None
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement as e:
        return f"{value!r} is not a PEP 508 requirement: {str(e).splitlines()[0]}"
    if req.url and req.url.lower().startswith("file:"):
        return _file_url_problem(req.url, root)
    return None


def requirement_name(value: str) -> str | None:
    """The PEP 503 name of the distribution ``value`` installs (a local archive's from its file name)."""
    from mlops.host import normalise

    text = value.strip()
    if _is_local_path(text):
        m = _WHEEL_NAME_RE.match(posixpath.basename(text))
        return normalise(m.group(1)) if m else None
    simple = _SIMPLE_RE.match(text)
    if simple:
        return normalise(simple.group("name"))
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return normalise(Requirement(text).name)
    except InvalidRequirement:
        return None


def requirement_extras(value: str) -> tuple[str, ...]:
    """The extras ``value`` asks for (``pkg[a,b]``); none for local archives."""
    simple = _SIMPLE_RE.match(value.strip())
    if simple:
        return tuple(sorted({e.strip() for e in (simple.group("extras") or "").split(",") if e.strip()}))
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return tuple(sorted(Requirement(value.strip()).extras))
    except InvalidRequirement:
        return ()


def local_path(value: str) -> str | None:
    """The repository-relative path ``value`` names (a bare path or a ``file:`` URL), or None."""
    text = value.strip()
    if _is_local_path(text):
        return text
    if "@" in text and "file:" in text:
        url = text.split("@", 1)[1].split(";", 1)[0].strip()
        return unquote(urlsplit(url).path) or None
    return None


def parse_lockfile(data: bytes, root: str | None = None) -> tuple[list[LockLine], list[tuple[int, str]]]:
    """The requirement lines of a lockfile, and ``(line, problem)`` for each line that is refused."""
    lines: list[LockLine] = []
    problems: list[tuple[int, str]] = []
    for number, text in _logical_lines(data.decode("utf-8", errors="replace")):
        tokens = text.split()
        if tokens[0].startswith("-"):
            option = tokens[0].split("=", 1)[0]
            problems.append((number, f"option {option} is not allowed in a lockfile: only requirements, "
                                     "each optionally with --hash=ALGO:HEX"))
            continue
        split = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
        requirement = " ".join(tokens[:split])
        hashes, bad = [], None
        options = tokens[split:]
        i = 0
        while i < len(options):
            opt = options[i]
            if opt == "--hash" and i + 1 < len(options):  # `--hash sha256:…` is pip's other spelling
                opt = f"--hash={options[i + 1]}"
                i += 1
            if _HASH_RE.fullmatch(opt):
                hashes.append(opt.split("=", 1)[1] if "=" in opt else opt[len("--hash"):].strip())
            else:
                bad = opt.split("=", 1)[0]
                break
            i += 1
        if bad is not None:
            problems.append((number, f"option {bad} is not allowed in a lockfile: only --hash=ALGO:HEX may "
                                     "follow a requirement"))
            continue
        problem = requirement_problem(requirement, root)
        if problem is not None:
            problems.append((number, problem))
            continue
        lines.append(LockLine(number, requirement, tuple(hashes)))
    return lines, problems


def render_lockfile(lines: list[LockLine]) -> str:
    """A requirements file holding exactly ``lines`` (what pip is given after checking)."""
    out = []
    for ln in lines:
        out.append(" ".join([ln.requirement, *(f"--hash={h}" for h in ln.hashes)]))
    return "\n".join(out) + ("\n" if out else "")


# -- helpers ----------------------------------------------------------------------------------------

def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first physical line number, text) of each non-empty logical line, the way pip reads them
    (``join_lines`` then ``ignore_comments``): a line ending in a backslash, unless it is a comment
    line, continues on the next; comments go."""
    out: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.endswith("\\") and not _COMMENT_RE.match(line):
            if not parts:
                start = number
            parts.append(line.strip("\\"))
            continue
        if parts:
            parts.append(" " + line if _COMMENT_RE.match(line) else line)
            joined, parts = "".join(parts), []
        else:
            joined, start = line, number
        joined = _COMMENT_RE.sub("", joined).strip()
        if joined:
            out.append((start, joined))
    if parts:
        joined = _COMMENT_RE.sub("", "".join(parts)).strip()
        if joined:
            out.append((start, joined))
    return out


def _is_local_path(text: str) -> bool:
    """pip treats a requirement as a path when it looks like one: a folder separator or an archive."""
    if "@" in text or ";" in text or " " in text:
        return False
    return "/" in text or "\\" in text or text.startswith(".") or text.endswith(_ARCHIVE_SUFFIXES)


def _local_path_problem(text: str) -> str | None:
    if text.startswith("/"):
        return _inside_problem(text, text)
    if "\\" in text or not _LOCAL_PATH_RE.fullmatch(text):
        return f"{text!r} is neither a PEP 508 requirement nor a plain relative path to a local wheel"
    return _inside_problem(text, text)


def _file_url_problem(url: str, root: str | None) -> str | None:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        return f"{url!r}: a file URL must name a path on this machine inside the repository"
    path = unquote(parts.path)
    if posixpath.isabs(path):
        if root is None:
            return None  # judged at build time, against the repository the build runs in
        rel = posixpath.relpath(posixpath.normpath(path), posixpath.normpath(root))
        return _inside_problem(url, rel)
    return _inside_problem(url, path)


def _inside_problem(shown: str, rel: str) -> str | None:
    norm = posixpath.normpath(rel)
    if posixpath.isabs(norm) or norm == ".." or norm.startswith("../") or norm == ".":
        return f"{shown!r} is outside the repository: local requirements must be files inside it"
    first = norm.split("/", 1)[0]
    if first in (".git", ".mlops"):
        return f"{shown!r} is inside {first}/, which mlops owns"
    return None
