"""The client's choices over real gRPC, against fake instances: owner
first, failover on instance failures only, coalesced acquires, one
message id per publish, one delivery per message, nothing left running
after close."""

from __future__ import annotations

import asyncio
import sys

import grpc
import pytest
from fake import FakeCluster, table_routing

import vss
from vss.v1 import vss_pb2 as pb


def client_tasks(tasks: set[asyncio.Task[object]]) -> list[str]:
    """The tasks that are not the fake servers' (which share the loop)."""
    server = ("server", "rpc_task", "_handle_")
    return [repr(t) for t in tasks if not any(m in repr(t).lower() for m in server)]


async def started(n: int, owner: str = "", standby: str = "") -> FakeCluster:
    table = table_routing(4, owner, standby) if owner else None
    return await FakeCluster(n, table).start()


async def test_a_call_goes_to_the_slots_owner_first() -> None:
    cluster = await started(3, owner="c", standby="b")
    try:
        async with vss.Client(cluster.endpoints) as client:
            assert await client.wait_for_routing(5) is not None
            for _ in range(5):
                await client.acquire(4)
            assert [f.calls.get("Acquire", 0) for f in cluster.fakes] == [0, 0, 5]
            # Another slot has no route: the order given.
            await client.acquire(5)
            assert cluster.fakes[0].calls["Acquire"] == 1
    finally:
        await cluster.stop()


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED]
)
async def test_an_instance_failure_moves_on_to_the_standby(code: grpc.StatusCode) -> None:
    cluster = await started(3, owner="c", standby="b")
    cluster.fakes[2].behaviour.fail = (code, "going away")
    try:
        async with vss.Client(cluster.endpoints) as client:
            await client.wait_for_routing(5)
            grant = await client.acquire(4, key="17")
            assert grant == vss.Grant(granted=1, remaining=17, reset_ms=7)
            calls = [f.calls.get("Acquire", 0) for f in cluster.fakes]
            assert calls == [0, 1, 1], "owner c failed, standby b answered, a untouched"
    finally:
        await cluster.stop()


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, vss.InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, vss.NotFoundError),
        (grpc.StatusCode.FAILED_PRECONDITION, vss.FailedPreconditionError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, vss.ResourceExhaustedError),
        (grpc.StatusCode.PERMISSION_DENIED, vss.PermissionDeniedError),
    ],
)
async def test_a_request_error_is_never_retried_elsewhere(
    code: grpc.StatusCode, cls: type[vss.ServerError]
) -> None:
    cluster = await started(3, owner="a", standby="b")
    cluster.fakes[0].behaviour.fail = (code, "`key` is 300 bytes, at most 256 allowed")
    try:
        async with vss.Client(cluster.endpoints) as client:
            await client.wait_for_routing(5)
            with pytest.raises(cls) as e:
                await client.acquire(4)
            assert e.value.code is code
            assert e.value.slot == 4
            assert e.value.message == "`key` is 300 bytes, at most 256 allowed"
            assert e.value.endpoint == cluster.endpoints[0]
            assert [f.calls.get("Acquire", 0) for f in cluster.fakes] == [1, 0, 0]
    finally:
        await cluster.stop()


async def test_an_instance_that_does_not_answer_in_time_is_skipped() -> None:
    cluster = await started(2, owner="a", standby="b")
    # The owner would answer after 30 s; the call timeout is 0.3 s. The
    # 10 s bound only tells a cut call from one that waited for the owner.
    cluster.fakes[0].behaviour.delay = 30.0
    try:
        async with vss.Client(cluster.endpoints, timeout=0.3) as client:
            await client.wait_for_routing(5)
            grant = await asyncio.wait_for(client.acquire(4, key="5"), 10)
            assert grant.remaining == 5
            assert cluster.fakes[0].calls["Acquire"] == 1
            assert cluster.fakes[1].calls["Acquire"] == 1
    finally:
        await cluster.stop()


async def test_every_instance_failing_twice_is_unreachable_naming_each() -> None:
    cluster = await started(2)
    for f in cluster.fakes:
        f.behaviour.fail = (grpc.StatusCode.UNAVAILABLE, "draining")
    try:
        async with vss.Client(cluster.endpoints) as client:
            with pytest.raises(vss.UnreachableError) as e:
                await client.acquire(4)
            assert e.value.failures == [
                f"{cluster.endpoints[0]}: UNAVAILABLE draining",
                f"{cluster.endpoints[1]}: UNAVAILABLE draining",
            ]
            # Two passes over both instances.
            assert [f.calls["Acquire"] for f in cluster.fakes] == [2, 2]
    finally:
        await cluster.stop()


