#!/usr/bin/env python3
"""A tour of the Python client against a running cluster started with
`vss dev` (examples/slots.yaml):

    python client/python/examples/quickstart.py 127.0.0.1:7700,127.0.0.1:7710,127.0.0.1:7720

It acquires from the limiters, subscribes and publishes a broadcast,
counts, writes and reads a register, announces a service, takes two
ticks, shows a request error, and does the same acquire through the
synchronous client.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import vss
import vss.sync


async def tour(endpoints: list[str]) -> None:
    async with vss.Client(endpoints) as client:
        table = await client.wait_for_routing(5)
        if table is not None:
            print(f"routing epoch {table.epoch}, leader {table.leader}")

        grant = await client.acquire(0)
        print(f"acquire slot 0: granted {grant.granted}, {grant.remaining} left")
        grants = await asyncio.gather(*(client.acquire(1, key="user-42") for _ in range(12)))
        print(f"12 concurrent acquires for user-42 (coalesced into AcquireBatch): "
              f"{sum(g.granted for g in grants)} granted")

        # The listener acknowledges as messages come: a publish returns when
        # every delivery is acknowledged (or the slot's timeout passed).
        events = await client.subscribe("quickstart-listener", slots=[10])

        async def listen() -> bytes | None:
            event = await events.next(timeout=2)
            if event is None:
                return None
            await event.ack()
            return event.payload

        listener = asyncio.create_task(listen())
        published = await client.publish(10, str(uuid.uuid4()), client_id="quickstart")
        payload = await listener
        print(f"broadcast {payload!r} received once "
              f"(publish: {published.delivered} delivered, {published.failed} failed)")
        await events.close()

        value = await client.increment(20, 3)
        print(f"counter slot 20: {value.value}")
        written = await client.set(21, "color", "blue")
        read = await client.get(21, "color", at_least=written.version)
        print(f"register slot 21: color = {read.value.decode()}")
        await client.announce(22, "quickstart", "127.0.0.1:9999", ttl=10)
        services = await client.list_services(22, "quickstart")
        print(f"registry slot 22: {[s.address for s in services]}")
        await client.withdraw(22, "quickstart", "127.0.0.1:9999")

        async with await client.watch_ticks(23) as ticks:
            first, second = await ticks.next(timeout=3), await ticks.next(timeout=3)
            if first is not None and second is not None:
                print(f"ticks {first.number}, {second.number}")

        try:
            await client.publish(10, "m" * 37)
        except vss.InvalidArgumentError as e:
            print(f"refused, not retried elsewhere: {e}")


def main() -> int:
    endpoints = (sys.argv[1] if len(sys.argv) > 1 else
                 "127.0.0.1:7700,127.0.0.1:7710,127.0.0.1:7720").split(",")
    try:
        asyncio.run(tour(endpoints))
        with vss.sync.Client(endpoints) as client:
            print(f"sync acquire slot 0: granted {client.acquire(0).granted}")
    except vss.VssError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
