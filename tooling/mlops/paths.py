"""Paths that specs name, kept inside the repository: the one place where the rules live.

* A spec path is relative, POSIX, and stays inside the repository (``lexical``). It never names
  the repository root itself, ``.git`` or ``.mlops`` (``reserved``): the root holds ``.git``, whose
  config can carry the CI runner's credentials, and ``.mlops`` is mlops's own.
* A path is resolved one component at a time (``resolve``): a symbolic link is followed only
  while its target stays inside the repository; a link that leads out (an absolute target
  elsewhere, or ``..`` past the root) is refused, for reads and writes alike. So a committed
  ``etclink -> /etc`` can neither make a Model register ``/etc/shadow`` nor make a step output
  ``etclink/sub`` delete and overwrite host files.
* Writes are stricter: no component of an output's path may be a symbolic link at all, and
  ``TreeWriter`` writes through directory descriptors opened with ``O_NOFOLLOW``: a directory
  swapped for a link after the check (by a step running in parallel, say) makes the write fail
  instead of landing elsewhere.
* Reads that end up in the store (``opened_file``) open the file with the same descriptor walk
  and hand the store a name for that very open file, so what is stored is what was checked.

``PathError`` (an ``MlopsError``) names the path, the link and its target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from mlops.errors import PathError

RESERVED = (".git", ".mlops")
MAX_LINKS = 40  # like the kernel's own limit on links followed in one lookup
# POSIX flags (mlops runs steps the POSIX way anyway); getattr keeps the module importable elsewhere.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)

Readlink = Callable[[str], "str | None"]


# -- the lexical rules -------------------------------------------------------------------
MAX_PATH_BYTES = 1024  # of a path relative to the repository: far beyond real specs, and below PATH_MAX
MAX_NAME_BYTES = 255  # of one component (NAME_MAX on Linux and macOS)


def lexical(value: str) -> str:
    """``value`` normalised (``""`` for the root), or ``PathError`` when it is absolute or escapes,
    or is a name no file can have (a NUL, a component or a whole path too long to open)."""
    norm = posixpath.normpath(value) if value else "."
    if value.startswith(("/", "~", "\\")) or norm == ".." or norm.startswith("../"):
        raise PathError(f"path {value!r} escapes the repository")
    if "\0" in value:
        raise PathError(f"path {value!r} contains a NUL character")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES or \
            any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in norm.split("/")):
        raise PathError(f"path {value[:60]!r}... is too long (at most {MAX_PATH_BYTES} bytes, "
                        f"{MAX_NAME_BYTES} per name)")
    return "" if norm == "." else norm


def spec_path(value: str) -> str:
    """``lexical``, and no control characters (a newline in a path would forge lines of every
    listing and log that prints it): for paths that specs name."""
    bad = next((c for c in value if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise PathError(f"path {value!r} contains the control character {bad!r}")
    return lexical(value)


def reserved(rel: str, names: Iterable[str] = RESERVED) -> str | None:
    """The reserved top-level directory ``rel`` is (or is inside), else None. Case-insensitive:
    ``.GIT`` is ``.git`` on case-insensitive filesystems."""
    top = rel.split("/", 1)[0].lower()
    return next((n for n in names if n.lower() == top), None)


def overlap(a: str, b: str) -> bool:
    """Whether two normalised paths are equal or one contains the other."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/") or not a or not b


# -- resolving symbolic links ------------------------------------------------------------
def resolve(rel: str, readlink: Readlink, roots: Iterable[str] = (), write: bool = False) -> str:
    """``rel`` with every symbolic link resolved, component by component, relative to the root.

    ``readlink(path)`` gives the target of the link at ``path`` (relative to the root) or None
    when ``path`` is not a link; ``roots`` are absolute spellings of the root, so that an absolute
    target pointing back inside counts as inside. ``PathError`` when a link leads outside.
    Missing components are fine (nothing there can be a link yet).

    ``write``: ``rel`` is to be created, so no directory above it may be a link at all (the last
    component is replaced when written, never followed, so it is not looked at).
    """
    todo = list(reversed(rel.split("/")))
    if write:
        last = todo.pop(0)
    done: list[str] = []
    via = ""  # the last link followed, for the message
    hops = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                raise PathError(f"path {rel!r} leads outside the repository{via}")
            done.pop()
            continue
        here = "/".join([*done, part])
        target = readlink(here)
        if target is None:
            done.append(part)
            continue
        if write:
            raise PathError(f"path {rel!r} passes through the symbolic link {here!r} (-> {target!r}): "
                            "only real directories are written to")
        hops += 1
        if hops > MAX_LINKS:
            raise PathError(f"path {rel!r}: too many levels of symbolic links")
        via = f" through the symbolic link {here!r} -> {target!r}"
        if target.startswith("/"):
            inside = _strip_root(target, roots)
            if inside is None:
                raise PathError(f"path {rel!r} leads outside the repository{via}")
            done = []
            target = inside
        todo.extend(reversed(target.split("/")))
    return "/".join([*done, last]) if write else "/".join(done)