async def test_concurrent_acquires_are_coalesced_into_batches_to_the_owner() -> None:
    cluster = await started(3, owner="b", standby="c")
    try:
        async with vss.Client(cluster.endpoints) as client:
            await client.wait_for_routing(5)
            grants = await asyncio.gather(*(client.acquire(4, key=str(i)) for i in range(500)))
            # Each acquire got its own answer, in its own position.
            assert [g.remaining for g in grants] == list(range(500))
            b = cluster.fakes[1]
            assert b.calls.get("Acquire", 0) == 1, "the first, alone, leaves at once"
            assert sum(b.batch_sizes) == 499
            assert len(b.batch_sizes) < 20, b.batch_sizes
            assert max(b.batch_sizes) <= 256
            assert all(f.calls == {} for f in (cluster.fakes[0], cluster.fakes[2]))
    finally:
        await cluster.stop()


async def test_coalescing_off_sends_every_acquire_alone() -> None:
    cluster = await started(1)
    try:
        async with vss.Client(cluster.endpoints, coalescing=False) as client:
            await asyncio.gather(*(client.acquire(4) for _ in range(50)))
            assert cluster.fakes[0].calls == {"Acquire": 50}
    finally:
        await cluster.stop()


async def test_a_refusal_inside_a_batch_fails_that_acquire_alone() -> None:
    cluster = await started(2, owner="a", standby="b")
    cluster.fakes[0].behaviour.refuse_keys["7"] = (
        grpc.StatusCode.INVALID_ARGUMENT,
        "`tokens` is 0, at least 1 needed",
    )
    try:
        async with vss.Client(cluster.endpoints) as client:
            await client.wait_for_routing(5)
            results = await asyncio.gather(
                *(client.acquire(4, key=str(i)) for i in range(20)), return_exceptions=True
            )
            errors = [(i, r) for i, r in enumerate(results) if isinstance(r, Exception)]
            assert len(errors) == 1 and errors[0][0] == 7
            e = errors[0][1]
            assert isinstance(e, vss.InvalidArgumentError)
            assert e.message == "`tokens` is 0, at least 1 needed" and e.slot == 4
            # Not retried on b.
            assert cluster.fakes[1].calls == {}
    finally:
        await cluster.stop()


async def test_a_failed_batch_call_falls_back_to_the_other_instances() -> None:
    cluster = await started(2, owner="a", standby="b")
    cluster.fakes[0].behaviour.fail = (grpc.StatusCode.UNAVAILABLE, "gone")
    try:
        async with vss.Client(cluster.endpoints) as client:
            await client.wait_for_routing(5)
            grants = await asyncio.gather(*(client.acquire(4, key=str(i)) for i in range(50)))
            assert [g.remaining for g in grants] == list(range(50))
            b = cluster.fakes[1]
            # The batch to a failed; each acquire then went to b on its own.
            assert b.calls.get("Acquire", 0) == 50
    finally:
        await cluster.stop()


async def test_a_retried_publish_keeps_its_message_id() -> None:
    cluster = await started(2, owner="a", standby="b")
    cluster.fakes[0].behaviour.fail = (grpc.StatusCode.UNAVAILABLE, "gone")
    try:
        async with vss.Client(cluster.endpoints) as client:
            await client.wait_for_routing(5)
            published = await client.publish(4, "job-1")
            ids = cluster.fakes[0].published_ids + cluster.fakes[1].published_ids
            assert len(ids) == 2 and ids[0] == ids[1] != 0
            assert published.message_id == ids[0]
            other = await client.publish(4, "job-2")
            assert other.message_id != published.message_id
    finally:
        await cluster.stop()


async def test_a_message_from_every_instance_is_handed_out_once_and_acked_to_each() -> None:
    cluster = await started(3)
    events = [pb.Event(slot=10, message_id=i, payload=b"m%d" % i) for i in (5, 6)]
    for f in cluster.fakes:
        f.behaviour.events = list(events)
    try:
        async with vss.Client(cluster.endpoints) as client:
            sub = await client.subscribe("worker-1")
            got = []
            while (d := await sub.next(timeout=1.0)) is not None:
                got.append((d.slot, d.message_id, d.payload))
                await d.ack()
            assert got == [(10, 5, b"m5"), (10, 6, b"m6")]
            await sub.close()
            # Each instance got an ack for each copy it sent.
            for f in cluster.fakes:
                assert sorted(f.acks) == [5, 6], f.instance
                assert f.hellos == ["worker-1"]
    finally:
        await cluster.stop()


