"""Tokens, TLS with client certificates, and a subscription that outlives
an instance's restart, against real `vss-runtime` processes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from harness import ProcessCluster, runtime_binary
from pki import Ca

import vss

RUN = f"py-{os.getpid()}-{int(time.time())}"

SLOTS = """slots:
  - {id: 0, type: token-bucket, bucketSize: 200, period: second, refreshRate: 100}
  - {id: 2, type: token-bucket, bucketSize: 1000, period: minute, refreshRate: 1000, tokensPerReq: 20}
  - {id: 10, type: broadcast, timeout: 2s}
"""

ACQUIRER = "acquirer-0123456789abcdef"
NOTIFIER = "notifier-0123456789abcdef"
ADMIN = "admin-0123456789abcdef0"


class Reader:
    """The application side of a subscription: acknowledges every message
    as it comes (a publish waits for that), and records it."""

    def __init__(self, events: vss.Subscription) -> None:
        self.events = events
        self.seen: list[bytes] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for event in self.events:
            self.seen.append(event.payload)
            await event.ack()

    async def close(self) -> None:
        await self.events.close()
        await self.task


def wait_settled(c: ProcessCluster) -> None:
    try:
        c.settled(60)
    except BaseException:
        c.stop()
        raise


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    binary = runtime_binary()
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.yaml"
    tokens.write_text(
        f"""tokens:
  - name: acquirer
    token: {ACQUIRER}
    permissions: [acquire]
    slots: [0]
  - name: notifier
    token: {NOTIFIER}
    permissions: [publish, subscribe]
    slots: [10]
    clients: ["{RUN}-n*"]
  - name: ops
    token: {ADMIN}
    permissions: [admin]