def _strip_root(target: str, roots: Iterable[str]) -> str | None:
    for root in roots:
        root = root.rstrip("/")
        if target == root or target.startswith(root + "/"):
            return target[len(root):].lstrip("/")
    return None


def fs_readlink(root: Path) -> Readlink:
    """A ``readlink`` for ``resolve`` that reads the filesystem below ``root``."""
    base = os.fspath(root)

    def readlink(rel: str) -> str | None:
        try:
            return os.readlink(os.path.join(base, rel))
        except OSError:  # not a link (EINVAL), missing, or below a file
            return None

    return readlink


def fs_roots(root: Path) -> tuple[str, ...]:
    """Absolute spellings of ``root``: as given and with its own links resolved."""
    given = os.path.abspath(root)
    real = os.path.realpath(root)
    return (given,) if given == real else (given, real)


def resolve_inside(root: Path, rel: str, names: Iterable[str] = RESERVED) -> Path:
    """The real location of ``rel`` below ``root``: links followed while they stay inside.

    ``PathError`` when ``rel`` escapes, a link leads outside, or the path is (or resolves into)
    one of the reserved directories ``names``.
    """
    real = _resolve_rel(root, rel, tuple(names))
    return Path(root, real) if real else Path(root)


def _resolve_rel(root: Path, rel: str, names: tuple[str, ...]) -> str:
    norm = lexical(rel)
    top = reserved(norm, names)
    if top is not None:
        raise PathError(f"path {rel!r} is inside {top}/, which specs may not name")
    real = resolve(norm, fs_readlink(root), fs_roots(root))
    top = reserved(real, names)
    if top is not None:
        raise PathError(f"path {rel!r} leads into {top}/ through a symbolic link")
    return real


def no_links_below(root: Path, rel: str) -> Path:
    """``root/rel``, or ``PathError`` when a component of ``rel`` that exists is a symbolic link (or
    not a directory, for all but the last). For mlops's own directories (``.mlops/...``, the store):
    whatever put a link there (a restored CI cache, a step), nothing of ours is read, written or
    deleted through it, even a link that stays inside."""
    here = os.fspath(root)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    for i, part in enumerate(parts):
        if part == "..":
            raise PathError(f"path {rel!r} leads outside {root}")
        here = os.path.join(here, part)
        try:
            st = os.lstat(here)
        except (FileNotFoundError, NotADirectoryError):
            break
        if stat.S_ISLNK(st.st_mode):
            raise PathError(f"{here} is a symbolic link (-> {os.readlink(here)}): mlops does not follow links "
                            f"in its own directories; remove it")
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            raise PathError(f"{here} is not a directory")
    return Path(root, *parts)


def own_path(root: Path, rel: str) -> Path:
    """Where mlops's own file or directory ``rel`` (``.mlops/...``) is: its first component may be
    a link that stays inside the repository (never into ``.git``), nothing below it may be a link
    (``no_links_below``). ``PathError`` otherwise."""
    top, _, rest = lexical(rel).partition("/")
    base = resolve_inside(root, top, names=(".git",))
    return no_links_below(base, rest) if rest else base


def check_writable(root: Path, rel: str) -> None:
    """``PathError`` unless every parent directory of ``rel`` is a real directory (or missing).

    The output itself may be anything untracked: it is replaced, never written through.
    """
    norm = lexical(rel)
    resolve(norm, fs_readlink(root), fs_roots(root), write=True)
    parent = posixpath.dirname(norm)
    if not parent:
        return
    try:
        st = os.lstat(os.path.join(root, parent))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        st = None
    if st is None or not stat.S_ISDIR(st.st_mode):
        raise PathError(f"path {rel!r}: a parent of it is a file, not a directory")


