"""Docker realisation of an environment: an image tagged and labelled with its identity.

The image is built ``FROM`` the environment's base image, which must already be in the local
engine: nothing is pulled. Python requirements are installed *on the host* with
``pip install --target`` (so the build needs no network) and copied into the image on
``PYTHONPATH``. That is only correct when the host is Linux on the image's architecture and the
host python used for it has the environment's major.minor; both are checked. Such builds run
with ``network_mode="none"``: hermetic. ``system_packages`` are installed with ``apt-get`` inside
the build (with the host's network), which needs a Debian-based base image and a reachable
mirror: offline such a build fails, with apt's output in the error.

Images use the classic builder through the Docker SDK (no buildx needed).
"""

from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import docker
import docker.errors
import jinja2

from mlops.environments.identity import canonical_json, canonical_spec, identity_of, repo_reader
from mlops.environments.installer import host_pip_for, pip_install, pip_requirements, tail
from mlops.environments.interpreter import find_interpreter, requested_version
from mlops.environments.progress import BuildProgress, Echo
from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment

LABEL_ENVIRONMENT = "org.mlops.environment"
LABEL_IDENTITY = "org.mlops.identity"
LABEL_SPEC = "org.mlops.spec"
IMAGE_REPOSITORY = "mlops-env"
SITE_DIR = "/opt/mlops/site-packages"
# The python inside the image: `python3` is what Debian and the official python images both have.
IMAGE_PYTHON = "python3"

_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Debian package names (policy 5.6.1), optionally pinned with =VERSION; nothing a shell would expand.
_DEB_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$")


@dataclass(frozen=True)
class BuiltImage:
    """An image that realises an environment in the local Docker engine."""

    identity: str
    tag: str
    image_id: str
    built: bool  # False when an image with this tag and identity already existed


def connect(timeout: int = 600) -> Any:
    """A client of the Docker engine from the environment (DOCKER_HOST or the default socket).

    EnvironmentBuildError if no engine answers. The timeout is long because builds stream slowly.
    """
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as e:
        raise EnvironmentBuildError(f"cannot reach a Docker engine (DOCKER_HOST or /var/run/docker.sock): {e}") from e
    return client


def image_tag(env: Environment, identity: str) -> str:
    """``mlops-env/<name>:<identity[:16]>``, the name made a valid image repository component."""
    return f"{IMAGE_REPOSITORY}/{_repository_component(env.name)}:{identity[:16]}"


def default_base_image(env: Environment) -> str:
    """The base image used when the spec names none: the official ``python:X.Y-slim``."""
    major, minor = requested_version(env)
    return f"python:{major}.{minor}-slim"


def find_image(env: Environment, repo_root: Path, client: Any = None) -> BuiltImage | None:
    """The image realising ``env`` if the engine has it (right tag *and* identity label), else None."""
    identity = identity_of(canonical_spec(env, repo_reader(Path(repo_root))))
    return _existing(client if client is not None else connect(), image_tag(env, identity), identity)


def build_image(env: Environment, repo_root: Path, client: Any = None, echo: Echo | None = None) -> BuiltImage:
    """Build the image of ``env`` unless an image with its tag and identity exists; return it.

    ``echo`` (one line per call) shows the progress of installing its requirements.

    Raises EnvironmentBuildError when the base image is missing locally, no host python matches
    the environment's version, pip fails on the host, or the docker build fails (with the tail of
    its log).
    """
    repo_root = Path(repo_root).resolve()
    spec = canonical_spec(env, repo_reader(repo_root))
    identity = identity_of(spec)
    tag = image_tag(env, identity)
    client = client if client is not None else connect()
    existing = _existing(client, tag, identity)
    if existing is not None:
        return existing

    base = env.base_image or default_base_image(env)
    _require_local_image(client, base, env)
    if sys.platform != "linux":
        raise EnvironmentBuildError(
            f"environment {env.name!r}: docker images are built with packages installed on the host, "
            f"which must be Linux (this is {sys.platform})")
    labels = {LABEL_ENVIRONMENT: env.name, LABEL_IDENTITY: identity, LABEL_SPEC: canonical_json(spec)}
    with tempfile.TemporaryDirectory(prefix="mlops-image-") as tmp, pip_requirements(env, repo_root) as args:
        interpreter = find_interpreter(env)
        context = Path(tmp)
        site = context / "site-packages"
        site.mkdir()
        if args:
            pip = host_pip_for(interpreter)
            if pip is None:
                raise EnvironmentBuildError("docker images need pip >= 22.3 in the python that runs mlops")
            progress = BuildProgress(env.name, echo)
            progress.phase("installing requirements on the host for the image")
            try:
                pip_install(env, pip, ["--target", str(site), *args], cwd=repo_root, on_line=progress.pip_line)
            except BaseException:
                progress.done(None)
                raise
            progress.done("requirements installed")
            _retarget_scripts(site / "bin")
        (context / "Dockerfile").write_text(render_dockerfile(env, identity, base), encoding="utf-8")
        image = _build(client, env, context, tag, labels)
    return BuiltImage(identity=identity, tag=tag, image_id=str(image.id), built=True)


