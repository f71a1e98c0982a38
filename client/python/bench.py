#!/usr/bin/env python3
"""Batched acquire throughput of the Python client.

C tasks share one `vss.Client` of every endpoint and each loops on
`acquire`, so the client coalesces their acquires into `AcquireBatch`
calls to the slot's owner, as an application under load would. After a
warm-up, the acquires answered during `--duration` are counted; granted
or refused, each is a decision. Prints one JSON line at the end:

    {"client":"python","decisions_per_s":N,"calls":N,"errors":N}

    python client/python/bench.py --endpoints 127.0.0.1:7700,127.0.0.1:7710,127.0.0.1:7720 \\
        --slot 0 --key bench --concurrency 64 --duration 10s

`bench/clients.sh` runs it beside the Rust and Go clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

import vss


def duration(text: str) -> float:
    """Seconds of `10s`, `500ms`, `1m` or a plain number of seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10s, 500ms, 1m)")
    value, unit = float(m.group(1)), m.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Batched acquire throughput of the Python client")
    p.add_argument("--endpoints", default="127.0.0.1:7700",
                   help="every instance, comma-separated host:port")
    p.add_argument("--slot", type=int, default=0, help="a limiter slot")
    p.add_argument("--key", default="", help="the bucket's key (empty: the slot's single bucket)")
    p.add_argument("--tokens", type=int, default=None,
                   help="tokens per acquire (default: the slot's tokensPerReq)")
    p.add_argument("--concurrency", type=int, default=64, help="acquires in flight at once")
    p.add_argument("--duration", type=duration, default=10.0, help="measured time, e.g. 10s")
    p.add_argument("--warmup", type=duration, default=2.0, help="time before measuring, e.g. 2s")
    p.add_argument("--timeout", type=duration, default=vss.DEFAULT_CALL_TIMEOUT,
                   help="per-call timeout on one instance")
    p.add_argument("--tls-ca", help="CA of the instances' certificates (PEM): TLS on")
    p.add_argument("--tls-cert", help="client certificate (PEM)")
    p.add_argument("--tls-key", help="client key (PEM)")
    p.add_argument("--token-file", help="file holding the token sent on every call")
    args = p.parse_args(argv)
    if args.concurrency < 1:
        p.error("--concurrency must be at least 1")
    if args.duration <= 0:
        p.error("--duration must be above 0")
    return args


async def run(args: argparse.Namespace) -> dict[str, object]:
    security = vss.Security.from_files(
        ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key, token_file=args.token_file
    )
    endpoints = [e for e in args.endpoints.split(",") if e.strip()]
    async with vss.Client(endpoints, timeout=args.timeout, security=security) as client:
        await client.wait_for_routing(5)
        measuring = False
        stop = False
        calls = errors = 0
        first_error = ""

        async def worker() -> None:
            nonlocal calls, errors, first_error
            key, slot, tokens = args.key or None, args.slot, args.tokens
            while not stop:
                try:
                    await client.acquire(slot, key=key, tokens=tokens)
                    if measuring:
                        calls += 1
                except vss.VssError as e:
                    if measuring or isinstance(e, vss.ServerError):
                        errors += 1
                        first_error = first_error or str(e)
                    if isinstance(e, vss.ServerError):
                        # A request error repeats forever: no point looping on it.
                        raise

        tasks = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
        try:
            await asyncio.sleep(args.warmup)
            measuring = True
            began = time.perf_counter()
            done, _ = await asyncio.wait(tasks, timeout=args.duration,
                                         return_when=asyncio.FIRST_EXCEPTION)
            measuring = False
            elapsed = time.perf_counter() - began
        finally:
            stop = True
            results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            print(f"bench: acquire refused: {failures[0]}", file=sys.stderr)
        elif first_error:
            print(f"bench: first error: {first_error}", file=sys.stderr)
    return {
        "client": "python",
        "decisions_per_s": round(calls / elapsed, 1),
        "calls": calls,
        "errors": errors,
    }


def main() -> int:
    args = parse_args()
    try:
        result = asyncio.run(run(args))
    except vss.VssError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, separators=(",", ":")))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
