"""pytest fixtures for a real S3 endpoint: moto's server as a subprocess on 127.0.0.1.

``s3_endpoint`` (session) starts moto's S3 server on a free port, waits until it answers,
yields its URL and kills it afterwards. It also sets dummy AWS credentials in the environment
(and points boto3 away from any real config files), so child processes inherit them.
``s3_bucket`` (function) creates a fresh bucket on that endpoint and yields its name.

Why not plain ``moto_server -H 127.0.0.1 -p PORT``: moto (5.2) honours ``If-None-Match: *``
but checks for the key and then writes it without a lock, in a threaded server, so two
concurrent conditional PUTs can both succeed (seen here: 1 double win in a few thousand
contended creates). Real S3 and MinIO decide conditional writes atomically. Running this
file as a script serves the same moto application (same routes, same behaviour) with
conditional writes applied one at a time, which is the guarantee S3 documents.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the moto server exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the moto server did not answer on {url} within {timeout:.0f}s")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server running for the whole test session."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("werkzeug") is None:
        pytest.skip("moto's server is not installed (pip install 'moto[server]')")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in DUMMY_AWS_ENV.items():
            mp.setenv(k, v)
        mp.delenv("AWS_PROFILE", raising=False)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, __file__, "127.0.0.1", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until_up(url, proc)
            yield url
        finally:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture()
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the moto server."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def serve(host: str, port: int) -> None:
    """Serve moto's application like ``moto_server``, with conditional writes serialised."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    moto_app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ:
            with lock:  # check and write as one step, as S3 does
                return list(moto_app(environ, start_response))
        result: Iterable[bytes] = moto_app(environ, start_response)
        return result

    run_simple(host, port, app, threaded=True)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
