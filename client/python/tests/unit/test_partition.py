"""A limiter slot's keys split into partitions: the key -> partition
function against the shared vectors (client/conformance/partitions.json,
which the Rust tests read too), and keyed acquires sent to the owner of
their key's partition, alone and coalesced (client/src/routing.rs)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fake import FakeCluster

import vss
from vss.partition import fnv1a64, partition_of
from vss.routing import Routing
from vss.v1 import cluster_pb2
from vss.v1 import vss_pb2 as pb

VECTORS = Path(__file__).resolve().parents[3] / "conformance" / "partitions.json"


def vectors() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(VECTORS.read_text())["vectors"]
    assert len(found) >= 9, f"{VECTORS}: {len(found)} vectors"
    return found


def test_the_partition_function_matches_the_shared_vectors() -> None:
    for v in vectors():
        key = v["key"]
        assert f"{fnv1a64(key.encode()):016x}" == v["fnv1a64"], key
        assert v["partition"], f"{key!r}: no partitions given"
        for count, partition in v["partition"].items():
            assert partition_of(key, int(count)) == partition, f"{key!r} among {count}"
        assert partition_of(key, 0) == 0


def partitioned_route(slot: int, n: int, ids: list[str]) -> cluster_pb2.SlotRoute:
    """`slot` split into `n` partitions, partition p owned by ids[p % 3]
    with ids[(p + 1) % 3] its standby; the slot's own route is the empty
    key's partition's, as the runtime makes it."""
    route = cluster_pb2.SlotRoute(slot=slot)
    for p in range(n):
        route.partitions.add(owner=ids[p % len(ids)], standby=ids[(p + 1) % len(ids)])
    empty = route.partitions[partition_of("", n)]
    route.owner, route.standby = empty.owner, empty.standby
    return route


def partitioned_table(ids: list[str]) -> cluster_pb2.RoutingTable:
    return cluster_pb2.RoutingTable(
        epoch=1,
        leader=ids[0],
        members=ids,
        routes=[partitioned_route(4, 16, ids), partitioned_route(5, 7, ids)],
    )


def test_a_keyed_call_is_routed_to_its_partitions_owner() -> None:
    ids = ["a", "b", "c"]
    r = Routing(3)
    for i, id_ in enumerate(ids):
        r.offer(i, pb.RoutingUpdate(instance=id_))
    r.offer(0, pb.RoutingUpdate(instance="a", table=partitioned_table(ids)))
    for v in vectors():
        key = v["key"]
        # The partition is the shared vector's, not this client's function:
        # a wrong hash fails here too.
        for slot, count in ((4, "16"), (5, "7")):
            p = v["partition"][count]
            owner, standby = p % 3, (p + 1) % 3
            assert r.first(slot, key) == owner, f"{key!r}: partition {p} of {count}"
            assert r.first(slot, key) == owner, "the cached answer too"
            assert r.order(slot, 3, key) == [owner, standby, 3 - owner - standby], key


def want_at_owners(times: int) -> list[dict[str, int]]:
    """Per fake, the acquires it must have got when each vector's key was
    acquired `times` times on slots 4 (16 partitions) and 5 (7): all at
    the owner of the key's partition, as the vectors give it."""
    want: list[dict[str, int]] = [{}, {}, {}]
    for v in vectors():
        for slot, count in ((4, "16"), (5, "7")):
            want[v["partition"][count] % 3][f"{slot}/{v['key']}"] = times
    return want


async def test_a_keyed_acquire_goes_to_its_partitions_owner() -> None:
    cluster = await FakeCluster(3, partitioned_table).start()
    try:
        async with vss.Client(cluster.endpoints) as client:
            assert await client.wait_for_routing(5) is not None
            for v in vectors():
                for slot in (4, 5):
                    await client.acquire(slot, key=v["key"])
            assert [f.keys for f in cluster.fakes] == want_at_owners(1)
            assert all("AcquireBatch" not in f.calls for f in cluster.fakes)
    finally:
        await cluster.stop()


async def test_coalesced_keyed_acquires_go_to_their_partitions_owner() -> None:
    cluster = await FakeCluster(3, partitioned_table).start()
    times = 20
    try:
        async with vss.Client(cluster.endpoints) as client:
            assert await client.wait_for_routing(5) is not None
            grants = await asyncio.gather(
                *(
                    client.acquire(slot, key=v["key"])
                    for _ in range(times)
                    for v in vectors()
                    for slot in (4, 5)
                )
            )
            assert all(g.granted == 1 for g in grants)
            assert [f.keys for f in cluster.fakes] == want_at_owners(times)
            batched = sum(sum(f.batch_sizes) for f in cluster.fakes)
            assert batched > 0, "no acquire went in a batch: the lanes were not exercised"
    finally:
        await cluster.stop()
