"""The asyncio client of one VSS cluster.

A `Client` is given every instance of a cluster. It watches the routing
table every instance publishes and sends each call to the slot's owner
first (a keyed acquire: the owner of its key's partition), then its
standby, then the others: an instance that is down or times out is
skipped at once and the next one is tried, each within the per-call
timeout. Errors the server gives for the request itself (bad
slot, wrong type, a field over its limit) are raised as they are, since
another instance would give the same answer.

A publish carries a message id chosen here, so a publish retried on
another instance is the same message: the owner carries it out once, and
subscribers see one delivery per id. A `Subscription` holds an event
stream on every instance (reopened when an instance comes back), hands
each message to the application once and acknowledges every copy to the
instance that sent it.

The semantics, constants and names are those of the Rust client
(`client/src/lib.rs`); `vss.sync.Client` wraps this one for code without
an event loop.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc import aio

from ._rpc import VssCalls
from .batch import AcquireLane, Batcher
from .replies import Grant, Published
from .errors import (
    ConfigurationError,
    UnreachableError,
    is_instance_failure,
    server_error,
)
from .routing import Routing, watch
from .security import Security
from .subscription import Subscription
from .v1 import cluster_pb2
from .v1 import vss_pb2 as pb
from .watches import ServiceWatch, Streams, TickWatch, first_openings

T = TypeVar("T")

# Longest a publish may wait for deliveries: the largest slot `timeout`.
MAX_PUBLISH_WAIT = 60.0
# Default time a single call may take on one instance, in seconds.
DEFAULT_CALL_TIMEOUT = 2.0
# Rounds over all instances before a call fails.
PASSES = 2
# Pause between two rounds, in seconds.
RETRY_PAUSE = 0.1

# Reconnect quickly to an instance that comes back: gRPC's default backoff
# grows to two minutes, which would leave a restarted instance unused (and
# its event streams closed) for that long.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
)

_random = random.SystemRandom()


def new_id() -> int:
    """A message or request id: random, never 0 (which means "none")."""
    return _random.randrange(1, 1 << 64)


def _cancelling() -> bool:
    """Whether the current task is being cancelled (always assumed on
    Python 3.10, which cannot tell)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return task is None or cancelling is None or bool(cancelling())


def target_of(endpoint: str) -> str:
    """The gRPC target of `host:port` or `http(s)://host:port`; a
    `ConfigurationError` names an endpoint that is neither."""
    e = endpoint.strip()
    for scheme in ("http://", "https://"):
        if e.startswith(scheme):
            e = e[len(scheme) :]
    e = e.rstrip("/")
    host, sep, port = e.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"endpoint `{endpoint}`", "expected host:port (port 1-65535)")
    return e


@dataclass
class _Instance:
    endpoint: str
    channel: aio.Channel
    calls: VssCalls


