"""Server streams held on every instance and merged: registry changes
(`ServiceWatch`) and ticks (`TickWatch`). Each stream is reopened after it
breaks; each change or tick is handed out once, whichever instance sends
it first, so an instance going down skips nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc
from grpc import aio

from ._rpc import VssCalls
from .errors import UnreachableError, is_instance_failure, refusal, server_error
from .subscription import RESUBSCRIBE_AFTER
from .v1 import vss_pb2 as pb

T = TypeVar("T")

# Items buffered between the streams and the application.
WATCH_BUFFER = 1_024

class Streams(Generic[T]):
    """One server stream per instance, merged into one queue; `close`
    cancels them all."""

    def __init__(self) -> None:
        self.items: asyncio.Queue[T] = asyncio.Queue(WATCH_BUFFER)
        self.tasks: list[asyncio.Task[None]] = []

    def start(
        self,
        endpoint: str,
        calls: VssCalls,
        open_stream: Callable[[VssCalls], aio.UnaryStreamCall[Any, T]],
        first: asyncio.Future[tuple[grpc.StatusCode, str] | None],
    ) -> None:
        self.tasks.append(
            asyncio.get_running_loop().create_task(
                self._keep_open(calls, open_stream, first), name=f"vss-watch-{endpoint}"
            )
        )

    async def _keep_open(
        self,
        calls: VssCalls,
        open_stream: Callable[[VssCalls], aio.UnaryStreamCall[Any, T]],
        first: asyncio.Future[tuple[grpc.StatusCode, str] | None],
    ) -> None:
        """Keeps one instance's stream open, forwarding its items, until
        closed or the instance refuses the request itself."""
        try:
            while True:
                call = open_stream(calls)
                try:
                    refused = await refusal(call)
                    if refused is not None:
                        if not first.done():
                            first.set_result(refused)
                        if not is_instance_failure(refused[0]):
                            return
                    else:
                        if not first.done():
                            first.set_result(None)
                        async for item in call:
                            await self.items.put(item)
                except aio.AioRpcError as e:
                    if not first.done():
                        first.set_result((e.code(), e.details() or ""))
                    if not is_instance_failure(e.code()):
                        return
                finally:
                    call.cancel()
                await asyncio.sleep(RESUBSCRIBE_AFTER)
        finally:
            if not first.done():
                first.set_result((grpc.StatusCode.CANCELLED, "stream task ended"))

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class TickWatch:
    """Ticks of a tick slot from every instance, each number once and in
    increasing order. Iterate it or call `next`; `close` ends it."""

    def __init__(self, streams: Streams[pb.Tick]) -> None:
        self._streams = streams
        self._last: int | None = None

    async def next(self, timeout: float | None = None) -> pb.Tick | None:
        """The next tick number above every one returned before; None after
        `timeout` seconds without one."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            try:
                if deadline is None:
                    tick = await self._streams.items.get()
                else:
                    tick = await asyncio.wait_for(
                        self._streams.items.get(), max(deadline - loop.time(), 0)
                    )
            except asyncio.TimeoutError:
                return None
            if self._last is None or tick.number > self._last:
                self._last = tick.number
                return tick

    def __aiter__(self) -> TickWatch:
        return self

    async def __anext__(self) -> pb.Tick:
        tick = await self.next()
        if tick is None:
            raise StopAsyncIteration
        return tick

    async def close(self) -> None:
        await self._streams.close()

    async def __aenter__(self) -> TickWatch:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


class ServiceWatch:
    """Changes of a registry slot's entries: first every live entry as
    ADDED, then each addition, renewal and expiry once, whichever instance
    reports it first."""

    def __init__(self, streams: Streams[pb.ServiceChange]) -> None:
        self._streams = streams
        # (app, address) -> the newest entry handed out.
        self._known: dict[tuple[str, str], pb.Service] = {}

    def _fresh(self, change: pb.ServiceChange) -> pb.ServiceChange | None:
        """The change to hand out for `change`, or None if it repeats what
        was handed out (pure: tested without streams)."""
        if not change.HasField("service"):
            return None
        s = change.service
        key = (s.app, s.address)
        held = self._known.get(key)
        kind = change.kind
        if kind in (pb.ServiceChange.ADDED, pb.ServiceChange.RENEWED):
            fresh = held is None or (s.updated_ms, s.expires_ms) > (
                held.updated_ms,
                held.expires_ms,
            )
        elif kind == pb.ServiceChange.EXPIRED:
            # An instance that has not heard of a renewal yet must not take
            # away an entry another instance renewed.
            fresh = held is not None and held.updated_ms <= s.updated_ms
        else:
            fresh = False
        if not fresh:
            return None
        if kind == pb.ServiceChange.EXPIRED:
            del self._known[key]
            out_kind = pb.ServiceChange.EXPIRED
        elif held is not None:
            self._known[key] = s
            out_kind = pb.ServiceChange.RENEWED
        else:
            self._known[key] = s
            out_kind = pb.ServiceChange.ADDED
        return pb.ServiceChange(kind=out_kind, service=s)

    async def next(self, timeout: float | None = None) -> pb.ServiceChange | None:
        """The next change; None after `timeout` seconds without one."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            try:
                if deadline is None:
                    change = await self._streams.items.get()
                else:
                    change = await asyncio.wait_for(
                        self._streams.items.get(), max(deadline - loop.time(), 0)
                    )
            except asyncio.TimeoutError:
                return None
            out = self._fresh(change)
            if out is not None:
                return out

    def __aiter__(self) -> ServiceWatch:
        return self

    async def __anext__(self) -> pb.ServiceChange:
        change = await self.next()
        if change is None:
            raise StopAsyncIteration
        return change

    async def close(self) -> None:
        await self._streams.close()

    async def __aenter__(self) -> ServiceWatch:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def first_openings(
    openings: Sequence[tuple[str, asyncio.Future[tuple[grpc.StatusCode, str] | None]]],
    slot: int | None,
    timeout: float,
) -> None:
    """Waits (up to `timeout` in all) for the first opening of a stream on
    every instance: fine if one accepted; a request error (the same on
    every instance) is raised as it is; otherwise every instance was
    unreachable. Streams still opening keep trying in the background."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    failures: list[str] = []
    accepted = False
    for endpoint, first in openings:
        try:
            outcome = await asyncio.wait_for(
                asyncio.shield(first), max(deadline - loop.time(), 0)
            )
        except asyncio.TimeoutError:
            failures.append(f"{endpoint}: no answer within {timeout:g} s")
            continue
        if outcome is None:
            accepted = True
            continue
        code, message = outcome
        if is_instance_failure(code):
            failures.append(f"{endpoint}: {message}")
        else:
            raise server_error(code, message, endpoint=endpoint, slot=slot)
    if not accepted:
        raise UnreachableError(failures, slot=slot)
