"""Two real processes racing each other, for tests of atomic creation."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any


def race(target: Callable[..., None], args_for: Callable[[str], tuple[Any, ...]], timeout: float = 120) -> dict[str, Any]:
    """Run ``target(*args_for(me), barrier, results)`` in processes "a" and "b" (forked, released
    together by the barrier); each puts ``(me, value)`` on ``results``. Returns {me: value}."""
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(me), barrier, results)) for me in "ab"]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=timeout) for _ in procs)
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0, f"racer exited with {p.exitcode}"
    return got