def render_dockerfile(env: Environment, identity: str, base_image: str) -> str:
    """The Dockerfile of ``env``'s image (from ``templates/Dockerfile.j2``)."""
    for pkg in env.system_packages:
        if not _DEB_PACKAGE_RE.fullmatch(pkg):
            raise EnvironmentBuildError(f"{env.file or env.name}: $.system_packages: {pkg!r} is not a Debian package name")
    variables = dict(env.variables)
    for key, value in variables.items():
        if not _ENV_KEY_RE.fullmatch(key):
            raise EnvironmentBuildError(f"{env.file or env.name}: $.variables: {key!r} is not a valid variable name")
        if "\n" in value or "\r" in value:
            raise EnvironmentBuildError(f"{env.file or env.name}: $.variables.{key}: a line break cannot go into an image")
    # The user's PYTHONPATH comes after the packages of the environment instead of hiding them.
    pythonpath = ":".join(p for p in (SITE_DIR, variables.pop("PYTHONPATH", "")) if p)
    major, minor = requested_version(env)
    want = f"{major}.{minor}"
    check = (f"import sys; v = '%d.%d' % sys.version_info[:2]; "
             f"sys.exit(0 if v == {want!r} else 'base image {base_image} has python ' + v + "
             f"', environment {env.name} needs {want}')")
    template = _jinja().get_template("Dockerfile.j2")
    return template.render(
        name=env.name, identity=identity, base_image=base_image, system_packages=sorted(set(env.system_packages)),
        python_check=[IMAGE_PYTHON, "-c", check], site_dir=SITE_DIR, pythonpath=pythonpath,
        variables=sorted(variables.items()),
    )


# -- helpers ----------------------------------------------------------------------------------------

def labelled_image(client: Any, tag: str, label: str, value: str) -> Any | None:
    """The image ``tag`` if it exists and its ``label`` is ``value`` (else the tag was reused for something
    else, or never built: build over it)."""
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as e:
        raise EnvironmentBuildError(f"cannot inspect image {tag}: {e}") from e
    return image if (image.labels or {}).get(label) == value else None


def _existing(client: Any, tag: str, identity: str) -> BuiltImage | None:
    image = labelled_image(client, tag, LABEL_IDENTITY, identity)
    return None if image is None else BuiltImage(identity=identity, tag=tag, image_id=str(image.id), built=False)


def _require_local_image(client: Any, base: str, env: Environment) -> None:
    try:
        client.images.get(base)
    except docker.errors.ImageNotFound:
        raise EnvironmentBuildError(
            f"base image {base!r} of environment {env.name!r} ({env.file or 'no file'}) is not in the local "
            f"Docker engine, and images are never pulled; build or load it first, e.g. "
            f"`debootstrap --variant=minbase --include=python3 bookworm ROOT && "
            f"tar -C ROOT -c . | docker import - {base}`") from None
    except docker.errors.APIError as e:
        raise EnvironmentBuildError(f"cannot inspect base image {base!r}: {e}") from e


def _build(client: Any, env: Environment, context: Path, tag: str, labels: dict[str, str]) -> Any:
    # Without system packages nothing in the build needs a network: "none" keeps it hermetic. apt-get
    # needs one; "host" because engines started with --bridge=none (like ours) have no other.
    network = "host" if env.system_packages else "none"
    try:
        image, _log = client.images.build(path=str(context), tag=tag, labels=labels, rm=True, forcerm=True,
                                          pull=False, network_mode=network)
    except docker.errors.BuildError as e:
        lines = "".join(str(chunk.get("stream") or chunk.get("error") or "") for chunk in e.build_log)
        raise EnvironmentBuildError(
            f"docker build of environment {env.name!r} ({tag}) failed: {e.msg}\n{tail(lines)}") from e
    except docker.errors.APIError as e:
        raise EnvironmentBuildError(f"docker build of environment {env.name!r} ({tag}) failed: {e}") from e
    return image


def _retarget_scripts(bin_dir: Path) -> None:
    """Console scripts that pip wrote for the host python: make them run the image's python."""
    if not bin_dir.is_dir():
        return
    for script in bin_dir.iterdir():
        if not script.is_file():
            continue
        data = script.read_bytes()
        if not data.startswith(b"#!"):
            continue
        first, _, rest = data.partition(b"\n")
        if b"python" in first:
            script.write_bytes(f"#!/usr/bin/env {IMAGE_PYTHON}\n".encode() + rest)


def _repository_component(name: str) -> str:
    """Docker repository components allow [a-z0-9] joined by '.', '_', '__' or runs of '-'."""
    def fix(m: re.Match[str]) -> str:
        sep = m.group(0)
        return sep if sep in (".", "_", "__") or set(sep) == {"-"} else "-"

    out = re.sub(r"[^a-z0-9]+", fix, name.lower()).strip("._-")
    return out or "env"


def _jinja() -> jinja2.Environment:
    source = (resources.files("mlops.environments") / "templates" / "Dockerfile.j2").read_text(encoding="utf-8")
    jenv = jinja2.Environment(loader=jinja2.DictLoader({"Dockerfile.j2": source}), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    jenv.filters["dockerfile_quote"] = _dockerfile_quote
    return jenv


def _dockerfile_quote(value: str) -> str:
    """A double-quoted Dockerfile word: no variable expansion, quotes and backslashes kept."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'
