"""Shared pytest configuration: fixtures every test area can use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.dockerd", "tests.s3server"]


@pytest.fixture(scope="session", autouse=True)
def _no_server_outlives_the_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every scoring server a test started under the session's temporary directory is gone at the end: the
    fixtures stop their own (``tests.servers.stop_servers``); whatever one missed is killed here, and said."""
    yield
    from tests.servers import kill, leftover_servers

    left = leftover_servers(tmp_path_factory.getbasetemp())
    kill(left)
    if left:
        import warnings

        warnings.warn(f"killed {len(left)} scoring server(s) a test left running: {left}", stacklevel=1)
