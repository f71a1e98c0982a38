"""Runs every scenario of client/conformance/scenarios.json through the
Python client against real `vss-runtime` processes (see conftest.py and
client/conformance/README.md for the format). One test per scenario, in
file order, on one cluster."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import COUNTS, load_suite
from harness import ProcessCluster

import vss

RUN = f"py-{os.getpid()}-{int(time.time())}"
SUITE = load_suite()

# How long a client call may take on one instance in these scenarios.
CALL_TIMEOUT = 5.0


def substitute(value: Any) -> Any:
    """`{run}` replaced everywhere; `{"repeat": s, "times": n}` made a string."""
    if isinstance(value, str):
        return value.replace("{run}", RUN)
    if isinstance(value, list):
        return [substitute(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"repeat", "times"}:
            return substitute(value["repeat"]) * int(value["times"])
        return {k: substitute(v) for k, v in value.items()}
    return value


# --- steps ----------------------------------------------------------------


async def invoke(client: vss.Client, verb: str, a: dict[str, Any]) -> dict[str, Any]:
    """Makes one call through the client's own verb; returns the reply
    fields the format exposes."""
    slot = a.get("slot", 0)
    if verb == "acquire":
        g = await client.acquire(slot, key=a.get("key"), tokens=a.get("tokens"))
        return {"granted": g.granted, "remaining": g.remaining, "reset_ms": g.reset_ms}
    if verb == "publish":
        p = await client.publish(slot, a.get("message", "").encode(), a.get("client_id", ""))
        return {"delivered": p.delivered, "failed": p.failed, "taken_by": p.taken_by or ""}
    if verb == "register":
        await client.register(slot, a.get("client_id", ""))
        return {}
    if verb == "deregister":
        await client.deregister(slot, a.get("client_id", ""))
        return {}
    if verb in ("increment", "decrement"):
        change = client.increment if verb == "increment" else client.decrement
        v = await change(slot, a.get("amount", 1))
        return {
            "value": v.value,
            "increments": v.increments,
            "decrements": v.decrements,
            "applied": v.applied,
        }
    if verb == "read_counter":
        v = await client.read_counter(slot)
        return {"value": v.value, "increments": v.increments, "decrements": v.decrements}
    if verb == "set":
        w = await client.set(slot, a["key"], a.get("value", "").encode())
        return {"existed": w.existed}
    if verb == "delete":
        w = await client.delete(slot, a["key"])
        return {"existed": w.existed}
    if verb == "get":
        r = await client.get(slot, a["key"])
        return {"found": r.found, "value": r.value.decode(), "deleted": r.deleted}
    if verb == "list_keys":
        k = await client.list_keys(slot, a.get("prefix", ""), a.get("limit", 0))
        return {"keys": [e.key for e in k.entries], "truncated": k.truncated}
    if verb == "announce":
        ttl = a["ttl_ms"] / 1000 if "ttl_ms" in a else None
        announced = await client.announce(slot, a["app"], a["address"], ttl)
        return {"added": announced.added}
    if verb == "withdraw":
        withdrawn = await client.withdraw(slot, a["app"], a["address"])
        return {"removed": withdrawn.removed}
    if verb == "list_services":
        services = await client.list_services(slot, a.get("app", ""))
        return {"services": [f"{s.app} {s.address}" for s in services]}
    raise AssertionError(f"unknown call {verb!r}: this runner does not know it")


def mismatches(expect: dict[str, Any], got: dict[str, Any]) -> list[str]:
    out = []
    for name, want in expect.items():
        if name not in got:
            out.append(f"{name}: no such reply field (got {sorted(got)})")
            continue
        have = got[name]
        if isinstance(want, dict):
            if not want or set(want) - {"min", "max"}:
                out.append(f"{name}: unknown matcher {want!r} (a number matcher has min and/or max)")
                continue
            lo, hi = want.get("min"), want.get("max")
            if (lo is not None and have < lo) or (hi is not None and have > hi):
                out.append(f"{name}: expected {want}, got {have!r}")
        elif name == "services":
            if sorted(have) != sorted(want):
                out.append(f"{name}: expected the set {sorted(want)}, got {sorted(have)}")
        elif have != want:
            out.append(f"{name}: expected {want!r}, got {have!r}")
    return out


@dataclass
class StepRun:
    cluster: ProcessCluster
    client: vss.Client
    last_reset_ms: int | None = None
    singles: dict[str, vss.Client] = field(default_factory=dict)

    async def clients_for(self, via: str) -> list[vss.Client]:
        if via == "all":
            return [self.client]
        if via != "each":
            raise AssertionError(f"unknown via {via!r}")
        for e in self.cluster.endpoints:
            if e not in self.singles:
                self.singles[e] = vss.Client([e], timeout=CALL_TIMEOUT)
        return [self.singles[e] for e in self.cluster.endpoints]

    async def close(self) -> None:
        for c in self.singles.values():
            await c.close()

    async def step(self, index: int, step: dict[str, Any]) -> None:
        step = substitute(step)
        if "wait_reset" in step:
            assert self.last_reset_ms is not None, f"step {index}: wait_reset before any acquire"
            await asyncio.sleep((self.last_reset_ms + step["wait_reset"].get("plus_ms", 0)) / 1000)
            return
        if "sleep_ms" in step:
            await asyncio.sleep(step["sleep_ms"] / 1000)
            return
        verb = step["call"]
        args = step.get("args", {})
        where = f"step {index} ({verb} {args})"
        for client in await self.clients_for(step.get("via", "all")):
            repeat = int(step.get("repeat", 1))
            calls: list[Callable[[], Awaitable[dict[str, Any]]]] = [
                functools.partial(invoke, client, verb, args) for _ in range(repeat)
            ]
            if step.get("concurrent"):
                results = await asyncio.gather(*(c() for c in calls), return_exceptions=True)
            else:
                results = []
                for c in calls:
                    try:
                        results.append(await c())
                    except vss.VssError as e:
                        results.append(e)
            for n, result in enumerate(results):
                label = f"{where}, call {n + 1} of {repeat} via {client.endpoints}"
                self.check(label, step, result)
                if verb == "acquire" and isinstance(result, dict):
                    self.last_reset_ms = result["reset_ms"]

    @staticmethod
    def check(label: str, step: dict[str, Any], result: Any) -> None:
        if "expect_error" in step:
            want = step["expect_error"]
            if not isinstance(result, vss.ServerError):
                pytest.fail(f"{label}: expected {want['code']} error, got {result!r}", pytrace=False)
            if result.code.name != want["code"] or want["message_contains"] not in result.message:
                pytest.fail(
                    f"{label}: expected {want['code']} with a message containing "
                    f"{want['message_contains']!r}, got {result.code.name}: {result.message!r}",
                    pytrace=False,
                )
            return
        if isinstance(result, BaseException):
            pytest.fail(f"{label}: failed: {type(result).__name__}: {result}", pytrace=False)
        bad = mismatches(step.get("expect", {}), result)
        if bad:
            pytest.fail(f"{label}: " + "; ".join(bad), pytrace=False)


async def run_steps(cluster: ProcessCluster, scenario: dict[str, Any]) -> None:
    async with vss.Client(cluster.endpoints, timeout=CALL_TIMEOUT) as client:
        await client.wait_for_routing(10)
        run = StepRun(cluster, client)
        try:
            for i, step in enumerate(scenario["steps"]):
                await run.step(i, step)
        finally:
            await run.close()


# --- signals --------------------------------------------------------------


class Listener:
    """One subscription whose application records every message it sees
    and acknowledges it."""

    def __init__(self, client_id: str, sub: vss.Subscription) -> None:
        self.client_id = client_id
        self.sub = sub
        self.seen: Counter[bytes] = Counter()
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for d in self.sub:
            self.seen[d.payload] += 1
            await d.ack()

    async def close(self) -> None:
        await self.sub.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def listen(
    clients: list[vss.Client], ids: list[str], slot: int
) -> list[Listener]:
    """Opens a subscription per id (Hello slots [slot]), spread over the
    clients."""
    subs = await asyncio.gather(
        *(clients[i % len(clients)].subscribe(cid, [slot]) for i, cid in enumerate(ids))
    )
    return [Listener(cid, sub) for cid, sub in zip(ids, subs)]


async def wait_until_seen(listeners: list[Listener], messages: list[bytes], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(l.seen[m] >= 1 for l in listeners for m in messages):
            return
        await asyncio.sleep(0.02)


def check_reply(label: str, reply: vss.Published, want: dict[str, Any]) -> None:
    got = {"delivered": reply.delivered, "failed": reply.failed, "taken_by": reply.taken_by or ""}
    bad = mismatches({k: v for k, v in want.items() if k in got}, got)
    if bad:
        pytest.fail(f"{label}: " + "; ".join(bad), pytrace=False)


async def broadcast_fanout(cluster: ProcessCluster, scenario: dict[str, Any]) -> None:
    p, expect = scenario["params"], scenario["expect"]
    slot, s, m = p["slot"], p["subscribers"], p["messages"]
    # Several subscriptions share a client of every endpoint.
    clients = [vss.Client(cluster.endpoints, timeout=CALL_TIMEOUT) for _ in range(8)]
    publisher = vss.Client(cluster.endpoints, timeout=CALL_TIMEOUT)
    listeners: list[Listener] = []
    try:
        listeners = await listen(clients, [f"{RUN}/sub-{i}" for i in range(s)], slot)
        await asyncio.sleep(p["settle_ms"] / 1000)
        messages = [f"{RUN}/m{j}".encode()[:36] for j in range(m)]
        for j, msg in enumerate(messages):
            reply = await publisher.publish(slot, msg, f"{RUN}/publisher")
            check_reply(f"publish {j + 1} of {m}", reply, expect)
        await wait_until_seen(listeners, messages, 5.0)
        await asyncio.sleep(0.3)
        copies = expect["copies_seen_by_application"]
        wrong = [
            f"{l.client_id} saw {msg!r} {l.seen[msg]} times"
            for l in listeners
            for msg in messages
            if l.seen[msg] != copies
        ]
        if wrong:
            pytest.fail(
                f"{len(wrong)} of {s * m} (subscriber, message) pairs not seen exactly "
                f"{copies} time(s): {wrong[:5]}",
                pytrace=False,
            )
    finally:
        await asyncio.gather(*(l.close() for l in listeners))
        await asyncio.gather(*(c.close() for c in [*clients, publisher]))


async def multicast_deregistration(cluster: ProcessCluster, scenario: dict[str, Any]) -> None:
    p, expect = scenario["params"], scenario["expect"]
    slot = p["slot"]
    client = vss.Client(cluster.endpoints, timeout=CALL_TIMEOUT)
    live_ids = [f"{RUN}/live-{i}" for i in range(p["live"])]
    absent_ids = [f"{RUN}/absent-{i}" for i in range(p["absent"])]
    listeners: list[Listener] = []
    try:
        listeners = await listen([client], live_ids, slot)
        for cid in [*live_ids, *absent_ids]:
            await client.register(slot, cid)
        await asyncio.sleep(p["settle_ms"] / 1000)
        messages = []
        for j in range(p["dereg_tries"] + 1):
            msg = f"{RUN}/mc{j}".encode()[:36]
            messages.append(msg)
            reply = await client.publish(slot, msg, f"{RUN}/publisher")
            if j < p["dereg_tries"]:
                check_reply(f"publish {j + 1} (before deregistration)", reply,
                            expect["before_deregistration"])
            else:
                check_reply(f"publish {j + 1} (after deregistration)", reply,
                            expect["after_deregistration"])
        await wait_until_seen(listeners, messages, 5.0)
        await asyncio.sleep(0.3)
        copies = expect["copies_seen_by_application"]
        wrong = [
            f"{l.client_id} saw {msg!r} {l.seen[msg]} times"
            for l in listeners
            for msg in messages
            if l.seen[msg] != copies
        ]
        if wrong:
            pytest.fail(f"live members: {wrong}", pytrace=False)
        for cid in live_ids:
            await client.deregister(slot, cid)
    finally:
        await asyncio.gather(*(l.close() for l in listeners))
        await client.close()


async def random_single_delivery(cluster: ProcessCluster, scenario: dict[str, Any]) -> None:
    p, expect = scenario["params"], scenario["expect"]
    slot = p["slot"]
    client = vss.Client(cluster.endpoints, timeout=CALL_TIMEOUT)
    ids = [f"{RUN}/member-{i}" for i in range(p["members"])]
    listeners: list[Listener] = []
    try:
        listeners = await listen([client], ids, slot)
        for cid in ids:
            await client.register(slot, cid)
        await asyncio.sleep(p["settle_ms"] / 1000)
        takers: dict[bytes, str] = {}
        for j in range(p["messages"]):
            msg = f"{RUN}/r{j}".encode()[:36]
            reply = await client.publish(slot, msg, f"{RUN}/publisher")
            check_reply(f"publish {j + 1}", reply, expect)
            if reply.taken_by not in ids:
                pytest.fail(f"publish {j + 1}: taken_by {reply.taken_by!r} is no member", pytrace=False)
            takers[msg] = reply.taken_by
        await asyncio.sleep(0.3)
        for msg, taker in takers.items():
            seen_by = {l.client_id: l.seen[msg] for l in listeners if l.seen[msg]}
            if seen_by != {taker: 1}:
                pytest.fail(f"{msg!r} taken by {taker} but seen as {seen_by}", pytrace=False)
        distinct = len(set(takers.values()))
        if distinct < expect["min_distinct_takers"]:
            pytest.fail(
                f"{distinct} distinct takers, at least {expect['min_distinct_takers']} expected",
                pytrace=False,
            )
        for cid in ids:
            await client.deregister(slot, cid)
    finally:
        await asyncio.gather(*(l.close() for l in listeners))
        await client.close()


async def subscription_reopens_after_restart(
    cluster: ProcessCluster, scenario: dict[str, Any]
) -> None:
    p, expect = scenario["params"], scenario["expect"]
    slot, victim = p["slot"], p["instance"]
    if not 0 <= victim < len(cluster.nodes):
        raise AssertionError(f"instance {victim}: the cluster has {len(cluster.nodes)}")
    name = cluster.nodes[victim].id
    # The subscription is the only event stream: its client opens no
    # other, and the publisher subscribes to nothing.
    client = vss.Client(cluster.endpoints, timeout=CALL_TIMEOUT)
    publisher = vss.Client(cluster.endpoints, timeout=CALL_TIMEOUT)
    listeners: list[Listener] = []
    try:
        listeners = await listen([client], [f"{RUN}/reopen"], slot)
        await asyncio.sleep(p["settle_ms"] / 1000)
        cluster.kill(victim)
        cluster.spawn(victim)
        # Blocking waits run in a thread: the subscription reopens its
        # stream on this event loop meanwhile.
        try:
            await asyncio.to_thread(cluster.settled, p["rejoin_timeout_ms"] / 1000)
        except TimeoutError as e:
            pytest.fail(f"the restarted instance {name} did not rejoin: {e}", pytrace=False)
        want = expect["restarted_instance_connected_clients_min"]
        deadline = time.monotonic() + p["reopen_timeout_ms"] / 1000
        while True:
            connected = await asyncio.to_thread(cluster.metric, victim, "vss_connected_clients")
            if connected is not None and connected >= want:
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{name} reports vss_connected_clients {connected} "
                    f"{p['reopen_timeout_ms']} ms after it rejoined, expected at least {want}: "
                    f"the subscription's stream to it was not reopened",
                    pytrace=False,
                )
            await asyncio.sleep(0.05)
        line = f"{scenario['name']}: {name} counts {connected:g} connected client(s) after its restart"
        COUNTS.append(line)
        print(line)
        messages = [f"{RUN}/reopen{j}".encode()[:36] for j in range(p["messages"])]
        for j, msg in enumerate(messages):
            reply = await publisher.publish(slot, msg, f"{RUN}/publisher")
            check_reply(f"publish {j + 1} of {len(messages)}", reply, expect)
        await wait_until_seen(listeners, messages, 5.0)
        await asyncio.sleep(0.3)
        copies = expect["copies_seen_by_application"]
        wrong = [
            f"{msg!r} seen {listeners[0].seen[msg]} times"
            for msg in messages
            if listeners[0].seen[msg] != copies
        ]
        if wrong:
            pytest.fail(f"expected each message seen {copies} time(s): {wrong}", pytrace=False)
    finally:
        await asyncio.gather(*(l.close() for l in listeners))
        await asyncio.gather(client.close(), publisher.close())


# --- data -----------------------------------------------------------------


async def ticks(cluster: ProcessCluster, scenario: dict[str, Any]) -> None:
    p, expect = scenario["params"], scenario["expect"]
    count, interval = p["count"], p["interval_ms"]
    async with vss.Client(cluster.endpoints, timeout=CALL_TIMEOUT) as client:
        watch = await client.watch_ticks(p["slot"])
        deadline = time.monotonic() + count * interval / 1000 + 5
        got: list[tuple[int, int]] = []
        while len(got) < count:
            tick = await watch.next(timeout=max(deadline - time.monotonic(), 0))
            if tick is None:
                pytest.fail(f"{len(got)} of {count} ticks in time: {got}", pytrace=False)
            got.append((tick.number, tick.due_ms))
        await watch.close()
    numbers = [n for n, _ in got]
    if expect.get("consecutive") and numbers != list(range(numbers[0], numbers[0] + count)):
        pytest.fail(f"tick numbers not consecutive: {numbers}", pytrace=False)
    if expect.get("due_ms_is_number_times_interval"):
        off = [(n, d) for n, d in got if d != n * interval]
        if off:
            pytest.fail(f"due_ms != number x {interval}: {off}", pytrace=False)


# --- failover -------------------------------------------------------------


async def failover(cluster: ProcessCluster, scenario: dict[str, Any]) -> None:
    p, expect = substitute(scenario["params"]), scenario["expect"]
    slot, key = p["slot"], p["key"]
    table = cluster.settled(p["rejoin_timeout_ms"] / 1000)
    if p["target"] == "owner":
        target_id = next(r.owner for r in table.routes if r.slot == slot)
    elif p["target"] == "leader":
        target_id = table.leader
    else:
        raise AssertionError(f"unknown failover target {p['target']!r}")
    target = cluster.index_of(target_id)
    calls = failed = granted = killed_at = restarted_at = 0
    errors: Counter[str] = Counter()
    stop = asyncio.Event()

    async with vss.Client(cluster.endpoints) as client:
        await client.wait_for_routing(10)

        async def worker() -> None:
            nonlocal calls, failed, granted
            while not stop.is_set():
                calls += 1
                try:
                    g = await client.acquire(slot, key=key, tokens=1)
                    granted += g.granted
                except vss.VssError as e:
                    failed += 1
                    errors[str(e)[:200]] += 1

        workers = [asyncio.get_running_loop().create_task(worker()) for _ in range(p["concurrency"])]
        try:
            await asyncio.sleep(p["before_kill_ms"] / 1000)
            cluster.kill(target)
            killed_at = calls
            await asyncio.sleep(p["after_kill_ms"] / 1000)
            cluster.spawn(target)
            restarted_at = calls
            loop = asyncio.get_running_loop()
            rejoin = loop.run_in_executor(None, cluster.settled, p["rejoin_timeout_ms"] / 1000)
            await rejoin
            await asyncio.sleep(p["after_restart_ms"] / 1000)
        finally:
            stop.set()
            await asyncio.gather(*workers)
    line = (
        f"{scenario['name']}: target {target_id} ({p['target']}), calls {calls} "
        f"(before the kill {killed_at}, while down {restarted_at - killed_at}, "
        f"after the restart {calls - restarted_at}), failed {failed}, granted {granted}"
    )
    COUNTS.append(line)
    print(line)
    if failed != expect["failed_calls"]:
        pytest.fail(
            f"{failed} failed calls of {calls} (expected {expect['failed_calls']}): "
            f"{errors.most_common(3)}",
            pytrace=False,
        )
    if calls < expect["min_calls"]:
        pytest.fail(f"{calls} calls, at least {expect['min_calls']} expected", pytrace=False)


KINDS: dict[str, Callable[[ProcessCluster, dict[str, Any]], Awaitable[None]]] = {
    "steps": run_steps,
    "broadcast_fanout": broadcast_fanout,
    "multicast_deregistration": multicast_deregistration,
    "random_single_delivery": random_single_delivery,
    "ticks": ticks,
    "subscription_reopens_after_restart": subscription_reopens_after_restart,
    "failover": failover,
}


async def run_scenario(cluster: ProcessCluster, scenario: dict[str, Any]) -> None:
    """Runs one scenario; a kind this runner does not know FAILS (the
    format's rule), it is never skipped."""
    kind = KINDS.get(scenario["kind"])
    if kind is None:
        pytest.fail(f"unknown scenario kind {scenario['kind']!r}: this runner must learn it",
                    pytrace=False)
    await kind(cluster, scenario)


@pytest.mark.parametrize("scenario", SUITE["scenarios"], ids=lambda s: s["name"])
async def test_scenario(cluster: ProcessCluster, scenario: dict[str, Any]) -> None:
    await run_scenario(cluster, scenario)


async def test_a_scenario_of_an_unknown_kind_fails() -> None:
    # No cluster: the kind is looked up before anything runs.
    unknown = {"name": "from_a_newer_file", "doc": "", "kind": "not_yet_known"}
    with pytest.raises(pytest.fail.Exception, match="unknown scenario kind 'not_yet_known'"):
        await run_scenario(None, unknown)  # type: ignore[arg-type]


def test_every_kind_of_the_file_is_known_to_this_runner() -> None:
    unknown = sorted({s["kind"] for s in SUITE["scenarios"]} - set(KINDS))
    assert not unknown, f"scenario kinds this runner does not implement: {unknown}"
