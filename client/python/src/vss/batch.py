"""Coalescing of concurrent acquires into `AcquireBatch` calls.

Each endpoint has a lane: a task that takes the acquires waiting for
that instance and sends them as one call. A lane keeps at most
`BATCHES_IN_FLIGHT` calls outstanding; acquires that arrive while they
are all out wait for the first to come back and leave together. So a
lone acquire leaves at once, and under load a batch grows to what
arrived during one round trip (at most `MAX_BATCH`): no timer, and no
acquire waits longer than one batch's round trip before it is sent. The
same design as the Rust client's `batch.rs`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Union

import grpc
from grpc import aio

from ._rpc import VssCalls
from .errors import ConfigurationError, status_code
from .replies import Grant
from .v1 import vss_pb2 as pb

# Most acquires in one call (the server takes up to 1,000).
MAX_BATCH = 256
# Calls a lane keeps outstanding at once.
BATCHES_IN_FLIGHT = 2
# Acquires a lane holds waiting; past it, acquires go unbatched.
LANE_DEPTH = 4096

# What one acquire of a batch got: the reply, or the code and message it
# failed with (the server's `AcquireFailure`, or the whole call's status).
Outcome = Union[Grant, tuple[grpc.StatusCode, str]]

_Pending = tuple[int, str, Union[int, None], "asyncio.Future[Outcome]"]


class AcquireLane:
    """Acquires bound for one instance, coalesced into `AcquireBatch`
    calls by a task that stops with `close`."""

    def __init__(
        self,
        calls: VssCalls,
        timeout: float,
        metadata: Sequence[tuple[str, str]],
    ) -> None:
        self._calls = calls
        self._timeout = timeout
        self._metadata = tuple(metadata)
        self._pending: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="vss-acquire-lane")

    def acquire(
        self, slot: int, key: str, tokens: int | None
    ) -> asyncio.Future[Outcome] | None:
        """Queues an acquire for the next batch; None when the lane is
        full (send it alone)."""
        if len(self._pending) >= LANE_DEPTH or self._task.done():
            return None
        answer: asyncio.Future[Outcome] = self._loop.create_future()
        self._pending.append((slot, key, tokens, answer))
        self._wake.set()
        return answer

    async def _run(self) -> None:
        permits = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        while True:
            self._wake.clear()
            while self._pending:
                await permits.acquire()
                batch: list[_Pending] = []
                while self._pending and len(batch) < MAX_BATCH:
                    batch.append(self._pending.popleft())
                task = self._loop.create_task(self._send(batch, permits))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
            await self._wake.wait()

    async def _send(self, batch: list[_Pending], permits: asyncio.Semaphore) -> None:
        try:
            request = pb.AcquireBatchRequest()
            add = request.requests.add
            for slot, key, tokens, _ in batch:
                if tokens is None:
                    add(slot=slot, key=key)
                else:
                    add(slot=slot, key=key, tokens=tokens)
            try:
                reply = await self._calls.acquire_batch(
                    request, timeout=self._timeout, metadata=self._metadata
                )
            except asyncio.CancelledError:
                # The lane is closing: its acquires fail, saying why.
                _fail_closed(answer for *_, answer in batch)
                raise
            except aio.AioRpcError as e:
                failed: Outcome = (e.code(), e.details() or "")
                for *_, answer in batch:
                    if not answer.done():
                        answer.set_result(failed)
                return
            outcomes = reply.outcomes
            for i, (*_, answer) in enumerate(batch):
                if answer.done():
                    continue
                if i >= len(outcomes):
                    answer.set_result(
                        (
                            grpc.StatusCode.INTERNAL,
                            f"the instance answered fewer than {len(batch)} acquires",
                        )
                    )
                    continue
                outcome = outcomes[i]
                if outcome.HasField("reply"):
                    r = outcome.reply
                    answer.set_result(Grant(r.granted, r.remaining, r.reset_ms))
                else:
                    f = outcome.failure
                    answer.set_result((status_code(f.code), f.message))
        finally:
            permits.release()

    async def close(self) -> None:
        """Stops the lane; acquires still waiting fail with a
        `ConfigurationError` saying the client closed."""
        tasks = [self._task, *self._sending]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        _fail_closed(answer for *_, answer in self._pending)
        self._pending.clear()


def _fail_closed(answers: Iterable[asyncio.Future[Outcome]]) -> None:
    for answer in answers:
        if not answer.done():
            answer.set_exception(ConfigurationError("client", "closed"))


class Batcher:
    """The lanes of one client, one per endpoint, started on first use."""

    def __init__(self) -> None:
        self._lanes: list[AcquireLane] | None = None

    def submit(
        self,
        lane: int,
        slot: int,
        key: str,
        tokens: int | None,
        start: Callable[[], list[AcquireLane]],
    ) -> asyncio.Future[Outcome] | None:
        """Queues an acquire on lane `lane` (see `AcquireLane.acquire`)."""
        if self._lanes is None:
            self._lanes = start()
        if not 0 <= lane < len(self._lanes):
            return None
        return self._lanes[lane].acquire(slot, key, tokens)

    async def close(self) -> None:
        lanes, self._lanes = self._lanes or [], None
        await asyncio.gather(*(lane.close() for lane in lanes))
