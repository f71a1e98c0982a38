"""In-process fake instances: `vss.v1.Vss` servers on loopback whose
answers a test sets, and which record what they were asked. They let the
client's choices (order, failover, batching, deduplication) be checked
over real gRPC without a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio

from vss.v1 import cluster_pb2
from vss.v1 import vss_pb2 as pb
from vss.v1 import vss_pb2_grpc


@dataclass
class Behaviour:
    """How a fake instance answers; None fields answer normally."""

    # Code and message every unary call fails with.
    fail: tuple[grpc.StatusCode, str] | None = None
    # Seconds each unary call waits before answering.
    delay: float = 0.0
    # Keys whose acquires fail inside a batch with this code and message.
    refuse_keys: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    # Events sent on every event stream once its Hello arrived.
    events: list[pb.Event] = field(default_factory=list)


class FakeVss(vss_pb2_grpc.VssServicer):  # type: ignore[misc]
    def __init__(self, instance: str, table: cluster_pb2.RoutingTable | None) -> None:
        self.instance = instance
        self.table = table
        self.behaviour = Behaviour()
        self.calls: dict[str, int] = {}
        self.batch_sizes: list[int] = []
        self.published_ids: list[int] = []
        self.acks: list[int] = []
        self.hellos: list[str] = []
        # Acquires by "slot/key", alone or in batches.
        self.keys: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _saw(self, r: pb.AcquireRequest) -> None:
        k = f"{r.slot}/{r.key}"
        self.keys[k] = self.keys.get(k, 0) + 1

    async def _misbehave(self, context: aio.ServicerContext[Any, Any]) -> None:
        if self.behaviour.delay:
            await asyncio.sleep(self.behaviour.delay)
        if self.behaviour.fail is not None:
            await context.abort(*self.behaviour.fail)

    async def Acquire(self, request: pb.AcquireRequest, context: Any) -> pb.AcquireReply:
        self._count("Acquire")
        self._saw(request)
        await self._misbehave(context)
        return pb.AcquireReply(granted=1, remaining=_num(request.key), reset_ms=7)

    async def AcquireBatch(
        self, request: pb.AcquireBatchRequest, context: Any
    ) -> pb.AcquireBatchReply:
        self._count("AcquireBatch")
        self.batch_sizes.append(len(request.requests))
        await self._misbehave(context)
        reply = pb.AcquireBatchReply()
        for r in request.requests:
            self._saw(r)
            refused = self.behaviour.refuse_keys.get(r.key)
            if refused is not None:
                reply.outcomes.add(
                    failure=pb.AcquireFailure(code=refused[0].value[0], message=refused[1])
                )
            else:
                reply.outcomes.add(
                    reply=pb.AcquireReply(granted=1, remaining=_num(r.key), reset_ms=7)
                )
        return reply

    async def Publish(self, request: pb.PublishRequest, context: Any) -> pb.PublishReply:
        self._count("Publish")
        self.published_ids.append(request.message_id)
        await self._misbehave(context)
        return pb.PublishReply(message_id=request.message_id, delivered=1)

    async def Register(self, request: pb.MembershipRequest, context: Any) -> pb.MembershipReply:
        self._count("Register")
        await self._misbehave(context)
        return pb.MembershipReply()

    async def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusReply:
        self._count("Status")
        await self._misbehave(context)
        return pb.StatusReply(instance=self.instance)

    async def WatchRouting(
        self, request: pb.WatchRoutingRequest, context: Any
    ) -> AsyncIterator[pb.RoutingUpdate]:
        update = pb.RoutingUpdate(instance=self.instance)
        if self.table is not None:
            update.table.CopyFrom(self.table)
        yield update
        await asyncio.Event().wait()  # held open, like a real instance

    async def Events(
        self, request_iterator: AsyncIterator[pb.ClientMessage], context: Any
    ) -> AsyncIterator[pb.Event]:
        self._count("Events")
        first = await request_iterator.__anext__()
        if not first.HasField("hello"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no Hello")
        if first.hello.client_id.startswith("refused"):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f'token "t" may not subscribe as client "{first.hello.client_id}"',
            )
        self.hellos.append(first.hello.client_id)

        async def read_acks() -> None:
            async for msg in request_iterator:
                if msg.HasField("ack"):
                    self.acks.append(msg.ack.message_id)

        reader = asyncio.ensure_future(read_acks())
        try:
            for e in self.behaviour.events:
                yield e
            await reader  # until the client ends its side
        finally:
            reader.cancel()


def _num(key: str) -> int:
    """A numeric key as the reply's `remaining` (0 for others and for
    numbers past a uint64)."""
    n = int(key) if key.isascii() and key.isdigit() else 0
    return n if n < 1 << 64 else 0


class FakeCluster:
    """`n` fake instances `a`, `b`, `c`... on loopback ports."""

    def __init__(self, n: int, table: Callable[[list[str]], cluster_pb2.RoutingTable] | None):
        self.ids = [chr(ord("a") + i) for i in range(n)]
        t = table(self.ids) if table else None
        self.fakes = [FakeVss(i, t) for i in self.ids]
        self.servers: list[aio.Server] = []
        self.endpoints: list[str] = []

    async def start(self) -> FakeCluster:
        for fake in self.fakes:
            server = aio.server()
            vss_pb2_grpc.add_VssServicer_to_server(fake, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self.servers.append(server)
            self.endpoints.append(f"127.0.0.1:{port}")
        return self

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop(None) for s in self.servers))


def table_routing(slot: int, owner: str, standby: str, epoch: int = 3):
    def make(ids: list[str]) -> cluster_pb2.RoutingTable:
        return cluster_pb2.RoutingTable(
            epoch=epoch,
            leader=ids[0],
            members=ids,
            routes=[cluster_pb2.SlotRoute(slot=slot, owner=owner, standby=standby)],
        )

    return make
