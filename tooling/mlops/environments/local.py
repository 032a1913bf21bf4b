"""Local realisation of an environment: a virtualenv cached under its identity.

Layout of the cache (``<repo>/.mlops/envs`` unless told otherwise)::

    <identity[:16]>/                  a complete virtualenv; only its marker changes once in place
        bin/python                    ...
        mlops-environment.json        marker: identity, spec, names that use it
    .<identity[:16]>.lock             serialises builders of one identity (flock)
    .tmp-<identity[:16]>-XXXX/        a build in progress (or killed: removed by the next build)

A build happens in a temporary directory next to its final place and is renamed into place only
when complete, so a killed build never leaves something that looks reusable. Scripts that
venv/pip write with absolute paths (console-script shebangs, activate scripts) are rewritten
from the temporary path to the final one before the rename.

Requirements are installed with the host's pip (``pip --python VENV_PYTHON``), so the virtualenv
itself has no pip unless it is listed in the requirements (or the host has no usable pip, in which
case ``ensurepip`` seeds one). POSIX only (uses ``fcntl``).

``system_site_packages`` means the packages of the python that runs mlops. A virtualenv's own
``--system-site-packages`` only shows the *base* interpreter's, so when mlops itself runs in a
virtualenv (``python3 -m venv``, then ``pip install``), a ``.pth`` file in the environment adds the
site folders of that virtualenv too (only when the environment uses the running interpreter: a
different python version cannot load its compiled packages). The folders an environment reuses are
recorded in its marker, and the packages in them are part of its realised identity: when they change,
steps that use the environment run again (the virtualenv itself sees them as they are, so it is kept).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops import host
from mlops.environments.identity import canonical_spec, identity_of, repo_reader
from mlops.environments.installer import ensure_venv_pip, host_pip_for, pip_install, pip_requirements, tail
from mlops.environments.interpreter import find_interpreter
from mlops.environments.progress import BuildProgress, Echo
from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment

MARKER = "mlops-environment.json"
HOST_PTH = "_mlops_host_site.pth"
_TMP = ".tmp-"
# sys.path of an environment's python, as JSON (run without PYTHONPATH: that is the caller's, not the environment's)
_SYS_PATH_PROBE = "import json, sys; print(json.dumps(sys.path))"


@dataclass(frozen=True)
class RealisedEnvironment:
    """An environment that exists on this machine and can run commands."""

    identity: str  # what steps ran with: the spec's identity, plus the host packages it reuses (if any)
    name: str
    python: str  # absolute path of the environment's interpreter (inside the virtualenv)
    bin_dir: str
    variables: dict[str, str] = field(default_factory=dict)
    location: str = ""
    built: bool = False  # False when it was already cached
    spec_identity: str = ""  # the identity of the spec alone: names the virtualenv's folder

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A process environment that runs commands inside this environment.

        ``base`` (default: ``os.environ``) with the virtualenv activated and the spec's variables set.
        """
        out = dict(os.environ if base is None else base)
        out.pop("PYTHONHOME", None)
        out["VIRTUAL_ENV"] = self.location
        out["PATH"] = self.bin_dir + os.pathsep + out.get("PATH", "")
        out.update(self.variables)
        return out


def default_cache_root(repo_root: Path) -> Path:
    """Where local environments of a repository are cached: ``<repo_root>/.mlops/envs``.

    ``PathError`` when it is (or passes through) a symbolic link: builds, prunes and removals
    happen there, never in whatever directory a link names."""
    from mlops import paths

    return paths.own_path(Path(repo_root), ".mlops/envs")


