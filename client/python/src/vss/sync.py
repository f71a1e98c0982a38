"""A synchronous wrapper of `vss.Client`, for code without an event loop.

The async client runs on an event loop in a thread of its own; every
method here hands the call to that loop and waits for its result, so the
semantics (routing, failover, batching of concurrent acquires from
several threads, deduplication) are the async client's. `close` (or the
`with` block) stops the loop and joins the thread.

    with vss.sync.Client(["127.0.0.1:7700", "127.0.0.1:7710"]) as client:
        print(client.acquire(0).granted)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from . import client as aclient
from .replies import Grant, Published
from .security import Security
from .subscription import Delivery as AsyncDelivery
from .subscription import Subscription as AsyncSubscription
from .v1 import cluster_pb2
from .v1 import vss_pb2 as pb
from .watches import ServiceWatch as AsyncServiceWatch
from .watches import TickWatch as AsyncTickWatch

T = TypeVar("T")


class _Loop:
    """An event loop running in a daemon thread until `stop`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="vss-client-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("vss.sync called from its own loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if not self.loop.is_running():
            return

        async def finish() -> None:
            # Anything still scheduled (late callbacks of closed channels).
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(finish(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Delivery:
    """One event received on a subscription; `ack` confirms it."""

    def __init__(self, inner: AsyncDelivery, loop: _Loop) -> None:
        self._inner = inner
        self._loop = loop
        self.slot = inner.slot
        self.message_id = inner.message_id
        self.payload = inner.payload
        self.publisher = inner.publisher
        self.endpoint = inner.endpoint

    def ack(self) -> None:
        """Confirms the delivery to the instance that sent it."""
        self._loop.run(self._inner.ack())

    def __repr__(self) -> str:
        return (
            f"Delivery(slot={self.slot}, message_id={self.message_id}, "
            f"payload={self.payload!r}, publisher={self.publisher!r})"
        )


class Subscription:
    """See `vss.Subscription`; iterate it, or call `next(timeout)`."""

    def __init__(self, inner: AsyncSubscription, loop: _Loop) -> None:
        self._inner = inner
        self._loop = loop

    def next(self, timeout: float | None = None) -> Delivery | None:
        d = self._loop.run(self._inner.next(timeout))
        return None if d is None else Delivery(d, self._loop)

    def __iter__(self) -> Iterator[Delivery]:
        while (d := self.next()) is not None:
            yield d

    def close(self) -> None:
        self._loop.run(self._inner.close())

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class TickWatch:
    """See `vss.TickWatch`."""

    def __init__(self, inner: AsyncTickWatch, loop: _Loop) -> None:
        self._inner = inner
        self._loop = loop

    def next(self, timeout: float | None = None) -> pb.Tick | None:
        return self._loop.run(self._inner.next(timeout))

    def close(self) -> None:
        self._loop.run(self._inner.close())


class ServiceWatch:
    """See `vss.ServiceWatch`."""

    def __init__(self, inner: AsyncServiceWatch, loop: _Loop) -> None:
        self._inner = inner
        self._loop = loop

    def next(self, timeout: float | None = None) -> pb.ServiceChange | None:
        return self._loop.run(self._inner.next(timeout))

    def close(self) -> None:
        self._loop.run(self._inner.close())


class Client:
    """The synchronous client: the arguments and verbs of `vss.Client`.
    Safe to use from several threads; concurrent acquires from them are
    coalesced into batches like concurrent tasks."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = aclient.DEFAULT_CALL_TIMEOUT,
        security: Security | None = None,
        coalescing: bool = True,
    ) -> None:
        # Validated here, in the caller's thread, before a loop exists.
        inner = aclient.Client(
            endpoints, timeout=timeout, security=security, coalescing=coalescing
        )
        self._loop = _Loop()
        self._inner = inner
        self._closed = False

    @property
    def timeout(self) -> float:
        return self._inner.timeout

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run(coro)

    def acquire(
        self,
        slot: int,
        *,
        key: str | None = None,
        tokens: int | None = None,
        timeout: float | None = None,
    ) -> Grant:
        return self._run(self._inner.acquire(slot, key=key, tokens=tokens, timeout=timeout))

    def call(self, slot: int, op: str, payload: bytes = b"", *, timeout: float | None = None) -> bytes:
        return self._run(self._inner.call(slot, op, payload, timeout=timeout))

    def publish(
        self, slot: int, message: bytes | str, client_id: str = "", *, timeout: float | None = None
    ) -> Published:
        return self._run(self._inner.publish(slot, message, client_id, timeout=timeout))

    def register(self, slot: int, client_id: str, *, timeout: float | None = None) -> None:
        self._run(self._inner.register(slot, client_id, timeout=timeout))

    def deregister(self, slot: int, client_id: str, *, timeout: float | None = None) -> None:
        self._run(self._inner.deregister(slot, client_id, timeout=timeout))

    def subscribe(self, client_id: str, slots: Sequence[int] = ()) -> Subscription:
        return Subscription(self._run(self._inner.subscribe(client_id, slots)), self._loop)

    def increment(self, slot: int, amount: int = 1, *, timeout: float | None = None) -> pb.CounterValue:
        return self._run(self._inner.increment(slot, amount, timeout=timeout))

    def decrement(self, slot: int, amount: int = 1, *, timeout: float | None = None) -> pb.CounterValue:
        return self._run(self._inner.decrement(slot, amount, timeout=timeout))

    def read_counter(self, slot: int, *, timeout: float | None = None) -> pb.CounterValue:
        return self._run(self._inner.read_counter(slot, timeout=timeout))

    def set(
        self, slot: int, key: str, value: bytes | str, *, timeout: float | None = None
    ) -> pb.WriteReply:
        return self._run(self._inner.set(slot, key, value, timeout=timeout))

    def get(
        self,
        slot: int,
        key: str,
        *,
        at_least: pb.Version | None = None,
        timeout: float | None = None,
    ) -> pb.GetReply:
        return self._run(self._inner.get(slot, key, at_least=at_least, timeout=timeout))

    def delete(self, slot: int, key: str, *, timeout: float | None = None) -> pb.WriteReply:
        return self._run(self._inner.delete(slot, key, timeout=timeout))

    def list_keys(
        self, slot: int, prefix: str = "", limit: int = 0, *, timeout: float | None = None
    ) -> pb.ListKeysReply:
        return self._run(self._inner.list_keys(slot, prefix, limit, timeout=timeout))

    def announce(
        self,
        slot: int,
        app: str,
        address: str,
        ttl: float | None = None,
        *,
        timeout: float | None = None,
    ) -> pb.AnnounceReply:
        return self._run(self._inner.announce(slot, app, address, ttl, timeout=timeout))

    def withdraw(
        self, slot: int, app: str, address: str, *, timeout: float | None = None
    ) -> pb.WithdrawReply:
        return self._run(self._inner.withdraw(slot, app, address, timeout=timeout))

    def list_services(
        self, slot: int, app: str = "", *, timeout: float | None = None
    ) -> list[pb.Service]:
        return self._run(self._inner.list_services(slot, app, timeout=timeout))

    def watch_services(self, slot: int, app: str = "") -> ServiceWatch:
        return ServiceWatch(self._run(self._inner.watch_services(slot, app)), self._loop)

    def watch_ticks(self, slot: int) -> TickWatch:
        return TickWatch(self._run(self._inner.watch_ticks(slot)), self._loop)

    def status(self, *, timeout: float | None = None) -> list[tuple[str, pb.StatusReply | Exception]]:
        return self._run(self._inner.status(timeout=timeout))

    def routing(self) -> cluster_pb2.RoutingTable | None:
        async def table() -> cluster_pb2.RoutingTable | None:
            return self._inner.routing()

        return self._run(table())

    def wait_for_routing(self, timeout: float) -> cluster_pb2.RoutingTable | None:
        return self._run(self._inner.wait_for_routing(timeout))

    def close(self) -> None:
        """Closes the async client, stops the loop and joins its thread."""
        if self._closed:
            return
        self._closed = True
        self._run(self._inner.close())
        self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
