"""Which partition a key of a limiter slot belongs to.

A limiter slot's keys may be split into partitions, each with its own
owner and standby in the routing table (`SlotRoute.partitions`, by
partition number; empty for a slot not split). A key's partition is
FNV-1a 64 of the key's UTF-8 bytes modulo the number of partitions: the
function the runtime and every VSS client share (vss-wire's `partition`
module), checked against `client/conformance/partitions.json`.
"""

from __future__ import annotations

_FNV_OFFSET = 0xCBF2_9CE4_8422_2325
_FNV_PRIME = 0x0000_0100_0000_01B3
_MASK = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64 of `data`."""
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _MASK
    return h


def partition_of(key: str, partitions: int) -> int:
    """The partition of `key` among `partitions` (0 when there is at most
    one)."""
    if partitions <= 1:
        return 0
    return fnv1a64(key.encode()) % partitions