def realise_local(env: Environment, repo_root: Path, cache_root: Path | None = None,
                  echo: Echo | None = None) -> RealisedEnvironment:
    """Make sure the virtualenv of ``env`` exists and return it; build it only if its identity is new.

    Raises EnvironmentBuildError when no suitable python exists, a requirement is not one, or pip
    fails (with pip's last lines). ``echo`` (one line per call) shows a build's progress.
    """
    repo_root = Path(repo_root).resolve()
    spec = canonical_spec(env, repo_reader(repo_root))
    identity = identity_of(spec)
    root = Path(cache_root if cache_root is not None else default_cache_root(repo_root)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    final = root / identity[:16]

    marker = _read_marker(final, identity)
    if marker is not None and env.name in marker.get("names", ()):
        return _realised(final, marker, env.name, env.variables, built=False)

    with _locked(root / f".{identity[:16]}.lock"):
        marker = _read_marker(final, identity)  # another process may have finished it meanwhile
        if marker is not None:
            _add_name(final, marker, env.name)
            return _realised(final, marker, env.name, env.variables, built=False)
        _sweep(root, identity[:16])
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP}{identity[:16]}-", dir=root))
        progress = BuildProgress(env.name, echo)
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the environment is for everyone
            marker = _build(env, spec, identity, repo_root, tmp, final, progress)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            progress.done(None)
            raise
        progress.done()
    return _realised(final, marker, env.name, env.variables, built=True)


def find_local(env: Environment, repo_root: Path, cache_root: Path | None = None) -> RealisedEnvironment | None:
    """The realised environment of ``env`` if it is built (under any name), else None. Builds nothing."""
    repo_root = Path(repo_root).resolve()
    identity = identity_of(canonical_spec(env, repo_reader(repo_root)))
    root = Path(cache_root if cache_root is not None else default_cache_root(repo_root))
    final = root.resolve() / identity[:16]
    marker = _read_marker(final, identity)
    if marker is None:
        return None
    return _realised(final, marker, env.name, env.variables, built=False)


def list_local(cache_root: Path) -> list[RealisedEnvironment]:
    """Every complete environment in ``cache_root``: one entry per name that realised it, sorted."""
    root = Path(cache_root).resolve()
    if not root.is_dir():
        return []
    found: list[RealisedEnvironment] = []
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or not d.is_dir():
            continue
        try:
            marker = json.loads((d / MARKER).read_text(encoding="utf-8"))
            identity = str(marker["identity"])
            variables = dict(marker.get("spec", {}).get("variables", {}))
            names = [str(n) for n in marker.get("names", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not one of ours, or damaged: realise_local rebuilds it when asked
        if not identity.startswith(d.name) or not _interpreter(d).exists():
            continue
        for name in names:
            found.append(_realised(d, marker, name, variables, built=False))
    return sorted(found, key=lambda r: (r.name, r.identity))


@dataclass(frozen=True)
class Unused:
    """A folder of the cache that no spec uses: a built environment, or what a dead build left."""

    location: str
    names: tuple[str, ...]  # the environment names that realised it (none for leftovers)
    size: int  # bytes


def unused_local(cache_root: Path, in_use: set[str]) -> list[Unused]:
    """Folders directly under ``cache_root`` whose spec identity is not in ``in_use``, sorted.

    Complete environments, damaged ones, and temporary folders of builds that are not running.
    Symlinks are never listed: only what is inside the cache can be removed.
    """
    root = Path(cache_root).resolve()
    if not root.is_dir():
        return []
    keep = {i[:16] for i in in_use}
    found: list[Unused] = []
    for d in sorted(root.iterdir()):
        if d.is_symlink() or not d.is_dir():
            continue
        if d.name.startswith(_TMP):
            owner = d.name[len(_TMP):len(_TMP) + 16]
            try:
                with _locked(root / f".{owner}.lock", blocking=False):
                    found.append(Unused(str(d), (), _size(d)))
            except BlockingIOError:
                pass  # a build in progress
            continue
        if d.name.startswith(".") or d.name in keep:
            continue
        names: tuple[str, ...] = ()
        try:
            marker = json.loads((d / MARKER).read_text(encoding="utf-8"))
            names = tuple(str(n) for n in marker.get("names", []))
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        found.append(Unused(str(d), names, _size(d)))
    return found


def remove_unused(cache_root: Path, unused: Unused) -> None:
    """Remove one folder that :func:`unused_local` found (under its identity's lock), and that lock."""
    root = Path(cache_root).resolve()
    path = Path(unused.location)
    if path.parent != root or path.is_symlink():
        raise EnvironmentBuildError(f"refusing to remove {path}: not a folder inside {root}")
    id16 = path.name[len(_TMP):len(_TMP) + 16] if path.name.startswith(_TMP) else path.name
    lock = root / f".{id16}.lock"
    with _locked(lock):
        shutil.rmtree(path)
        if not path.name.startswith(_TMP):
            lock.unlink(missing_ok=True)


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):  # does not follow symlinks
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


# -- building -------------------------------------------------------------------------------------

def _build(env: Environment, spec: dict[str, Any], identity: str, repo_root: Path, tmp: Path, final: Path,
           progress: BuildProgress) -> dict[str, Any]:
    started = time.monotonic()
    with pip_requirements(env, repo_root) as args:  # refuses what is not a requirement before anything runs
        interpreter = find_interpreter(env)
        progress.phase(f"creating a virtualenv with {interpreter}")
        _create_venv(env, interpreter, tmp)
        reused = _reused_paths(env, tmp) if env.system_site_packages else []
        if args:
            progress.phase("installing requirements with pip")
            venv_python = str(_interpreter(tmp))
            pip = host_pip_for(venv_python) or ensure_venv_pip(env, venv_python)
            pip_install(env, pip, args, cwd=repo_root, on_line=progress.pip_line)
    _relocate(tmp, final)
    marker = {
        "identity": identity,
        "names": [env.name],
        "spec": spec,
        "python_version": _venv_version(tmp),
        "base_interpreter": interpreter,
        "reused_paths": reused,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 3),
    }
    _write_json(tmp / MARKER, marker)
    return marker


