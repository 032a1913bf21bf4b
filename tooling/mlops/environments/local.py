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
"""

from __future__ import annotations

import contextlib
import fcntl
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

from mlops.environments.identity import canonical_spec, identity_of, repo_reader
from mlops.environments.installer import ensure_venv_pip, host_pip_for, pip_install, requirement_args, tail
from mlops.environments.interpreter import find_interpreter
from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment

MARKER = "mlops-environment.json"
_TMP = ".tmp-"


@dataclass(frozen=True)
class RealisedEnvironment:
    """An environment that exists on this machine and can run commands."""

    identity: str
    name: str
    python: str  # absolute path of the environment's interpreter (inside the virtualenv)
    bin_dir: str
    variables: dict[str, str] = field(default_factory=dict)
    location: str = ""
    built: bool = False  # False when it was already cached

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
    """Where local environments of a repository are cached: ``<repo_root>/.mlops/envs``."""
    return Path(repo_root) / ".mlops" / "envs"


def realise_local(env: Environment, repo_root: Path, cache_root: Path | None = None) -> RealisedEnvironment:
    """Make sure the virtualenv of ``env`` exists and return it; build it only if its identity is new.

    Raises EnvironmentBuildError when no suitable python exists or pip fails (with pip's last lines).
    """
    repo_root = Path(repo_root).resolve()
    spec = canonical_spec(env, repo_reader(repo_root))
    identity = identity_of(spec)
    root = Path(cache_root if cache_root is not None else default_cache_root(repo_root)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    final = root / identity[:16]

    marker = _read_marker(final, identity)
    if marker is not None and env.name in marker.get("names", ()):
        return _realised(final, identity, env.name, env.variables, built=False)

    with _locked(root / f".{identity[:16]}.lock"):
        marker = _read_marker(final, identity)  # another process may have finished it meanwhile
        if marker is not None:
            _add_name(final, marker, env.name)
            return _realised(final, identity, env.name, env.variables, built=False)
        _sweep(root, identity[:16])
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP}{identity[:16]}-", dir=root))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the environment is for everyone
            _build(env, spec, identity, repo_root, tmp, final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _realised(final, identity, env.name, env.variables, built=True)


def find_local(env: Environment, repo_root: Path, cache_root: Path | None = None) -> RealisedEnvironment | None:
    """The realised environment of ``env`` if it is built (under any name), else None. Builds nothing."""
    repo_root = Path(repo_root).resolve()
    identity = identity_of(canonical_spec(env, repo_reader(repo_root)))
    root = Path(cache_root if cache_root is not None else default_cache_root(repo_root))
    final = root.resolve() / identity[:16]
    if _read_marker(final, identity) is None:
        return None
    return _realised(final, identity, env.name, env.variables, built=False)


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
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not one of ours, or damaged: realise_local rebuilds it when asked
        if not identity.startswith(d.name) or not _interpreter(d).exists():
            continue
        variables = dict(marker.get("spec", {}).get("variables", {}))
        for name in marker.get("names", []):
            found.append(_realised(d, identity, str(name), variables, built=False))
    return sorted(found, key=lambda r: (r.name, r.identity))


# -- building -------------------------------------------------------------------------------------

def _build(env: Environment, spec: dict[str, Any], identity: str, repo_root: Path, tmp: Path, final: Path) -> None:
    interpreter = find_interpreter(env)
    started = time.monotonic()
    _create_venv(env, interpreter, tmp)
    args = requirement_args(env, repo_root)
    if args:
        venv_python = str(_interpreter(tmp))
        pip = host_pip_for(venv_python) or ensure_venv_pip(env, venv_python)
        pip_install(env, pip, args, cwd=repo_root)
    _relocate(tmp, final)
    marker = {
        "identity": identity,
        "names": [env.name],
        "spec": spec,
        "python_version": _venv_version(tmp),
        "base_interpreter": interpreter,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 3),
    }
    _write_json(tmp / MARKER, marker)


def _create_venv(env: Environment, interpreter: str, where: Path) -> None:
    try:
        if interpreter == sys.executable:
            venv.EnvBuilder(system_site_packages=env.system_site_packages, symlinks=True, with_pip=False).create(where)
            return
        cmd = [interpreter, "-m", "venv", "--without-pip", "--symlinks"]
        if env.system_site_packages:
            cmd.append("--system-site-packages")
        proc = subprocess.run([*cmd, str(where)], capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise EnvironmentBuildError(f"environment {env.name!r}: cannot create a virtualenv with {interpreter}: {e}") from e
    if proc.returncode != 0:
        raise EnvironmentBuildError(f"environment {env.name!r}: `{' '.join(cmd)}` failed:\n{tail(proc.stdout + proc.stderr)}")


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


def _realised(final: Path, identity: str, name: str, variables: Mapping[str, str], built: bool) -> RealisedEnvironment:
    return RealisedEnvironment(identity=identity, name=name, python=str(_interpreter(final)),
                               bin_dir=str(_bin_dir(final)), variables=dict(variables),
                               location=str(final), built=built)


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