class Client:
    """A client of one VSS cluster. Use it inside one event loop; `close`
    it (or use `async with`) to stop its tasks and connections.

    `endpoints`: every instance, as `host:port`. `timeout`: the longest a
    call may take on one instance, in seconds (each verb also takes a
    `timeout=` of its own). `security`: TLS and token. `coalescing`:
    whether concurrent acquires share `AcquireBatch` calls (the default).
    Connections are made on first use, so this succeeds even if some
    instances are down.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = DEFAULT_CALL_TIMEOUT,
        security: Security | None = None,
        coalescing: bool = True,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise ConfigurationError("endpoints", "no endpoints given")
        if not timeout > 0:
            raise ConfigurationError("timeout", f"must be above 0 seconds, got {timeout}")
        self._endpoints = [e.strip() for e in endpoints]
        self._targets = [target_of(e) for e in self._endpoints]
        self._security = security or Security()
        # Checked now, so a bad setting fails here and not on first use.
        self._metadata = self._security.metadata()
        self._credentials = self._security.credentials()
        self.timeout = timeout
        self._instances: list[_Instance] | None = None
        self._routing = Routing(len(self._endpoints))
        self._watchers: list[asyncio.Task[None]] = []
        self._acquiring = 0
        self._batcher = Batcher() if coalescing else None
        # Closed with the client; dropped from here when the caller drops them.
        self._open: weakref.WeakSet[Subscription | TickWatch | ServiceWatch] = weakref.WeakSet()
        self._closed = False

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    # --- connections and routing ----------------------------------------

    def _connected(self) -> list[_Instance]:
        """The instances, their channels made (lazily, in the running loop)
        and the routing watchers started."""
        if self._closed:
            raise ConfigurationError("client", "closed")
        if self._instances is not None:
            return self._instances
        instances = []
        for endpoint, target in zip(self._endpoints, self._targets):
            if self._credentials is None:
                channel = aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            else:
                channel = aio.secure_channel(target, self._credentials, options=CHANNEL_OPTIONS)
            instances.append(_Instance(endpoint, channel, VssCalls(channel)))
        self._instances = instances
        loop = asyncio.get_running_loop()
        self._watchers = [
            loop.create_task(
                watch(i, inst.calls, self._routing, self._metadata),
                name=f"vss-routing-{inst.endpoint}",
            )
            for i, inst in enumerate(instances)
        ]
        return instances

    def routing(self) -> cluster_pb2.RoutingTable | None:
        """The newest routing table any instance sent, once one arrived.
        The first call (inside a running loop) starts watching."""
        self._connected()
        return self._routing.table

    async def wait_for_routing(self, timeout: float) -> cluster_pb2.RoutingTable | None:
        """Waits up to `timeout` seconds for a routing table that routes
        at least one slot, with every endpoint's id known; returns the
        table held then."""
        self._connected()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            t = self._routing.table
            if t is not None and t.routes and all(self._routing.ids):
                return t
            await asyncio.sleep(0.02)
        return self._routing.table

    async def _first_answer(
        self,
        slot: int | None,
        call: Callable[[VssCalls, float], Awaitable[T]],
        *,
        key: str = "",
        timeout: float | None = None,
        skip: int | None = None,
    ) -> T:
        """Runs `call` on each instance in turn until one answers: the
        slot's owner first, when known (in a slot split into partitions,
        the owner of `key`'s partition); an instance failure moves on to
        the next instance, a request error is raised at once."""
        instances = self._connected()
        limit = self.timeout if timeout is None else timeout
        failures: list[str] = []
        for attempt in range(PASSES):
            if attempt > 0:
                # Every instance failed once: give a restarting instance or
                # a new routing table a moment before the last pass.
                await asyncio.sleep(RETRY_PAUSE)
            for i in self._routing.order(slot, len(instances), key):
                if attempt == 0 and skip == i:
                    continue
                inst = instances[i]
                if self._closed:
                    raise ConfigurationError("client", "closed")
                try:
                    return await call(inst.calls, limit)
                except asyncio.CancelledError:
                    # Closing the client cancels its calls in flight: say so,
                    # unless the caller's own task is being cancelled.
                    if self._closed and not _cancelling():
                        raise ConfigurationError("client", "closed") from None
                    raise
                except aio.AioRpcError as e:
                    code = e.code()
                    if not is_instance_failure(code):
                        raise server_error(
                            code, e.details() or "", endpoint=inst.endpoint, slot=slot
                        ) from None
                    # The second pass often fails the same way: say it once.
                    failure = f"{inst.endpoint}: {code.name} {e.details() or ''}".rstrip()
                    if failure not in failures:
                        failures.append(failure)
        raise UnreachableError(failures, slot=slot)

    def _start_lanes(self) -> list[AcquireLane]:
        return [AcquireLane(i.calls, self.timeout, self._metadata) for i in self._connected()]

    # --- limiters ---------------------------------------------------------

    async def acquire(
        self,
        slot: int,
        *,
        key: str | None = None,
        tokens: int | None = None,
        timeout: float | None = None,
    ) -> Grant:
        """Takes tokens from a limiter slot. `key`: a per-caller bucket
        (None: the slot's single bucket); `tokens`: how many (None: the
        slot's `tokensPerReq`). It goes to the owner of `key`'s partition
        first (the slot's owner when its keys are not split). An acquire
        made while another of this client is in flight joins the next
        `AcquireBatch` to that owner (unless it gives a `timeout` of its
        own: it is sent alone)."""
        others = self._acquiring
        self._acquiring += 1
        try:
            key = key or ""
            failed_at: int | None = None
            if self._batcher is not None and others > 0 and timeout is None:
                self._connected()
                owner = self._routing.first(slot, key)
                answer = self._batcher.submit(owner, slot, key, tokens, self._start_lanes)
                if answer is not None:
                    outcome = await answer
                    if isinstance(outcome, Grant):
                        return outcome
                    code, message = outcome
                    if not is_instance_failure(code):
                        raise server_error(
                            code,
                            message,
                            endpoint=self._endpoints[owner],
                            slot=slot,
                        )
                    # The instance could not answer: the others are tried
                    # one by one, as for an acquire sent alone.
                    failed_at = owner
            req = (
                pb.AcquireRequest(slot=slot, key=key)
                if tokens is None
                else pb.AcquireRequest(slot=slot, key=key, tokens=tokens)
            )
            md = self._metadata
            reply = await self._first_answer(
                slot,
                lambda c, t: c.acquire(req, timeout=t, metadata=md),
                key=key,
                timeout=timeout,
                skip=failed_at,
            )
            return Grant(reply.granted, reply.remaining, reply.reset_ms)
        finally:
            self._acquiring -= 1

    async def call(
        self, slot: int, op: str, payload: bytes = b"", *, timeout: float | None = None
    ) -> bytes:
        """Calls operation `op` of a custom slot type."""
        req = pb.CallRequest(slot=slot, op=op, payload=payload)
        md = self._metadata
        reply = await self._first_answer(
            slot, lambda c, t: c.call(req, timeout=t, metadata=md), timeout=timeout
        )
        return reply.payload

    # --- signals ----------------------------------------------------------

    async def publish(
        self,
        slot: int,
        message: bytes | str,
        client_id: str = "",
        *,
        timeout: float | None = None,
    ) -> Published:
        """Publishes `message` (at most 36 bytes) on a signal slot and waits
        for the deliveries (up to the slot's own timeout). `client_id`
        identifies the publisher (a broadcast skips it); "" stays
        anonymous. The message id is chosen here and kept across retries,
        so a retry on another instance is not a second message."""
        if isinstance(message, str):
            message = message.encode()
        req = pb.PublishRequest(
            slot=slot, message=message, client_id=client_id, message_id=new_id()
        )
        md = self._metadata
        # A publish lasts up to the slot's timeout (at most 60 s) by design.
        limit = MAX_PUBLISH_WAIT + (self.timeout if timeout is None else timeout)
        reply = await self._first_answer(
            slot, lambda c, t: c.publish(req, timeout=t, metadata=md), timeout=limit
        )
        return Published(
            reply.message_id, reply.delivered, reply.failed, reply.taken_by or None
        )

    async def register(self, slot: int, client_id: str, *, timeout: float | None = None) -> None:
        """Joins a multicast or random slot."""
        req = pb.MembershipRequest(slot=slot, client_id=client_id)
        md = self._metadata
        await self._first_answer(
            slot, lambda c, t: c.register(req, timeout=t, metadata=md), timeout=timeout
        )

    async def deregister(
        self, slot: int, client_id: str, *, timeout: float | None = None
    ) -> None:
        """Leaves a multicast or random slot."""
        req = pb.MembershipRequest(slot=slot, client_id=client_id)
        md = self._metadata
        await self._first_answer(
            slot, lambda c, t: c.deregister(req, timeout=t, metadata=md), timeout=timeout
        )

    async def subscribe(self, client_id: str, slots: Sequence[int] = ()) -> Subscription:
        """Opens this client's event stream on every instance. `slots`
        limits which broadcast slots it hears (empty: all). Returns once
        every instance has answered (or the call timeout passed), if at
        least one accepted the stream; streams to instances that are down,
        or that go down later, are reopened when they come back."""
        instances = self._connected()
        sub = Subscription()
        hello = pb.Hello(client_id=client_id, slots=list(slots))
        loop = asyncio.get_running_loop()
        openings = []
        for i, inst in enumerate(instances):
            first: asyncio.Future[tuple[grpc.StatusCode, str] | None] = loop.create_future()
            sub._start(i, inst.endpoint, inst.calls, hello, self._metadata, first)
            openings.append((inst.endpoint, first))
        try:
            await first_openings(openings, None, self.timeout)
        except BaseException:
            await sub.close()
            raise
        self._open.add(sub)
        return sub

    # --- data slots -------------------------------------------------------

    async def increment(
        self, slot: int, amount: int = 1, *, timeout: float | None = None
    ) -> pb.CounterValue:
        """Adds `amount` (at least 1) to a counter slot. The request id is
        kept across retries, so a retry elsewhere is counted once."""
        return await self._change(slot, amount, True, timeout)

    async def decrement(
        self, slot: int, amount: int = 1, *, timeout: float | None = None
    ) -> pb.CounterValue:
        """Subtracts `amount` (at least 1) from a counter slot; refused on a
        grow-only counter."""
        return await self._change(slot, amount, False, timeout)

    async def _change(
        self, slot: int, amount: int, up: bool, timeout: float | None
    ) -> pb.CounterValue:
        req = pb.CounterChange(slot=slot, amount=amount, request_id=new_id())
        md = self._metadata
        if up:
            return await self._first_answer(
                None, lambda c, t: c.increment(req, timeout=t, metadata=md), timeout=timeout
            )
        return await self._first_answer(
            None, lambda c, t: c.decrement(req, timeout=t, metadata=md), timeout=timeout
        )

    async def read_counter(self, slot: int, *, timeout: float | None = None) -> pb.CounterValue:
        """A counter slot's value as the first instance to answer holds it."""
        req = pb.ReadCounterRequest(slot=slot)
        md = self._metadata
        return await self._first_answer(
            None, lambda c, t: c.read_counter(req, timeout=t, metadata=md), timeout=timeout
        )

    async def set(
        self, slot: int, key: str, value: bytes | str, *, timeout: float | None = None
    ) -> pb.WriteReply:
        """Writes `key` in a register slot; the reply's version lets a later
        `get(..., at_least=version)` read this write from any instance."""
        if isinstance(value, str):
            value = value.encode()
        req = pb.SetRequest(slot=slot, key=key, value=value)
        md = self._metadata
        return await self._first_answer(
            None, lambda c, t: c.set(req, timeout=t, metadata=md), timeout=timeout
        )

    async def get(
        self,
        slot: int,
        key: str,
        *,
        at_least: pb.Version | None = None,
        timeout: float | None = None,
    ) -> pb.GetReply:
        """Reads `key` from a register slot; with `at_least` (the version of
        an earlier write), from an instance that has seen that write."""
        req = pb.GetRequest(slot=slot, key=key, at_least=at_least)
        md = self._metadata
        return await self._first_answer(
            None, lambda c, t: c.get(req, timeout=t, metadata=md), timeout=timeout
        )

    async def delete(self, slot: int, key: str, *, timeout: float | None = None) -> pb.WriteReply:
        """Deletes `key` from a register slot."""
        req = pb.DeleteRequest(slot=slot, key=key)
        md = self._metadata
        return await self._first_answer(
            None, lambda c, t: c.delete(req, timeout=t, metadata=md), timeout=timeout
        )

    async def list_keys(
        self, slot: int, prefix: str = "", limit: int = 0, *, timeout: float | None = None
    ) -> pb.ListKeysReply:
        """Live keys of a register slot starting with `prefix`, in key
        order; `limit` 0 means the server's bound (1000)."""
        req = pb.ListKeysRequest(slot=slot, prefix=prefix, limit=limit)
        md = self._metadata
        return await self._first_answer(
            None, lambda c, t: c.list_keys(req, timeout=t, metadata=md), timeout=timeout
        )

    async def announce(
        self,
        slot: int,
        app: str,
        address: str,
        ttl: float | None = None,
        *,
        timeout: float | None = None,
    ) -> pb.AnnounceReply:
        """Announces (or renews) `address` for `app` in a registry slot; it
        expires after `ttl` seconds (None: the slot's defaultTtl) unless
        announced again."""
        req = pb.AnnounceRequest(slot=slot, app=app, address=address)
        if ttl is not None:
            req.ttl_ms = max(int(round(ttl * 1000)), 0)
        md = self._metadata
        return await self._first_answer(
            None, lambda c, t: c.announce(req, timeout=t, metadata=md), timeout=timeout
        )

    async def withdraw(
        self, slot: int, app: str, address: str, *, timeout: float | None = None
    ) -> pb.WithdrawReply:
        """Removes `address` of `app` from a registry slot at once."""
        req = pb.WithdrawRequest(slot=slot, app=app, address=address)
        md = self._metadata
        return await self._first_answer(
            None, lambda c, t: c.withdraw(req, timeout=t, metadata=md), timeout=timeout
        )

    async def list_services(
        self, slot: int, app: str = "", *, timeout: float | None = None
    ) -> list[pb.Service]:
        """Live entries of a registry slot (`app` empty: every app)."""
        req = pb.ListServicesRequest(slot=slot, app=app)
        md = self._metadata
        reply = await self._first_answer(
            None, lambda c, t: c.list_services(req, timeout=t, metadata=md), timeout=timeout
        )
        return list(reply.services)

    async def watch_services(self, slot: int, app: str = "") -> ServiceWatch:
        """Changes of a registry slot's entries: first every live entry as
        ADDED, then each addition, renewal and expiry once."""
        req = pb.ListServicesRequest(slot=slot, app=app)
        md = self._metadata
        streams: Streams[pb.ServiceChange] = await self._follow_all(
            slot, lambda c: c.watch_services(req, metadata=md)
        )
        w = ServiceWatch(streams)
        self._open.add(w)
        return w

    async def watch_ticks(self, slot: int) -> TickWatch:
        """The ticks of a tick slot from every instance, each number once
        and in increasing order."""
        req = pb.WatchTicksRequest(slot=slot)
        md = self._metadata
        streams: Streams[pb.Tick] = await self._follow_all(
            slot, lambda c: c.watch_ticks(req, metadata=md)
        )
        w = TickWatch(streams)
        self._open.add(w)
        return w

    async def _follow_all(
        self, slot: int, open_stream: Callable[[VssCalls], aio.UnaryStreamCall[Any, T]]
    ) -> Streams[T]:
        instances = self._connected()
        streams: Streams[T] = Streams()
        loop = asyncio.get_running_loop()
        openings = []
        for inst in instances:
            first: asyncio.Future[tuple[grpc.StatusCode, str] | None] = loop.create_future()
            streams.start(inst.endpoint, inst.calls, open_stream, first)
            openings.append((inst.endpoint, first))
        try:
            await first_openings(openings, slot, self.timeout)
        except BaseException:
            await streams.close()
            raise
        return streams

    # --- status -----------------------------------------------------------

    async def status(
        self, *, timeout: float | None = None
    ) -> list[tuple[str, pb.StatusReply | Exception]]:
        """The status of every instance, in the order given, asked of all
        at once: an instance that does not answer costs one timeout, not
        one per instance behind it."""
        instances = self._connected()
        limit = self.timeout if timeout is None else timeout

        async def ask(inst: _Instance) -> tuple[str, pb.StatusReply | Exception]:
            try:
                reply = await inst.calls.status(
                    pb.StatusRequest(), timeout=limit, metadata=self._metadata
                )
                return inst.endpoint, reply
            except aio.AioRpcError as e:
                return inst.endpoint, server_error(
                    e.code(), e.details() or "", endpoint=inst.endpoint, slot=None
                )

        return list(await asyncio.gather(*(ask(i) for i in instances)))

    # --- lifetime ---------------------------------------------------------

    async def close(self) -> None:
        """Closes this client's subscriptions and watches, stops its tasks
        and closes its connections. Nothing of it keeps running after."""
        if self._closed:
            return
        self._closed = True
        for w in list(self._open):
            await w.close()
        self._open.clear()
        if self._batcher is not None:
            await self._batcher.close()
        for t in self._watchers:
            t.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers = []
        if self._instances is not None:
            await asyncio.gather(*(i.channel.close() for i in self._instances))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