def _create_venv(env: Environment, interpreter: str, where: Path) -> None:
    try:
        if interpreter == sys.executable:
            venv.EnvBuilder(system_site_packages=env.system_site_packages, symlinks=True, with_pip=False).create(where)
            if env.system_site_packages:
                _add_host_site(where)
            return
        cmd = [interpreter, "-m", "venv", "--without-pip", "--symlinks"]
        if env.system_site_packages:
            cmd.append("--system-site-packages")
        proc = subprocess.run([*cmd, str(where)], capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise EnvironmentBuildError(f"environment {env.name!r}: cannot create a virtualenv with {interpreter}: {e}") from e
    if proc.returncode != 0:
        raise EnvironmentBuildError(f"environment {env.name!r}: `{' '.join(cmd)}` failed:\n{tail(proc.stdout + proc.stderr)}")


def _add_host_site(where: Path) -> None:
    """Let the virtualenv see the site folders of the python running mlops that its base interpreter's
    do not already cover (those of the virtualenv mlops runs in), their ``.pth`` files included."""
    import site

    base = {os.path.realpath(d) for d in site.getsitepackages([sys.base_prefix])}
    if site.ENABLE_USER_SITE:
        base.add(os.path.realpath(site.getusersitepackages()))
    extra = [d for d in host.site_dirs() if os.path.realpath(d) not in base]
    targets = list(where.glob("lib/*/site-packages"))
    if not extra or len(targets) != 1:
        return
    # A .pth line that starts with "import" is executed: addsitedir also processes the folder's own .pth
    # files (editable installs), which a plain path line would not.
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in extra)
    (targets[0] / HOST_PTH).write_text(lines, encoding="utf-8")