"""
    )
    c = ProcessCluster(
        binary, SLOTS, extra=["--client-tokens", str(tokens)], status_token=ADMIN
    ).start()
    wait_settled(c)
    yield c
    c.stop()


async def test_a_token_reaches_what_it_grants_and_a_refusal_names_it(
    token_cluster: ProcessCluster,
) -> None:
    acquirer = vss.Client(token_cluster.endpoints, security=vss.Security(token=ACQUIRER))
    anonymous = vss.Client(token_cluster.endpoints)
    try:
        assert await acquirer.wait_for_routing(10) is not None, "WatchRouting takes any token"
        grant = await acquirer.acquire(0, key=f"{RUN}/t")
        assert grant.granted == 1
        with pytest.raises(vss.PermissionDeniedError) as e:
            await acquirer.acquire(2)
        assert e.value.code is grpc.StatusCode.PERMISSION_DENIED and e.value.slot == 2
        assert 'token "acquirer" may not acquire on slot 2' in e.value.message
        with pytest.raises(vss.PermissionDeniedError, match="may not publish on slot 10"):
            await acquirer.publish(10, "x")
        # Concurrent acquires travel as AcquireBatch: the refusal is per acquire.
        results = await asyncio.gather(
            *(acquirer.acquire(s, key=f"{RUN}/b") for s in (0, 2, 0, 2)), return_exceptions=True
        )
        assert [type(r).__name__ for r in results] == [
            "Grant", "PermissionDeniedError", "Grant", "PermissionDeniedError"
        ]
        with pytest.raises(vss.UnauthenticatedError):
            await anonymous.acquire(0)
    finally:
        await acquirer.close()
        await anonymous.close()


async def test_a_token_with_clients_subscribes_only_under_its_ids(
    token_cluster: ProcessCluster,
) -> None:
    async with vss.Client(
        token_cluster.endpoints, security=vss.Security(token=NOTIFIER)
    ) as client:
        reader = Reader(await client.subscribe(f"{RUN}-n1", [10]))
        await asyncio.sleep(0.3)
        published = await client.publish(10, "tok-1", f"{RUN}-publisher")
        assert (published.delivered, published.failed) == (1, 0)
        await asyncio.sleep(0.3)
        await reader.close()
        assert reader.seen == [b"tok-1"], "once, though every instance delivered it"
        with pytest.raises(vss.PermissionDeniedError, match="may not subscribe as client"):
            await client.subscribe(f"{RUN}-other", [10])


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProcessCluster, Ca]]:
    binary = runtime_binary()
    ca = Ca("vss test CA")
    d = tmp_path_factory.mktemp("pki")
    server = ca.leaf("vss-instances")
    (d / "ca.pem").write_bytes(ca.pem)
    (d / "server.pem").write_bytes(server.cert)
    (d / "server.key").write_bytes(server.key)
    harness_leaf = ca.leaf("harness")
    c = ProcessCluster(
        binary,
        SLOTS,
        extra=[
            "--client-tls-cert", str(d / "server.pem"),
            "--client-tls-key", str(d / "server.key"),
            "--client-tls-ca", str(d / "ca.pem"),
        ],
        status_tls=grpc.ssl_channel_credentials(ca.pem, harness_leaf.key, harness_leaf.cert),
    ).start()
    wait_settled(c)
    yield c, ca
    c.stop()


async def test_tls_with_a_client_certificate(tls_cluster: tuple[ProcessCluster, Ca]) -> None:
    cluster, ca = tls_cluster
    me = ca.leaf("python-client")
    security = vss.Security(ca_pem=ca.pem, identity_pem=(me.cert, me.key))
    async with vss.Client(cluster.endpoints, security=security) as client:
        assert await client.wait_for_routing(10) is not None
        grants = await asyncio.gather(*(client.acquire(0, key=f"{RUN}/tls") for _ in range(10)))
        assert sum(g.granted for g in grants) == 10
        reader = Reader(await client.subscribe(f"{RUN}-tls", [10]))
        await asyncio.sleep(0.3)
        published = await client.publish(10, "tls-1")
        assert (published.delivered, published.failed) == (1, 0)
        await asyncio.sleep(0.3)
        await reader.close()
        assert reader.seen == [b"tls-1"]


async def test_without_a_client_certificate_or_tls_no_instance_answers(
    tls_cluster: tuple[ProcessCluster, Ca],
) -> None:
    cluster, ca = tls_cluster
    for security in (vss.Security(ca_pem=ca.pem), vss.Security()):
        async with vss.Client(cluster.endpoints, timeout=1.0, security=security) as client:
            with pytest.raises(vss.UnreachableError) as e:
                await client.acquire(0)
            assert len(e.value.failures) == 3, e.value.failures
    other = Ca("another CA")
    async with vss.Client(
        cluster.endpoints, timeout=1.0, security=vss.Security(ca_pem=other.pem)
    ) as client:
        with pytest.raises(vss.UnreachableError):
            await client.acquire(0)


@pytest.fixture(scope="module")
def plain_cluster() -> Iterator[ProcessCluster]:
    c = ProcessCluster(runtime_binary(), SLOTS).start()
    wait_settled(c)
    yield c
    c.stop()


async def test_a_subscription_reopens_its_stream_on_a_restarted_instance(
    plain_cluster: ProcessCluster,
) -> None:
    cluster = plain_cluster
    restarted = 1
    async with vss.Client(cluster.endpoints) as client:
        reader = Reader(await client.subscribe(f"{RUN}-survivor", [10]))
        cluster.kill(restarted)
        await asyncio.sleep(0.5)
        # Still served by the two others meanwhile.
        published = await client.publish(10, "while-down")
        assert (published.delivered, published.failed) == (1, 0)
        cluster.spawn(restarted)
        await asyncio.get_running_loop().run_in_executor(None, cluster.settled, 60)

        def streams_on_restarted() -> float | None:
            return cluster.metric(restarted, "vss_connected_clients")

        # The restarted instance holds an event stream again: this client's
        # (the only one), reopened by the subscription.
        deadline = time.monotonic() + 10
        while streams_on_restarted() != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert streams_on_restarted() == 1, "the stream was not reopened on the restarted instance"
        for n in range(1, 4):
            published = await client.publish(10, f"after-{n}")
            assert (published.delivered, published.failed) == (1, 0)
        await asyncio.sleep(0.3)
        await reader.close()
        assert reader.seen == [b"while-down", b"after-1", b"after-2", b"after-3"], (
            "each message once"
        )
        await asyncio.sleep(0.5)
        assert streams_on_restarted() == 0, "close ended the stream on the instance"
