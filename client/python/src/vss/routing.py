"""What the client knows of the cluster's routing: the newest table any
instance sent, and which endpoint is which instance.

`Routing` is plain data plus the choice of order (`order`, `first`), tested
without sockets; `watch` is the task that feeds it from one instance's
`WatchRouting` stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from ._rpc import VssCalls
from .partition import partition_of
from .v1 import cluster_pb2, vss_pb2

# Wait before watching an instance again after its stream broke.
REWATCH_AFTER = 0.25


def newer(offered: cluster_pb2.RoutingTable, held: cluster_pb2.RoutingTable | None) -> bool:
    """Whether `offered` replaces `held`: a higher epoch, or the same epoch
    from a higher leader id (as on the servers)."""
    return held is None or (offered.epoch, offered.leader) > (held.epoch, held.leader)


class Routing:
    """The routing view of one client: the newest table, and the instance
    id of each endpoint (by position) once it said."""

    def __init__(self, instances: int) -> None:
        self.table: cluster_pb2.RoutingTable | None = None
        self.ids: list[str | None] = [None] * instances
        # slot -> owner position of each of its partitions (one entry for a
        # slot not split), filled as asked; emptied on any change (every
        # acquire asks, so it must not scan the table each time).
        self._owners: dict[int, tuple[int, ...]] = {}

    def offer(self, position: int, update: vss_pb2.RoutingUpdate) -> None:
        """Takes what endpoint `position` sent: its id, and its table if
        newer than the one held."""
        if 0 <= position < len(self.ids) and update.instance:
            if self.ids[position] != update.instance:
                self.ids[position] = update.instance
                self._owners.clear()
        if update.HasField("table") and newer(update.table, self.table):
            self.table = update.table
            self._owners.clear()

    def _position(self, instance_id: str) -> int | None:
        if not instance_id:
            return None
        for i, known in enumerate(self.ids):
            if known == instance_id:
                return i
        return None

    def _route(self, slot: int) -> cluster_pb2.SlotRoute | None:
        if self.table is None:
            return None
        for route in self.table.routes:
            if route.slot == slot:
                return route
        return None

    def order(self, slot: int | None, count: int, key: str = "") -> list[int]:
        """Endpoint positions to try for `slot`'s bucket `key` ("" for
        calls that name none): its owner, its standby, then every other
        instance in the order given. In a slot split into partitions, the
        owner and standby are those of `key`'s partition."""
        order: list[int] = []
        route = self._route(slot) if slot is not None else None
        if route is not None:
            for instance_id in owner_of(route, key):
                i = self._position(instance_id)
                if i is not None and i < count and i not in order:
                    order.append(i)
        order.extend(i for i in range(count) if i not in order)
        return order

    def first(self, slot: int, key: str = "") -> int:
        """The endpoint position of the owner of `slot`'s bucket `key` when
        known, else 0."""
        owners = self._owners.get(slot)
        if owners is None:
            route = self._route(slot)
            if route is None:
                owners = (0,)
            elif route.partitions:
                owners = tuple(self._position(p.owner) or 0 for p in route.partitions)
            else:
                owners = (self._position(route.owner) or 0,)
            self._owners[slot] = owners
        return owners[partition_of(key, len(owners))]


def owner_of(route: cluster_pb2.SlotRoute, key: str) -> tuple[str, str]:
    """The owner and standby of `route`'s bucket `key`: its partition's
    when the slot's keys are split, else the slot's (for the empty key the
    two agree: the slot's route is the empty key's partition's)."""
    if route.partitions:
        p = route.partitions[partition_of(key, len(route.partitions))]
        return p.owner, p.standby
    return route.owner, route.standby


async def watch(
    position: int,
    calls: VssCalls,
    routing: Routing,
    metadata: Sequence[tuple[str, str]],
) -> None:
    """Follows one instance's routing updates into `routing`, reopening the
    stream after it breaks, until cancelled."""
    while True:
        stream = calls.watch_routing(vss_pb2.WatchRoutingRequest(), metadata=metadata)
        try:
            async for update in stream:
                routing.offer(position, update)
        except grpc.RpcError:
            # The instance went away (or refused): watch it again soon; the
            # other instances' tables keep the client routing meanwhile.
            pass
        finally:
            stream.cancel()
        await asyncio.sleep(REWATCH_AFTER)