async def test_a_refused_stream_is_a_request_error_not_a_subscription() -> None:
    cluster = await started(3)
    try:
        async with vss.Client(cluster.endpoints) as client:
            with pytest.raises(vss.PermissionDeniedError, match='may not subscribe as client "refused-1"'):
                await client.subscribe("refused-1")
            # Not reopened: each instance was asked once.
            await asyncio.sleep(0.5)
            assert [f.calls["Events"] for f in cluster.fakes] == [1, 1, 1]
    finally:
        await cluster.stop()


async def test_subscribe_fails_when_no_instance_is_up() -> None:
    cluster = await started(2)
    endpoints = cluster.endpoints
    await cluster.stop()
    async with vss.Client(endpoints, timeout=0.5) as client:
        with pytest.raises(vss.UnreachableError):
            await client.subscribe("worker-1")


async def test_close_leaves_no_task_behind() -> None:
    cluster = await started(3, owner="a", standby="b")
    for f in cluster.fakes:
        f.behaviour.events = [pb.Event(slot=10, message_id=1)]
    before = asyncio.all_tasks()
    try:
        client = vss.Client(cluster.endpoints)
        await client.wait_for_routing(5)
        await asyncio.gather(*(client.acquire(4) for _ in range(30)))
        sub = await client.subscribe("w")
        assert await sub.next(timeout=2) is not None
        assert len(asyncio.all_tasks() - before) > 3
        await client.close()
        await asyncio.sleep(0)
        assert client_tasks(asyncio.all_tasks() - before) == []
        with pytest.raises(vss.ConfigurationError, match="closed"):
            await client.acquire(4)
    finally:
        await cluster.stop()


async def test_acquires_waiting_when_the_client_closes_fail_saying_so() -> None:
    cluster = await started(1)
    cluster.fakes[0].behaviour.delay = 1.0
    try:
        client = vss.Client(cluster.endpoints)
        pending = [asyncio.ensure_future(client.acquire(4)) for _ in range(20)]
        await asyncio.sleep(0.2)
        await client.close()
        results = await asyncio.gather(*pending, return_exceptions=True)
        # The first went alone and its call was cut; the batched ones were
        # failed by the closing lanes.
        if sys.version_info >= (3, 11):
            # Python 3.10 cannot tell a closed client from a cancelled caller
            # and re-raises the CancelledError.
            assert isinstance(results[0], vss.VssError), repr(results[0])
        batched = results[1:]
        assert all(isinstance(r, vss.ConfigurationError) for r in batched), batched
        assert all(str(r) == "client: closed" for r in batched)
    finally:
        await cluster.stop()


async def test_status_asks_every_instance_at_once() -> None:
    cluster = await started(3)
    cluster.fakes[1].behaviour.fail = (grpc.StatusCode.UNAVAILABLE, "down")
    try:
        async with vss.Client(cluster.endpoints) as client:
            answers = await client.status()
            assert [e for e, _ in answers] == cluster.endpoints
            assert isinstance(answers[0][1], pb.StatusReply) and answers[0][1].instance == "a"
            assert isinstance(answers[1][1], vss.ServerError)
            assert answers[1][1].code is grpc.StatusCode.UNAVAILABLE
    finally:
        await cluster.stop()


def test_the_sync_client_wraps_the_same_semantics() -> None:
    async def start() -> FakeCluster:
        return await started(2, owner="b", standby="a")

    loop = asyncio.new_event_loop()
    cluster = loop.run_until_complete(start())
    import threading

    server_thread = threading.Thread(target=loop.run_forever, daemon=True)
    server_thread.start()
    try:
        import vss.sync

        with vss.sync.Client(cluster.endpoints) as client:
            assert client.wait_for_routing(5) is not None
            assert client.acquire(4, key="3").remaining == 3
            assert cluster.fakes[1].calls["Acquire"] == 1
            cluster.fakes[1].behaviour.fail = (grpc.StatusCode.INVALID_ARGUMENT, "bad")
            with pytest.raises(vss.InvalidArgumentError):
                client.acquire(4)
            thread_names = {t.name for t in threading.enumerate()}
            assert "vss-client-loop" in thread_names
        assert "vss-client-loop" not in {t.name for t in threading.enumerate()}
    finally:
        asyncio.run_coroutine_threadsafe(cluster.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        server_thread.join()
        loop.close()
