"""Secret values, masked as ``***`` in everything mlops prints or stores.

One process-wide ``MASKER`` knows the values. Who adds to it:

- the pipeline runner, for the secrets a pipeline declares by name (``secrets: [HF_TOKEN]``),
  read from the host environment when the run starts, before any step runs;
- the CLI at start-up, for host variables that look secret (``host_secret_names``), in case
  something mlops prints (an error from a library, a URL) carries one.

What applies it: the CLI wraps ``sys.stdout``/``sys.stderr`` in ``MaskingStream`` (so every
``click.echo``, ``print`` and rich console line is covered), the runner masks each step's
stdout/stderr log file before it becomes a blob (``mask_file``), and run records mask their
error texts before they are saved. Values shorter than ``MIN_LENGTH`` are not masked: replacing
every ``abc`` in the output would garble it and protect nothing.

Under GitHub Actions (``GITHUB_ACTIONS=true``) each declared value is also announced with
``::add-mask::`` on stdout as it is registered, so the runner masks it in the job log too.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

MASK = "***"
MIN_LENGTH = 4  # a declared secret shorter than this is not masked (it would garble the output)
HOST_MIN_LENGTH = 8  # host variables are masked on a guess from their name: be surer before garbling
# Host variables whose values mlops masks without being told: names that say "secret".
_SECRET_NAME_RE = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|API_?KEY|(^|_)KEY$")
_CHUNK = 1 << 20


def host_secret_names(environ: Mapping[str, str]) -> list[str]:
    """Names of host variables that look like secrets (``GITHUB_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``*_KEY``...)."""
    return sorted(n for n, v in environ.items() if _SECRET_NAME_RE.search(n.upper()) and len(v) >= HOST_MIN_LENGTH)


class Masker:
    """The secret values of this process, and how to hide them in text, bytes and files."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._text: re.Pattern[str] | None = None
        self._bytes: re.Pattern[bytes] | None = None
        self._prefixes: frozenset[str] = frozenset()
        self._longest = 0

    @property
    def active(self) -> bool:
        return self._text is not None

    def add(self, value: str, min_length: int = MIN_LENGTH) -> bool:
        """Mask ``value`` from now on (and each of its lines, and its JSON-escaped form). False if too short."""
        forms = {value, *value.splitlines(), json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
        forms = {f.strip() for f in forms}
        forms = {f for f in forms if len(f) >= min_length} - self._values
        if len(value.strip()) < min_length:
            return False
        if not forms:
            return True
        with self._lock:
            self._values |= forms
            ordered = sorted(self._values, key=len, reverse=True)  # the longest of overlapping values wins
            self._text = re.compile("|".join(map(re.escape, ordered)))
            self._bytes = re.compile(b"|".join(re.escape(v.encode()) for v in ordered))
            self._prefixes = frozenset(v[:k] for v in ordered for k in range(1, len(v)))
            self._longest = max(len(v.encode()) for v in ordered)  # in bytes: >= any length in characters
        return True

    def mask(self, text: str) -> str:
        """``text`` with every known value replaced by ``***``."""
        pattern = self._text
        return text if pattern is None else pattern.sub(MASK, text)

    def mask_data(self, data: Any) -> Any:
        """A JSON value with every string in it (keys too) masked."""
        if self._text is None:
            return data
        if isinstance(data, str):
            return self.mask(data)
        if isinstance(data, dict):
            return {self.mask(str(k)): self.mask_data(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.mask_data(v) for v in data]
        return data

    def mask_bytes(self, data: bytes) -> bytes:
        pattern = self._bytes
        return data if pattern is None else pattern.sub(MASK.encode(), data)

    def split_held(self, text: str) -> tuple[str, str]:
        """Mask ``text``; return ``(what may be written now, a tail that may be the start of a value)``."""
        masked = self.mask(text)
        prefixes = self._prefixes
        for k in range(min(len(masked), self._longest - 1), 0, -1):
            if masked[-k:] in prefixes:
                return masked[:-k], masked[-k:]
        return masked, ""

    def mask_file(self, path: Path) -> bool:
        """Mask the file in place (atomically); True if it contained a value. Streams: logs may be large."""
        pattern = self._bytes
        if pattern is None or not _contains(path, pattern, self._longest):
            return False
        tmp = path.with_name(f".{path.name}.masking")
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            carry = b""
            while True:
                chunk = src.read(_CHUNK)
                data = carry + chunk
                if not chunk:
                    dst.write(pattern.sub(MASK.encode(), data))
                    break
                # Everything before `cut` is final: a value starting there would end inside `data`.
                cut = max(0, len(data) - (self._longest - 1))
                out, end = [], 0
                for m in pattern.finditer(data):
                    if m.start() >= cut:
                        break
                    out += [data[end:m.start()], MASK.encode()]
                    end = m.end()
                cut = max(cut, end)
                out.append(data[end:cut])
                dst.write(b"".join(out))
                carry = data[cut:]
        os.replace(tmp, path)
        return True


def _contains(path: Path, pattern: re.Pattern[bytes], longest: int) -> bool:
    with open(path, "rb") as f:
        tail = b""
        while chunk := f.read(_CHUNK):
            data = tail + chunk
            if pattern.search(data):
                return True
            tail = data[max(0, len(data) - (longest - 1)):]
    return False


MASKER = Masker()


def register(values: Iterable[str], environ: Mapping[str, str] | None = None) -> None:
    """Mask ``values`` from now on; under GitHub Actions announce each with ``::add-mask::`` first."""
    env = os.environ if environ is None else environ
    announce = env.get("GITHUB_ACTIONS") == "true"
    for value in values:
        if announce and len(value.strip()) >= MIN_LENGTH:
            raw = sys.stdout.inner if isinstance(sys.stdout, MaskingStream) else sys.stdout
            # One command per line (a command cannot span lines); data escaped as actions/toolkit does.
            for line in {ln.strip() for ln in value.splitlines()} - {""}:
                escaped = line.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
                raw.write(f"::add-mask::{escaped}\n")
            raw.flush()
        MASKER.add(value)


def register_host_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Mask the values of host variables that look secret (see ``host_secret_names``); their names."""
    env = os.environ if environ is None else environ
    names = host_secret_names(env)
    for name in names:
        MASKER.add(env[name], HOST_MIN_LENGTH)
    return names


class MaskingStream:
    """A text stream that masks secret values on their way to ``inner``.

    A write that ends with what may be the start of a value holds that tail back until the next
    write or ``flush`` (``print`` writes a line and its newline separately); ``click.echo`` and
    rich flush after each message, so nothing stays held for long.
    """

    def __init__(self, inner: IO[str], masker: Masker = MASKER) -> None:
        self.inner = inner
        self.masker = masker
        self.buffer = MaskingBinaryStream(inner.buffer, masker) if hasattr(inner, "buffer") else None
        self._held = ""

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if not self.masker.active:
            self.inner.write(self._held + s)
            self._held = ""
            return len(s)
        out, self._held = self.masker.split_held(self._held + s)
        if out:
            self.inner.write(out)
        return len(s)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._held:
            self.inner.write(self.masker.mask(self._held))
            self._held = ""
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    def __getattr__(self, name: str) -> Any:  # encoding, errors, name, closed...
        return getattr(self.inner, name)


class MaskingBinaryStream:
    """The bytes side of ``MaskingStream`` (``sys.stdout.buffer``), for writers that bypass the text layer."""

    def __init__(self, inner: IO[bytes], masker: Masker = MASKER) -> None:
        self.inner = inner
        self.masker = masker

    def write(self, data: bytes) -> int:
        self.inner.write(self.masker.mask_bytes(bytes(data)))
        return len(data)

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def install() -> None:
    """Route this process's stdout and stderr through the masker (once), and mask host secrets."""
    if not isinstance(sys.stdout, MaskingStream):
        sys.stdout.flush()
        sys.stdout = MaskingStream(sys.stdout)
    if not isinstance(sys.stderr, MaskingStream):
        sys.stderr.flush()
        sys.stderr = MaskingStream(sys.stderr)
    register_host_secrets()


# The host variables a process mlops runs from repository code sees (a pipeline step, a scoring server). They say how to run here, not what to compute (none is in the
# cache key): PATH/HOME/USER/LOGNAME/SHELL and the temp dirs locate things; LANG, LANGUAGE, LC_*
# and TZ keep text and time handling as on the host; TERM/NO_COLOR/COLORTERM shape output; the CA
# bundle variables and proxies let a step reach the network where the host can (a proxy URL may
# carry a password: declare it in `secrets` to have it masked); CUDA_VISIBLE_DEVICES is the host's
# choice of GPUs. Of PYTHON*, only the variables about I/O: PYTHONPATH is the repository root
# (below), and PYTHONHOME/PYTHONSTARTUP/PYTHONWARNINGS... would change what a step runs.
HOST_ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TEMP", "TMP",
    "LANG", "LANGUAGE", "TZ", "TERM", "COLORTERM", "NO_COLOR",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT", "AWS_CA_BUNDLE",
    "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "PYTHONUNBUFFERED", "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONDONTWRITEBYTECODE",
    "CUDA_VISIBLE_DEVICES",
})
HOST_ALLOWED_PREFIXES = ("LC_",)
