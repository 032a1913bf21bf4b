"""Dynamic batching of one deployment in one worker: concurrent requests, one onnxruntime call.

A request joins the deployment's queue; the queue is flushed on the event loop's next turn, so
every request that arrived in the same turn shares the call and a lone request never waits. The
flush waits longer (up to ``max_delay_ms`` after the first queued request) only while other requests
are still being received by this worker (``Arrivals``), which is when waiting can fill the batch.
The call runs on the event loop itself: for the small models served here a thread hand-off costs
more than the call. A request whose deadline passed while queued is answered 504 without running.
A deployment's inference capture is handed each call's arrays (one record per call, not per request).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlops.serving.capture import DeploymentCapture
from mlops.serving.model import Model, ModelFailure
from mlops.serving.tensors import BadRequest

_RECHECK_S = 0.0002  # how often a waiting flush looks again at requests being received


class Arrivals:
    """How many requests this worker is still receiving (bodies not complete yet)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class _Item:
    __slots__ = ("inputs", "rows", "future", "deadline", "queued")

    def __init__(self, inputs: dict[str, np.ndarray], rows: int, future: asyncio.Future[Any], deadline: float,
                 queued: float):
        self.inputs, self.rows, self.future, self.deadline, self.queued = inputs, rows, future, deadline, queued


class Batcher:
    """The queue of one deployment; ``observe(rows)`` is told the size of every call made."""

    def __init__(self, model: Model, max_rows: int, max_delay_ms: float, arrivals: Arrivals,
                 observe: Callable[[int], None], capture: DeploymentCapture | None = None):
        self.model = model
        self.capture = capture  # told every call's inputs and outputs (references: see mlops.serving.capture)
        self.max_rows = max_rows if model.batchable else 1
        self.max_delay = max_delay_ms / 1000.0
        self.arrivals = arrivals
        self.observe = observe
        self.max_queue = max(1024, 8 * self.max_rows)
        self.queue: list[_Item] = []
        self.rows = 0
        self.scheduled = False

    def submit(self, inputs: dict[str, np.ndarray], rows: int, deadline: float) -> asyncio.Future[Any]:
        """Queue one request's inputs; the future gets its outputs (or ModelFailure / BadRequest)."""
        if len(self.queue) >= self.max_queue:
            raise BadRequest(f"the deployment is overloaded ({len(self.queue)} requests queued): try again", 503)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.append(_Item(inputs, rows, future, deadline, time.monotonic()))
        self.rows += rows
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self.scheduled = False
        if not self.queue:
            return
        now = time.monotonic()
        if self.rows < self.max_rows and self.arrivals.n > 0 and now < self.queue[0].queued + self.max_delay:
            self.scheduled = True
            asyncio.get_running_loop().call_later(_RECHECK_S, self._flush)
            return
        queue, self.queue, self.rows = self.queue, [], 0
        batch: list[_Item] = []
        rows = 0
        for item in queue:
            if batch and rows + item.rows > self.max_rows:
                self._run(batch, rows, now)
                batch, rows = [], 0
            batch.append(item)
            rows += item.rows
        self._run(batch, rows, now)

    def _run(self, batch: list[_Item], rows: int, now: float) -> None:
        live = []
        for item in batch:
            if item.future.done():  # the client went away
                continue
            if item.deadline < now:
                item.future.set_exception(BadRequest("the request timed out waiting for the model", 504))
                continue
            live.append(item)
        if not live:
            return
        if len(live) == 1:
            inputs = live[0].inputs
            rows = live[0].rows
        else:
            try:
                inputs = {name: np.concatenate([it.inputs[name] for it in live]) for name in live[0].inputs}
            except ValueError:  # other dimensions differ (a scoring module's doing): one call each
                for item in live:
                    self._run([item], item.rows, now)
                return
            rows = sum(it.rows for it in live)
        try:
            outputs = self.model.run(inputs)
        except ModelFailure as e:
            for item in live:
                item.future.set_exception(e)
            return
        except Exception as e:  # a bug of ours: the requests must get an answer all the same
            failure = ModelFailure(f"internal error: {type(e).__name__}")
            for item in live:
                item.future.set_exception(failure)
            return
        self.observe(rows)
        if self.capture is not None:
            self.capture.record_call(inputs, outputs, [it.rows for it in live] if len(live) > 1 else rows)
        if len(live) == 1:
            live[0].future.set_result(outputs)
            return
        start = 0
        for item in live:
            end = start + item.rows
            item.future.set_result({name: value[start:end] for name, value in outputs.items()})
            start = end
