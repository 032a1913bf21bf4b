"""Shared pytest configuration: fixtures every test area can use."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.dockerd", "tests.s3server"]


@pytest.fixture(scope="session", autouse=True)
def _no_server_outlives_the_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every scoring server a test started under the session's temporary directory is gone at the end: the
    fixtures stop their own (``tests.servers.stop_servers``); whatever one missed is killed here, and said.
    A SIGTERM (``timeout``, a CI job cancelled) ends the session like Ctrl-C, so the teardowns still run."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
    from tests.servers import kill, leftover_servers

    left = leftover_servers(tmp_path_factory.getbasetemp())
    kill(left)
    if left:  # said where it shows even at the very end of the session
        sys.__stderr__.write(f"\nwarning: killed {len(left)} scoring server(s) a test left running: {left}\n")
