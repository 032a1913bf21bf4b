"""Running git for the git store: one argv, no shell, no prompt, errors as StoreError.

Every ref name and remote name that reaches an argv here was validated first (``check_remote``,
``keys.check_key``): ref names always start with ``refs/``, so nothing can pass for an option or a
refspec. ``GIT_TERMINAL_PROMPT=0`` makes a remote that wants credentials fail at once instead of
waiting for a person on an unattended runner.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlops.errors import StoreError

TIMEOUT = 300.0
# A remote is named in mlops.yaml (untrusted): a plain name, never a URL, a path or an option.
_REMOTE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_NETWORK = ("fetch", "push", "ls-remote")  # the commands that talk to the remote (named by their first operand)


def check_remote(name: str) -> str:
    """Return ``name`` if it can be a git remote's name, else raise StoreError."""
    if not _REMOTE_RE.fullmatch(name) or ".." in name or name.endswith((".", ".lock")):
        raise StoreError(f"invalid git remote name {name!r} for the git store: use the name of a configured "
                         "remote (letters, digits, '.', '_', '-'), such as origin")
    return name


@dataclass(frozen=True)
class Git:
    """git in one repository."""

    root: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", SSH_ASKPASS="", LC_ALL="C")
        # Reading our own refs must not depend on the user's replace refs or lazy-fetch settings.
        env.update(GIT_NO_REPLACE_OBJECTS="1", GIT_NO_LAZY_FETCH="1")
        return env

    def run(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run ``git -C ROOT ARGS``; with ``check`` a non-zero exit is a StoreError naming git's message."""
        env = self.env()
        if args and args[0] in _NETWORK:
            remote = next((a for a in args[1:] if not a.startswith("-")), "")
            env.update(self.auth_env(remote))
        try:
            r = subprocess.run(["git", "-C", str(self.root), *args], input=input, capture_output=True,
                               timeout=TIMEOUT, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise StoreError(f"git {args[0]} in {self.root} failed: {e}") from e
        if check and r.returncode != 0:
            raise StoreError(f"git {' '.join(args[:2])} in {self.root} failed: {message(r.stderr)}")
        return r

    def popen(self, *args: str, stdin: bool = False) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(["git", "-C", str(self.root), *args], env=self.env(),
                                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            raise StoreError(f"git {args[0]} in {self.root} failed: {e}") from e

    def auth_env(self, remote: str) -> dict[str, str]:
        """Under GitHub Actions, whose checkout keeps no credentials (``persist-credentials: false``), the job's
        ``GITHUB_TOKEN`` as an HTTP header for git talking to ``remote``, through the environment (never on a
        command line, never in .git/config); only when the remote is on the job's own server
        (``GITHUB_SERVER_URL``), so the token never goes to another host. Empty otherwise."""
        token, server = os.environ.get("GITHUB_TOKEN"), (os.environ.get("GITHUB_SERVER_URL") or "").rstrip("/")
        if not token or not server.startswith(("https://", "http://")) or not _REMOTE_RE.fullmatch(remote):
            return {}
        r = self.run("config", "--get", f"remote.{remote}.url", check=False)
        if not text(r.stdout).strip().startswith(server + "/"):
            return {}
        if self.run("config", "--get-all", f"http.{server}/.extraheader", check=False).stdout.strip():
            return {}  # the checkout kept its credentials: a second Authorization header would be refused
        count = os.environ.get("GIT_CONFIG_COUNT", "")
        n = int(count) if count.isdigit() else 0  # keep the job's own GIT_CONFIG_* settings: ours go after them
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        return {"GIT_CONFIG_COUNT": str(n + 1), f"GIT_CONFIG_KEY_{n}": f"http.{server}/.extraheader",
                f"GIT_CONFIG_VALUE_{n}": f"AUTHORIZATION: basic {basic}"}

    def remote_url(self, remote: str) -> str | None:
        """The URL of ``remote`` as messages may show it (credentials in it replaced by ``***``), or None
        when the repository has no such remote."""
        r = self.run("config", "--get", f"remote.{check_remote(remote)}.url", check=False)
        url = text(r.stdout).strip()
        return shown_url(url) if url else None

    def hash_stream(self, chunks: Iterable[bytes]) -> str:
        """Write the concatenated ``chunks`` as one git blob; return its object id."""
        proc = self.popen("hash-object", "-w", "--stdin", stdin=True)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
            proc.stdin.close()
            out, err = proc.stdout.read(), proc.stderr.read()  # a line at most: no pipe fills up
            proc.wait(timeout=TIMEOUT)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            raise StoreError(f"git hash-object in {self.root} failed: {message(err)}")
        return text(out).strip()

    def update_refs(self, updates: dict[str, str | None]) -> bool:
        """Set (object id) or delete (None) local refs in one transaction. False if git refused."""
        if not updates:
            return True
        lines = "".join(f"update {ref} {sha}\n" if sha else f"delete {ref}\n" for ref, sha in updates.items())
        return self.run("update-ref", "--stdin", input=lines.encode(), check=False).returncode == 0


def shown_url(url: str) -> str:
    """``url`` without the credentials a URL like ``https://user:TOKEN@host/repo`` carries (git itself hides
    them in its messages; ours name the remote's URL, and CI logs keep them)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url  # a path, or scp-like user@host:repo (that user is a login name, no secret)
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def message(stderr: bytes) -> str:
    """git's first error line, without the hints."""
    lines = [ln.strip() for ln in text(stderr).splitlines() if ln.strip() and not ln.startswith("hint:")]
    errors = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    return (errors or lines or ["(no message)"])[0]


def rejection(porcelain: bytes) -> str:
    """The first ref ``git push --porcelain`` rejected, with git's reason ("" if none)."""
    for line in text(porcelain).splitlines():
        if line.startswith("!\t"):
            return line[2:].replace("\t", " ")
    return ""


def text(b: bytes) -> str:
    return b.decode(errors="replace")
