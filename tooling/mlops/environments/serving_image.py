"""The image a docker target runs: the environment's image plus the mlops scoring server.

An environment image carries what its spec asks for (see ``mlops.environments.docker``). The server
needs more: mlops itself and the distributions it runs on (numpy, onnxruntime, the HTTP server). Those
are no requirements of the user's environment, and an offline build cannot fetch them from an index, so
a thin *serving image* is built ``FROM`` the environment image. It adds, under ``/opt/mlops/serving``:

- ``src/mlops``: the source of the mlops package that is running (so the server in the container is the
  code of the mlops that deployed it, editable checkout or installed wheel alike);
- ``site-packages``: the installed distributions the server needs and, transitively, their requirements,
  copied file by file from the running python (each distribution's RECORD says which files are its).

Copying installed files is only correct when the image's python has the running python's major.minor
and the engine runs on this machine's architecture: both are checked (the build runs a version check
inside the image). The server's packages come first on ``PYTHONPATH``: an environment that pins another
numpy gets the server's in the server process (the server must work; a scoring module runs in it).

The image is tagged ``mlops-serve/<environment>:<digest[:16]>`` and labelled with its digest (the
environment image id, the python version, every copied distribution and the mlops source), so an
unchanged deployment reuses it and a rebuilt environment or another mlops gives a new one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import platform
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

import mlops
from mlops.environments.docker import build_image, labelled_image
from mlops.environments.interpreter import requested_version
from mlops.environments.progress import Echo
from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment

IMAGE_REPOSITORY = "mlops-serve"
LABEL_SERVING_IMAGE = "org.mlops.serving-image"
LABEL_ENVIRONMENT = "org.mlops.environment"
SERVING_DIR = "/opt/mlops/serving"
CONFIG_DIR = "/srv/mlops"
IMAGE_PYTHON = "python3"
# What `python -m mlops.serving` imports beyond the standard library and mlops (their requirements follow);
# tests/deploy/test_docker_image.py checks it against the imports of mlops.serving.
SERVER_REQUIREMENTS = ("numpy", "onnxruntime", "orjson", "prometheus_client", "httptools", "uvloop",
                       "pyarrow")  # pyarrow: inference capture (mlops.serving.capture)
# Never needed at run time, and large or host-specific.
_SKIP_DISTRIBUTIONS = frozenset({"pip", "setuptools", "wheel", "mlops-gitops"})


@dataclass(frozen=True)
class ServingImage:
    """A serving image in the engine."""

    tag: str
    image_id: str
    digest: str
    built: bool  # False when it already existed


def serving_image(client: Any, env: Environment | None, repo_root: Path, base_image: str | None = None,
                  echo: Echo | None = None) -> ServingImage:
    """Build (or find) the serving image for ``env``; without an environment, ``base_image`` is the base.

    The environment's own image is built first when missing (``mlops.environments.docker.build_image``).
    This is what the docker target (``mlops.deploy.docker``) runs; the deploy action hands it this function, since
    deploy does not import the environments plug-in. Raises EnvironmentBuildError when neither is given, the base
    is missing, the versions or architecture do not match, a needed distribution is not installed, or the build
    fails.
    """
    if env is None and not base_image:
        raise EnvironmentBuildError("a docker endpoint needs an environment on its deployments, or the target option "
                          "`base_image` (a local image with python3)")
    name = env.name if env is not None else "default"
    want = _requested(env) if env is not None else sys.version_info[:2]
    if want != sys.version_info[:2]:
        raise EnvironmentBuildError(
            f"environment {name!r} runs python {want[0]}.{want[1]}, but the server's packages are copied from the "
            f"python running mlops ({sys.version_info[0]}.{sys.version_info[1]}); run mlops with that version")
    base = build_image(env, repo_root, client, echo=echo).tag if env is not None else str(base_image)
    base_attrs = _image_attrs(client, base)
    _check_architecture(client, base)
    dists = requirement_closure(SERVER_REQUIREMENTS)
    source = Path(mlops.__file__).resolve().parent
    digest = _digest(str(base_attrs["Id"]), dists, source)
    tag = f"{IMAGE_REPOSITORY}/{_component(name)}:{digest[:16]}"
    existing = _existing(client, tag, digest)
    if existing is not None:
        return existing
    labels = {LABEL_SERVING_IMAGE: digest, LABEL_ENVIRONMENT: name}
    with tempfile.TemporaryDirectory(prefix="mlops-serve-image-") as tmp:
        context = Path(tmp)
        site = context / "site-packages"
        for dist in dists:
            _copy_distribution(dist, site)
        shutil.copytree(source, context / "mlops", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        pythonpath = _base_pythonpath(base_attrs)
        (context / "Dockerfile").write_text(render_dockerfile(base, pythonpath), encoding="utf-8")
        try:
            image, _log = client.images.build(path=str(context), tag=tag, labels=labels, rm=True, forcerm=True,
                                              pull=False, network_mode="none")
        except docker.errors.BuildError as e:
            lines = "".join(str(c.get("stream") or c.get("error") or "") for c in e.build_log)
            raise EnvironmentBuildError(f"docker build of serving image {tag} failed: {e.msg}\n"
                              + "\n".join(lines.splitlines()[-20:])) from e
        except docker.errors.APIError as e:
            raise EnvironmentBuildError(f"docker build of serving image {tag} failed: {e}") from e
    return ServingImage(tag=tag, image_id=str(image.id), digest=digest, built=True)


def render_dockerfile(base: str, base_pythonpath: str) -> str:
    """The serving image's Dockerfile: checks the python version, adds the server, runs it."""
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    check = (f"import sys; v = '%d.%d' % sys.version_info[:2]; "
             f"sys.exit(0 if v == {want!r} else 'image {base} has python ' + v + ', the server needs {want}')")
    pythonpath = ":".join(p for p in (f"{SERVING_DIR}/src", f"{SERVING_DIR}/site-packages", base_pythonpath) if p)
    return "\n".join([
        "# Generated by mlops: the scoring server on top of an environment image (mlops.environments.serving_image).",
        f"FROM {base}",
        f"RUN {json.dumps([IMAGE_PYTHON, '-c', check])}",
        f"COPY site-packages {SERVING_DIR}/site-packages",
        f"COPY mlops {SERVING_DIR}/src/mlops",
        f"ENV PYTHONPATH={json.dumps(pythonpath)} PYTHONUNBUFFERED=1",
        f"WORKDIR {CONFIG_DIR}",
        f"ENTRYPOINT {json.dumps([IMAGE_PYTHON, '-m', 'mlops.serving'])}",
        f"CMD {json.dumps(['--config', f'{CONFIG_DIR}/config.json'])}",
        "",
    ])


