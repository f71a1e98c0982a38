"""A client's event streams, one per instance, merged into one
`Subscription` that hands each message out once.

Every instance delivers to the clients connected to it, so a client
connected to three instances may get a message three times. Each copy is
acknowledged to the instance that sent it (that instance counts it
delivered only then); the application sees the first copy of each
(slot, message id) only. A stream that breaks (the instance died) is
reopened every `RESUBSCRIBE_AFTER` until the instance is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from grpc import aio

from ._rpc import VssCalls
from .dedupe import Seen
from .errors import UnreachableError, is_instance_failure, refusal
from .v1 import vss_pb2 as pb

log = logging.getLogger("vss.subscription")

# Message ids a subscription remembers to drop repeats.
DEDUPE_WINDOW = 16_384
# Wait before reopening a stream that broke.
RESUBSCRIBE_AFTER = 0.2
# Longest `Subscription.close` waits for the instances to see the end.
CLOSE_TIMEOUT = 2.0
# Deliveries buffered between the streams and the application.
EVENTS_BUFFER = 1_024


class Outbox:
    """What goes up one event stream: the Hello, then acks. Unbounded on
    purpose: it holds only acks of events received on that stream, and an
    instance keeps at most 1,024 deliveries per client awaiting an ack."""

    def __init__(self, hello: pb.Hello) -> None:
        self._queue: asyncio.Queue[pb.ClientMessage | None] = asyncio.Queue()
        self._queue.put_nowait(pb.ClientMessage(hello=hello))
        self.closed = False

    def ack(self, message_id: int) -> None:
        if self.closed:
            raise UnreachableError(["event stream closed"])
        self._queue.put_nowait(pb.ClientMessage(ack=pb.Ack(message_id=message_id)))

    def finish(self) -> None:
        """Ends the request stream after what is queued: the instance then
        closes its side."""
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    # An async iterator rather than an async generator: gRPC cancels the
    # task reading it when the call ends, and an async generator suspended
    # in `get` would then be closed while running.
    def __aiter__(self) -> Outbox:
        return self

    async def __anext__(self) -> pb.ClientMessage:
        msg = await self._queue.get()
        if msg is None:
            raise StopAsyncIteration
        return msg


@dataclass
class Delivery:
    """One event received on a subscription. Acknowledge it with `ack`;
    until then the publisher counts it as pending, and after the slot's
    timeout as failed."""

    slot: int
    message_id: int
    payload: bytes
    # Client id of the publisher ("" if anonymous).
    publisher: str
    # The instance that sent this copy.
    endpoint: str
    _outbox: Outbox = field(repr=False)

    async def ack(self) -> None:
        """Confirms the delivery to the instance that sent it."""
        self._outbox.ack(self.message_id)


class Subscription:
    """This client's event streams, merged. Iterate it (`async for`) or
    call `next`; `close` ends the streams cleanly, after the
    acknowledgements already given have been sent."""

    def __init__(self) -> None:
        self._events: asyncio.Queue[Delivery] = asyncio.Queue(EVENTS_BUFFER)
        self._tasks: list[asyncio.Task[None]] = []
        self._outboxes: dict[int, Outbox] = {}
        self._closing = asyncio.Event()
        self._seen = Seen(DEDUPE_WINDOW)
        self._ended = 0
        self._closed = False

    async def next(self, timeout: float | None = None) -> Delivery | None:
        """The next message not seen before; None once every stream has
        ended for good, or after `timeout` seconds without one. A message
        that already came through another instance is acknowledged to the
        instance that sent it and not handed out twice."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._events.empty() and self._ended == len(self._tasks):
                return None
            try:
                if deadline is None:
                    delivery = await self._events.get()
                else:
                    delivery = await asyncio.wait_for(
                        self._events.get(), max(deadline - loop.time(), 0)
                    )
            except asyncio.TimeoutError:
                return None
            if delivery is _END:
                return None
            if self._seen.first(delivery.slot, delivery.message_id):
                return delivery
            try:
                await delivery.ack()
            except UnreachableError:
                pass

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Delivery:
        delivery = await self.next()
        if delivery is None:
            raise StopAsyncIteration
        return delivery

    async def close(self) -> None:
        """Ends every stream cleanly: pending acknowledgements are sent,
        then each instance closes its side. Undelivered events are dropped
        unacknowledged. No task is left running afterwards."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        for outbox in self._outboxes.values():
            outbox.finish()
        while not self._events.empty():
            self._events.get_nowait()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT)
            for t in late:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # --- the streams -----------------------------------------------------

    def _start(
        self,
        position: int,
        endpoint: str,
        calls: VssCalls,
        hello: pb.Hello,
        metadata: Sequence[tuple[str, str]],
        first: asyncio.Future[tuple[grpc.StatusCode, str] | None],
    ) -> None:
        task = asyncio.get_running_loop().create_task(
            self._follow(position, endpoint, calls, hello, tuple(metadata), first),
            name=f"vss-events-{endpoint}",
        )
        self._tasks.append(task)

    async def _follow(
        self,
        position: int,
        endpoint: str,
        calls: VssCalls,
        hello: pb.Hello,
        metadata: tuple[tuple[str, str], ...],
        first: asyncio.Future[tuple[grpc.StatusCode, str] | None],
    ) -> None:
        """Keeps this client's stream open on one instance: opens it, reads
        it, reopens it after it broke, until the subscription closes or the
        instance ends the stream itself (it dropped this client, or refused
        the request). The first opening's outcome goes to `first`."""
        try:
            while not self._closing.is_set():
                outbox = Outbox(hello)
                self._outboxes[position] = outbox
                call = calls.events(outbox, metadata=metadata)
                try:
                    refused = await refusal(call)
                    if refused is not None:
                        if not first.done():
                            first.set_result(refused)
                        if not is_instance_failure(refused[0]):
                            log.debug("%s refused the event stream: %s", endpoint, refused)
                            return
                    else:
                        if not first.done():
                            first.set_result(None)
                        log.debug("%s: event stream open", endpoint)
                        if await self._read(call, endpoint, outbox):
                            log.debug("%s ended the event stream", endpoint)
                            return
                        log.debug("%s: event stream broke; reopening", endpoint)
                finally:
                    outbox.closed = True
                    call.cancel()
                try:
                    await asyncio.wait_for(self._closing.wait(), RESUBSCRIBE_AFTER)
                except asyncio.TimeoutError:
                    pass
        finally:
            if not first.done():
                first.set_result((grpc.StatusCode.CANCELLED, "stream task ended"))
            self._ended += 1
            # Wake a reader waiting on an empty queue, so it sees the end.
            if self._ended == len(self._tasks) and self._events.empty():
                try:
                    self._events.put_nowait(_END)
                except asyncio.QueueFull:
                    pass

    async def _read(
        self,
        call: aio.StreamStreamCall[pb.ClientMessage, pb.Event],
        endpoint: str,
        outbox: Outbox,
    ) -> bool:
        """Forwards one stream's events until it ends; True when the
        instance ended it (or the subscription closes), False when it
        broke."""
        try:
            async for e in call:
                if outbox.closed:
                    continue
                await self._events.put(
                    Delivery(e.slot, e.message_id, e.payload, e.publisher, endpoint, outbox)
                )
        except aio.AioRpcError as e:
            # A refusal now (the instance dropped this client, or its token
            # was revoked) ends the stream for good, as a clean end does;
            # an instance failure is a break, reopened.
            return self._closing.is_set() or not is_instance_failure(e.code())
        return True


# Put on the queue when the last stream ends; its slot -1 is never a real
# slot, and `next` returns None for it.
_END = Delivery(-1, 0, b"", "", "", Outbox(pb.Hello()))