# -- reading ------------------------------------------------------------------------------
def open_inside(root: Path, rel: str, names: Iterable[str] = RESERVED) -> int:
    """A read-only descriptor of the regular file ``rel`` (links inside the repository followed).

    The resolved path is opened one directory at a time with ``O_NOFOLLOW``, so a component
    swapped for a link after resolving fails the open instead of being followed.
    """
    real = _resolve_rel(root, rel, tuple(names))
    parts = real.split("/") if real else []
    if not parts:
        raise PathError(f"path {rel!r} is the repository root, not a file")
    parent = _open_dirs(root, parts[:-1], create=False, rel=rel)
    try:
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=parent)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PathError(f"path {rel!r} changed while it was being opened") from None
        raise
    finally:
        os.close(parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PathError(f"path {rel!r} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def read_bytes_inside(root: Path, rel: str, limit: int, names: Iterable[str] = RESERVED) -> bytes:
    """The content of the file ``rel`` (see ``open_inside``), refused when larger than ``limit``."""
    fd = open_inside(root, rel, names)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise PathError(f"path {rel!r} is larger than {limit} bytes")
    return data


@contextlib.contextmanager
def opened_file(root: Path, rel: str, names: Iterable[str] = RESERVED) -> Iterator[tuple[Path, int]]:
    """``(path, size)`` of the file ``rel``, where ``path`` names exactly the file opened here.

    On Linux that is ``/proc/self/fd/N``: whoever opens it gets this file, whatever happens to
    the workspace meanwhile. Elsewhere it is the resolved path (checked, but open to a swap).
    """
    fd = open_inside(root, rel, names)
    try:
        size = os.fstat(fd).st_size
        proc = Path(f"/proc/self/fd/{fd}")
        yield (proc if os.path.exists(proc) else resolve_inside(root, rel, names)), size
    finally:
        os.close(fd)


def files_below(root: Path, rel: str, names: Iterable[str] = RESERVED) -> list[tuple[str, str]]:
    """``(name relative to rel, path relative to root)`` of every regular file below the
    directory ``rel``, sorted. Links to files are followed while they stay inside the repository;
    links to directories are not followed (cycles); a link that leads outside is ``PathError``."""
    names = tuple(names)
    top = resolve_inside(root, rel, names)
    base = top.relative_to(root).as_posix() if top != Path(root) else ""
    found: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        here = Path(dirpath).relative_to(top).as_posix()
        for name in sorted(filenames):
            inner = name if here == "." else f"{here}/{name}"
            at = f"{base}/{inner}" if base else inner
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                real = resolve_inside(root, at, names)
                if not real.is_file():
                    continue
            elif not stat.S_ISREG(os.lstat(path).st_mode):
                continue  # fifos, sockets, devices: never read
            found.append((inner, at))
    return found


# -- what git tracks ---------------------------------------------------------------------
def tracked(root: Path, rels: Iterable[str]) -> dict[str, str]:
    """For each of ``rels`` (normalised, relative to ``root``) that git tracks or that holds
    tracked files: one such file. Empty outside a git work tree (or without git)."""
    specs = sorted({r for r in rels if r})
    if not specs:
        return {}
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *(f":(literal){r}" for r in specs)], cwd=root,
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if out.returncode != 0:
        return {}
    found: dict[str, str] = {}
    for f in sorted(os.fsdecode(p) for p in out.stdout.split(b"\0") if p):
        for r in specs:
            if r not in found and (f == r or f.startswith(r + "/")):
                found[r] = f
    return found


def tracked_problem(value: str, norm: str, hit: str) -> str:
    """The message for an output (or store) path ``value`` where git tracks ``hit``."""
    what = "is a tracked file" if hit == norm else f"holds tracked files (such as {hit})"
    return f"path {value!r} {what}: only new, untracked paths may be written"


# -- writing ------------------------------------------------------------------------------
def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file of a fresh random name, created
    exclusively (never a file or link already there: a predictable name such as ``.x.PID.tmp``
    could be planted beforehand as a link out, and writing it would write through it), then
    renamed over ``path``. Parents are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _open_dirs(root: Path, parts: Iterable[str], create: bool, rel: str) -> int:
    """A descriptor of ``root/parts...``, each component opened with ``O_NOFOLLOW``."""
    fd = os.open(root, _DIR_FLAGS & ~_NOFOLLOW)
    done: list[str] = []
    try:
        for part in parts:
            done.append(part)
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a link, or a file
                    raise PathError(f"path {rel!r}: {'/'.join(done)} is not a real directory "
                                    "(a symbolic link or a file)") from None
                raise
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def append_inside(root: Path, rel: str, data: bytes, names: Iterable[str] = (".git",)) -> None:
    """Append ``data`` to the file ``rel`` (created if missing, with its directories) in one
    ``O_APPEND`` write, so concurrent appenders never interleave within a line. No component may
    be a symbolic link (each is opened with ``O_NOFOLLOW``); ``rel`` may not be in ``names``."""
    norm = lexical(rel)
    top = reserved(norm, tuple(names))
    if top is not None:
        raise PathError(f"path {rel!r} is inside {top}/, which mlops never writes")
    parts = norm.split("/") if norm else []
    if not parts:
        raise PathError(f"path {rel!r} is the repository root, not a file")
    parent = _open_dirs(root, parts[:-1], create=True, rel=rel)
    try:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(parts[-1], flags | getattr(os, "O_NONBLOCK", 0), 0o644, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENXIO):
                raise PathError(f"path {rel!r} is a symbolic link or not a regular file: not appended to") from None
            raise
    finally:
        os.close(parent)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PathError(f"path {rel!r} is not a regular file: not appended to")
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:  # a regular file takes it in one write; a short write is finished, not lost
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


class TreeWriter:
    """Creates, replaces and removes paths below ``root`` without ever following a link.

    Directory descriptors are kept open while the writer is (use it as a context manager), so
    restoring many files of one output opens each directory once.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._fds: dict[tuple[str, ...], int] = {}

    def __enter__(self) -> TreeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _parent(self, rel: str, create: bool) -> tuple[int, str]:
        parts = tuple(lexical(rel).split("/"))
        if not parts[-1]:
            raise PathError("refusing to write the repository root")
        key = parts[:-1]
        fd = self._fds.get(key)
        if fd is None:
            fd = self._fds[key] = _open_dirs(self.root, key, create, rel)
        return fd, parts[-1]

    def makedirs(self, rel: str) -> None:
        """Create the directory ``rel`` and its parents (real directories only)."""
        parts = tuple(lexical(rel).split("/")) if lexical(rel) else ()
        if parts not in self._fds:
            self._fds[parts] = _open_dirs(self.root, parts, True, rel)

    def remove(self, rel: str) -> None:
        """Delete whatever is at ``rel`` (a link itself, never its target). Missing is fine."""
        try:
            fd, name = self._parent(rel, create=False)
        except FileNotFoundError:
            return
        self._forget_below(rel)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            _rmtree_at(fd, name)
        else:
            os.unlink(name, dir_fd=fd)

    def place(self, rel: str, src: Path) -> None:
        """Move the finished file ``src`` (a temporary file of ours) to ``rel``, atomically,
        replacing what is there (a directory is removed first; a link is replaced, not followed)."""
        fd, name = self._parent(rel, create=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                self._forget_below(rel)
                _rmtree_at(fd, name)
        src_dir = os.open(src.parent, _DIR_FLAGS & ~_NOFOLLOW)
        try:
            os.rename(src.name, name, src_dir_fd=src_dir, dst_dir_fd=fd)
        except OSError as e:
            if e.errno != errno.EXDEV:  # the scratch directory is on another filesystem
                raise
            _copy_into(src, fd, name)
            os.unlink(src)
        finally:
            os.close(src_dir)

    def _forget_below(self, rel: str) -> None:
        # Descriptors of directories about to be removed must not be reused for new ones.
        key = tuple(lexical(rel).split("/"))
        for k in [k for k in self._fds if k[:len(key)] == key]:
            os.close(self._fds.pop(k))


def _copy_into(src: Path, dir_fd: int, name: str) -> None:
    tmp = f".mlops-tmp-{os.urandom(6).hex()}"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666, dir_fd=dir_fd)
    try:
        with open(src, "rb") as s, os.fdopen(out, "wb") as d:
            while chunk := s.read(1 << 20):
                d.write(chunk)
            d.flush()
            os.fsync(d.fileno())
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _rmtree_at(dir_fd: int, name: str) -> None:
    """Remove the directory ``name`` (relative to ``dir_fd``) and everything in it, never
    following a link (links are removed themselves)."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for child, is_dir in entries:
            if is_dir:
                _rmtree_at(fd, child)
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