def requirement_closure(requirements: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions named by ``requirements`` and everything they require, by name.

    Markers are evaluated for this python and the requested extras. EnvironmentBuildError if one is not installed.
    """
    found: dict[str, metadata.Distribution] = {}
    todo: list[tuple[str, frozenset[str]]] = [(r, frozenset()) for r in requirements]
    while todo:
        text, extras_of_parent = todo.pop()
        try:
            req = Requirement(text)
        except InvalidRequirement as e:
            raise EnvironmentBuildError(f"serving image: cannot read requirement {text!r}: {e}") from e
        if req.marker is not None and not any(req.marker.evaluate({"extra": x}) for x in extras_of_parent or {""}):
            continue
        key = canonicalize_name(req.name)
        if key in _SKIP_DISTRIBUTIONS:
            continue
        if key in found and not req.extras:
            continue
        try:
            dist = found.get(key) or metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise EnvironmentBuildError(f"serving image: the server needs {req.name!r}, which is not installed in the python "
                              f"running mlops ({sys.executable})") from None
        first = key not in found
        found[key] = dist
        if first or req.extras:
            todo.extend((r, frozenset(req.extras)) for r in dist.requires or ())
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


# -- helpers ------------------------------------------------------------------------------------------

def _requested(env: Environment) -> tuple[int, int]:
    major, minor = requested_version(env)
    return int(major), int(minor)


def _image_attrs(client: Any, name: str) -> dict[str, Any]:
    try:
        return dict(client.images.get(name).attrs)
    except docker.errors.ImageNotFound:
        raise EnvironmentBuildError(f"image {name!r} is not in the local Docker engine, and images are never pulled; "
                          f"build or load it first") from None
    except docker.errors.APIError as e:
        raise EnvironmentBuildError(f"cannot inspect image {name!r}: {e}") from e


def _check_architecture(client: Any, image: str) -> None:
    arch = str(_image_attrs(client, image).get("Architecture") or "")
    ours = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    if sys.platform != "linux" or (arch and arch != ours):
        raise EnvironmentBuildError(f"image {image!r} is for {sys.platform if sys.platform != 'linux' else 'linux'}/{arch}; "
                          f"the server's packages are copied from this machine ({sys.platform}/{ours})")


def _copy_distribution(dist: metadata.Distribution, site: Path) -> None:
    """Copy the files of an installed distribution that live in its site directory (not its scripts)."""
    root = Path(str(dist.locate_file(""))).resolve()
    for rel in dist.files or ():
        if "__pycache__" in rel.parts:
            continue
        src = Path(str(dist.locate_file(rel))).resolve()
        try:
            inside = src.relative_to(root)
        except ValueError:
            continue  # a console script in ../../bin: the server runs as `python -m`
        if not src.is_file():
            continue
        dest = site / inside
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def _digest(base_id: str, dists: list[metadata.Distribution], source: Path) -> str:
    h = hashlib.sha256()
    h.update(f"serving-image 1\nbase {base_id}\npython {sys.version_info[0]}.{sys.version_info[1]}\n".encode())
    for dist in dists:
        h.update(f"dist {canonicalize_name(dist.metadata['Name'])}=={dist.version}\n".encode())
    for path in sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                       and p.suffix != ".pyc"):
        h.update(f"file {path.relative_to(source).as_posix()}\n".encode())
        h.update(hashlib.sha256(path.read_bytes()).hexdigest().encode())
    return h.hexdigest()


def _existing(client: Any, tag: str, digest: str) -> ServingImage | None:
    image = labelled_image(client, tag, LABEL_SERVING_IMAGE, digest)
    return None if image is None else ServingImage(tag=tag, image_id=str(image.id), digest=digest, built=False)


def _base_pythonpath(attrs: dict[str, Any]) -> str:
    for item in (attrs.get("Config") or {}).get("Env") or ():
        key, _, value = str(item).partition("=")
        if key == "PYTHONPATH":
            return value
    return ""


def _component(name: str) -> str:
    """A valid image repository component: [a-z0-9] runs joined by single dashes."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "default"