def _reused_paths(env: Environment, where: Path) -> list[str]:
    """The folders outside the virtualenv its python imports from (stdlib, the host's site folders)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH")}
    try:
        proc = subprocess.run([str(_interpreter(where)), "-c", _SYS_PATH_PROBE], capture_output=True, text=True,
                              env=environ, cwd=str(where), timeout=60)
        paths = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise EnvironmentBuildError(f"environment {env.name!r}: cannot run its python: {e}") from e
    if not isinstance(paths, list):
        raise EnvironmentBuildError(f"environment {env.name!r}: its python does not start:\n{tail(proc.stderr)}")
    inside = str(where) + os.sep
    return [p for p in paths if isinstance(p, str) and p and p != str(where) and not p.startswith(inside)]


def _relocate(tmp: Path, final: Path) -> None:
    """Point absolute paths that venv and pip wrote (shebangs, activate scripts) at ``final``."""
    old, new = str(tmp).encode(), str(final).encode()
    candidates = [p for p in _bin_dir(tmp).iterdir() if p.is_file() and not p.is_symlink()]
    candidates.append(tmp / "pyvenv.cfg")
    for path in candidates:
        if path.stat().st_size > 4 * 1024 * 1024:
            continue  # a compiled executable, not a script
        data = path.read_bytes()
        if old not in data:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # binary: rewriting bytes inside it would corrupt it
        _write_bytes(path, data.replace(old, new), mode=path.stat().st_mode)


def _venv_version(where: Path) -> str:
    try:
        for line in (where / "pyvenv.cfg").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return value.strip()
    except OSError:
        pass
    return ""


# -- the cache --------------------------------------------------------------------------------------

def _read_marker(final: Path, identity: str) -> dict[str, Any] | None:
    """The marker of a complete, usable environment at ``final``; None if there is none."""
    try:
        marker: dict[str, Any] = json.loads((final / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker.get("identity") != identity:
        if isinstance(marker.get("identity"), str) and marker["identity"][:16] == identity[:16]:
            raise EnvironmentBuildError(
                f"{final} holds environment {marker['identity']}, whose first 16 hex digits are those of "
                f"{identity}; remove it to rebuild")
        return None
    if not _interpreter(final).exists():
        return None  # its base interpreter is gone (e.g. a pyenv version was uninstalled)
    if marker.get("spec", {}).get("system_site_packages") and not isinstance(marker.get("reused_paths"), list):
        return None  # built before the host packages it reuses were recorded: rebuild it
    return marker


def _add_name(final: Path, marker: dict[str, Any], name: str) -> None:
    names = list(marker.get("names", []))
    if name not in names:
        _write_json(final / MARKER, {**marker, "names": sorted([*names, name])})


def _sweep(root: Path, id16: str) -> None:
    """Remove what killed or broken builds left behind. Called holding the lock of ``id16``."""
    final = root / id16
    if final.exists():
        shutil.rmtree(final)  # no usable marker (checked by the caller): never completed or damaged
    for tmp in root.glob(f"{_TMP}*"):
        owner = tmp.name[len(_TMP):len(_TMP) + 16]
        if owner == id16:
            shutil.rmtree(tmp, ignore_errors=True)
            continue
        # Another identity's build: stale only if nobody holds its lock right now.
        with contextlib.suppress(BlockingIOError), _locked(root / f".{owner}.lock", blocking=False):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path, blocking: bool = True) -> Iterator[None]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _realised(final: Path, marker: dict[str, Any], name: str, variables: Mapping[str, str],
              built: bool) -> RealisedEnvironment:
    identity = str(marker["identity"])
    return RealisedEnvironment(identity=realised_identity(marker), name=name, python=str(_interpreter(final)),
                               bin_dir=str(_bin_dir(final)), variables=dict(variables),
                               location=str(final), built=built, spec_identity=identity)


def realised_identity(marker: dict[str, Any]) -> str:
    """The identity steps see: the spec's, folded with the packages of the host folders it reuses."""
    identity = str(marker["identity"])
    reused = marker.get("reused_paths")
    if not marker.get("spec", {}).get("system_site_packages") or not isinstance(reused, list):
        return identity
    folded = f"{identity}\n{host.packages_identity(str(p) for p in reused)}"
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


def _bin_dir(where: Path) -> Path:
    return where / "bin"


def _interpreter(where: Path) -> Path:
    return where / "bin" / "python"


def _write_json(path: Path, value: Any) -> None:
    _write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8"), mode=0o644)


def _write_bytes(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
